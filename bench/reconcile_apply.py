"""Benchmark: apply a KubePkg of N objects, then re-apply it unchanged, beside kubectl.

Peer: ``kubectl apply --server-side`` of the same objects (into another namespace) against the
same kube-apiserver, in the same run. Both sides run as processes, as a user would run them.
Measured: wall time of the first apply and of a no-op re-apply, and how many writes the no-op
makes (resourceVersions that moved). Prints a JSON result and, with ``--markdown``, the table
for BENCHMARKS.md.

    python bench/reconcile_apply.py [--objects 1000] [--kubeconfig PATH]

Without ``--kubeconfig`` it starts the local control plane (scripts/local-cluster) and stops it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gitops_kubepkg.controller.install import install_crds  # noqa: E402
from gitops_kubepkg.kube import Kube  # noqa: E402
from tests.integration.cluster import start_cluster, stop_cluster  # noqa: E402


def objects(n: int, namespace: str) -> list[dict[str, Any]]:
    """A realistic mix: ConfigMaps, Secrets and Services, about a third each."""
    out: list[dict[str, Any]] = []
    for i in range(n):
        name = f"obj-{i:04d}"
        meta = {"name": name, "namespace": namespace, "labels": {"app": "bench", "index": str(i)}}
        if i % 3 == 0:
            out.append(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": meta,
                    "data": {"key": "v" * 64, "n": str(i)},
                }
            )
        elif i % 3 == 1:
            out.append(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": meta,
                    "type": "Opaque",
                    "stringData": {"token": f"t{i}"},
                }
            )
        else:
            out.append(
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": meta,
                    "spec": {
                        "clusterIP": "None",
                        "selector": {"app": name},
                        "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
                    },
                }
            )
    return out


def kubepkg(objs: list[dict[str, Any]]) -> dict[str, Any]:
    manifests = {
        f"{o['metadata']['name']}.{o['metadata']['namespace']}.{o['kind'].lower()}": o for o in objs
    }
    return {
        "apiVersion": "octohelm.tech/v1alpha1",
        "kind": "KubePkg",
        "metadata": {"name": "bench", "namespace": objs[0]["metadata"]["namespace"]},
        "spec": {"version": "1.0.0", "images": {}, "manifests": manifests},
    }


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(
            f"{' '.join(cmd[:3])} failed ({result.returncode}):\n{result.stderr[-2000:]}"
        )
    return elapsed


def versions(kube: Kube, namespace: str) -> dict[str, str]:
    out = {}
    for kind in ("ConfigMap", "Secret", "Service"):
        for o in kube.list("v1", kind, namespace, label_selector="app=bench"):
            out[f"{kind}/{o['metadata']['name']}"] = o["metadata"]["resourceVersion"]
    return out


def run_rounds(kubeconfig: str, n: int, workdir: Path, rounds: int) -> dict[str, Any]:
    """``rounds`` runs, each in fresh namespaces, who goes first alternating (the machine is
    shared: load that comes and goes hits both sides); the medians, the ratios' min and max, and
    every round's numbers."""
    results = [run(kubeconfig, n, workdir, f"r{i}", ours_first=i % 2 == 1) for i in range(rounds)]
    out: dict[str, Any] = {"objects": n, "rounds": rounds}
    for key in results[0]:
        if key not in ("objects", "order"):
            out[key] = statistics.median(r[key] for r in results)
            if key.endswith("_ratio_kubectl_over_ours"):
                out[f"{key}_min"] = min(r[key] for r in results)
                out[f"{key}_max"] = max(r[key] for r in results)
    out["each"] = results
    return out


