"""Benchmark (our side of issue 14's Flux comparison): a cold pass of N apps with the controller.

Flux's benchmark shape: each app is a Deployment scaled to 0, a ServiceAccount, a Service and a
ConfigMap, one KubePkg per app. The KubePkgs are stored first; then one ``gitops-kubepkg
controller`` process (no Repositories, ``--kubepkg-workers`` as given) starts against the local
control plane; with ``--before /work/main`` the same round also runs main's code (interleaved),
so the runtime's effect is measured in one run on a shared machine. Measured from its start: seconds until every KubePkg is Ready, API requests it
sent (its /metrics), requests per KubePkg, its peak RSS (VmHWM), then the writes it makes in an
idle interval (nothing changes: the target is 0).

    .venv/bin/python bench/runtime_cold.py --apps 100 [--workers 4] [--idle 30] [--before /work/main]

Without ``--kubeconfig`` it starts the local control plane (scripts/local-cluster) and stops it.
The same apps beside Flux (source-controller v1.9.4, kustomize-controller v1.9.6), synced from
deployment repositories: bench/flux_compare.py, which uses this module's helpers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from gitops_kubepkg.controller.install import install_crds  # noqa: E402
from gitops_kubepkg.kube import Kube  # noqa: E402
from tests.integration.cluster import start_cluster, stop_cluster  # noqa: E402
from tests.integration.controllers import flux_app  # noqa: E402
from tests.integration.git_servers import free_port  # noqa: E402

app = flux_app
"""One app of Flux's benchmark shape (kept under this name for bench/flux_*.py)."""


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:  # fmt: skip
    return sum(v for (n, ls), v in found.items() if n == name and set(labels.items()) <= set(ls))


def ready_count(
    kube: Kube, namespace: str, api_version: str = "octohelm.tech/v1alpha1", kind: str = "KubePkg"
) -> int:
    """How many objects of ``kind`` (KubePkgs, or Flux's Kustomizations) have Ready=True."""
    n = 0
    for pkg in kube.list(api_version, kind, namespace):
        for c in (pkg.get("status") or {}).get("conditions") or []:
            if c["type"] == "Ready" and c["status"] == "True":
                n += 1
    return n


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def side(
    kubeconfig: str,
    repo: Path,
    namespace: str,
    workers: int,
    log: Path,
    *,
    repositories: bool = False,
) -> Any:
    """One controller process from ``repo``'s code (this branch, or main for before/after).

    Without ``repositories`` it only reconciles KubePkgs already stored; with it, it also syncs
    the namespace's Repositories, ``workers`` of them at once (``--max-fetches``)."""
    port = free_port()
    sources = ["--max-fetches", str(workers)] if repositories else ["--no-repositories"]
    command = [sys.executable, "-m", "gitops_kubepkg", "controller", "--kubeconfig", kubeconfig,
               "--state-dir", str(log.parent / f"state-{uuid.uuid4().hex[:6]}"),
               "--monitoring-listen", f"127.0.0.1:{port}", "-n", namespace, "--no-leader-elect",
               *sources, "--kubepkg-workers", str(workers)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(repo)}
    out = open(log, "wb")  # noqa: SIM115 - closed by the caller through the process
    proc = subprocess.Popen(command, cwd=repo, env=env, stdout=out, stderr=subprocess.STDOUT)
    return proc, port


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return {}
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def run(
    kubeconfig: str, repo: Path, apps: int, workers: int, idle: float, workdir: Path
) -> dict[str, Any]:
    kube = Kube(kubeconfig)
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    for i in range(apps):
        kube.apply(app(f"app-{i:04d}", namespace))
    proc, port = side(kubeconfig, repo, namespace, workers, workdir / f"{namespace}.log")
    try:
        started = time.monotonic()
        while ready_count(kube, namespace) < apps:
            if time.monotonic() - started > 1800:
                raise SystemExit(f"not every KubePkg Ready after 30 minutes; see {workdir}")
            time.sleep(0.5)
        ready_s = time.monotonic() - started
        cold = scrape(port)
        requests = value(cold, "gitops_kubepkg_api_requests_total", verb="all")
        writes = value(cold, "gitops_kubepkg_api_requests_total", verb="write")
        time.sleep(idle)
        after = scrape(port)
        idle_writes = value(after, "gitops_kubepkg_api_requests_total", verb="write") - writes
        rss = peak_rss(proc.pid)
    finally:
        proc.terminate()
        proc.wait(60)
    kube.delete("v1", "Namespace", namespace)
    kube.close()
    counted = (
        bool(cold) and ("gitops_kubepkg_api_requests_total", frozenset({("verb", "all")})) in cold
    )
    return {
        "code": str(repo),
        "apps": apps,
        "workers": workers,
        "seconds_to_all_ready": round(ready_s, 2),
        "api_requests_per_kubepkg": round(requests / apps, 1) if counted else None,
        "api_writes": int(writes) if counted else None,
        "idle_writes": int(idle_writes) if counted else None,
        "peak_rss_mib": round(rss / 2**20, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--apps", type=int, default=100)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--idle", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--before", type=Path, help="also run this checkout's code (e.g. /work/main), interleaved"
    )
    parser.add_argument("--kubeconfig")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-runtime-"))
    kubeconfig = args.kubeconfig or start_cluster(workdir / "cluster")
    results = []
    try:
        install_crds(Kube(kubeconfig))
        for _ in range(args.rounds):
            for repo in [REPO, *([args.before] if args.before else [])]:
                result = run(kubeconfig, repo, args.apps, args.workers, args.idle, workdir)
                print(json.dumps(result), flush=True)
                results.append(result)
    finally:
        if not args.kubeconfig:
            stop_cluster(workdir / "cluster")
    print(f"logs in {workdir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