def run(
    kubeconfig: str, n: int, workdir: Path, tag: str = "", *, ours_first: bool = False
) -> dict[str, Any]:
    kube = Kube(kubeconfig)
    install_crds(kube)
    kubectl = (
        subprocess.run(
            [sys.executable, str(REPO / "scripts" / "local-cluster"), "which", "kubectl"],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    env = {**os.environ, "KUBECONFIG": kubeconfig}
    ours_ns, theirs_ns = f"bench-ours{tag}", f"bench-kubectl{tag}"
    for ns in (ours_ns, theirs_ns):
        kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})

    theirs = workdir / "objects.yaml"
    theirs.write_text(yaml.safe_dump_all(objects(n, theirs_ns), sort_keys=False))
    ours = workdir / "kubepkg.json"
    ours.write_text(json.dumps(kubepkg(objects(n, ours_ns))))

    kubectl_cmd = [kubectl, "apply", "--server-side", "--field-manager=bench", "-f", str(theirs)]
    ours_cmd = [sys.executable, "-m", "gitops_kubepkg", "apply", str(ours)]

    result: dict[str, Any] = {
        "objects": n,
        "order": "ours first" if ours_first else "kubectl first",
    }
    sides = [("ours", ours_cmd), ("kubectl", kubectl_cmd)]
    for side, cmd in sides if ours_first else sides[::-1]:
        result[f"{side}_first_s"] = timed(cmd, env)
    before_theirs, before_ours = versions(kube, theirs_ns), versions(kube, ours_ns)
    for side, cmd in sides if ours_first else sides[::-1]:
        result[f"{side}_noop_s"] = timed(cmd, env)
    after_theirs, after_ours = versions(kube, theirs_ns), versions(kube, ours_ns)
    result["kubectl_noop_moved"] = sum(
        before_theirs[k] != after_theirs.get(k) for k in before_theirs
    )
    result["ours_noop_moved"] = sum(before_ours[k] != after_ours.get(k) for k in before_ours)
    result["first_ratio_kubectl_over_ours"] = result["kubectl_first_s"] / result["ours_first_s"]
    result["noop_ratio_kubectl_over_ours"] = result["kubectl_noop_s"] / result["ours_noop_s"]
    timed([sys.executable, "-m", "gitops_kubepkg", "delete", str(ours)], env)
    for ns in (ours_ns, theirs_ns):
        kube.delete("v1", "Namespace", ns)
    # The next round starts on a quiet server: namespace deletion of 2,000 objects is real work.
    for ns in (ours_ns, theirs_ns):
        kube.wait_for("v1", "Namespace", ns, gone=True, timeout=600)
    return result


def markdown(r: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"Package of {r['objects']} objects (ConfigMaps, Secrets, Services), same kube-apiserver,"
            f" median of {r['rounds']} rounds in one run (who goes first alternates).",
            "",
            "| pass | gitops-kubepkg apply | kubectl apply --server-side | kubectl / ours (min / median / max) |",
            "| --- | --- | --- | --- |",
            f"| first apply | {r['ours_first_s']:.2f} s | {r['kubectl_first_s']:.2f} s | {r['first_ratio_kubectl_over_ours_min']:.2f}x / **{r['first_ratio_kubectl_over_ours']:.2f}x** / {r['first_ratio_kubectl_over_ours_max']:.2f}x |",
            f"| no-op re-apply | {r['ours_noop_s']:.2f} s | {r['kubectl_noop_s']:.2f} s | {r['noop_ratio_kubectl_over_ours_min']:.2f}x / **{r['noop_ratio_kubectl_over_ours']:.2f}x** / {r['noop_ratio_kubectl_over_ours_max']:.2f}x |",
            f"| objects written by the no-op | {r['ours_noop_moved']} | {r['kubectl_noop_moved']} | |",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--kubeconfig", default=os.environ.get("GITOPS_KUBEPKG_TEST_KUBECONFIG"))
    parser.add_argument("--rounds", type=int, default=3, help="report the median of this many")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.kubeconfig:
            result = run_rounds(args.kubeconfig, args.objects, work, args.rounds)
        else:
            kubeconfig = start_cluster(work / "cluster")
            try:
                result = run_rounds(kubeconfig, args.objects, work, args.rounds)
            finally:
                stop_cluster(work / "cluster")
    print(json.dumps(result, indent=2))
    if args.markdown:
        print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
