#!/usr/bin/env python3
"""The demo (``make demo``): the whole GitOps flow on a local Kubernetes control plane.

Place in the flow: outside the product; it drives the ``gitops-kubepkg`` CLI as a user would.

1. start the local control plane (``scripts/local-cluster up``: etcd, kube-apiserver and
   kube-controller-manager built from Go modules, on loopback, RBAC on);
2. turn ``examples/repos`` into real git repositories (a catalog with tagged revisions, a
   deployment repository running web 1.1.0 and redis 6.2.0);
3. install the CRDs and register both repositories (``install``, ``repo add``);
4. promote redis 7.0.0 from the catalog into the deployment through kubectl: a PackageRevision
   created in lifecycle Proposed (the controller runs ``promote --upgrade``), shown with its
   content (``kubectl get packagerevisionresources``), then patched to Published (the controller
   runs ``approve``), after recording where the hand-deployed redis 6.2.0 came from (the catalog
   annotations the upgrade merges from);
5. one controller pass (``controller --once``): catalog tags become PackageRevisions, the
   deployment branch becomes KubePkg objects, then each KubePkg is reconciled into its objects;
6. print what was applied, and stop everything it started (also on Ctrl-C or SIGTERM).

Exit 0 when every step worked. ``--keep`` leaves the control plane running to look around
(it prints how to stop it); ``--summary-json FILE`` writes the summary for scripts and tests;
``--dashboard [HOST:PORT]`` then runs the controller with its web dashboard on loopback (no login,
actions on) until Ctrl-C, and stops everything as usual (``make demo DEMO_ARGS=--dashboard``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gitops_kubepkg import git  # noqa: E402
from gitops_kubepkg.kube import Kube  # noqa: E402
from gitops_kubepkg.promotion.record import (  # noqa: E402
    ANNOTATION_COMMIT,
    ANNOTATION_TAG,
    ANNOTATION_URL,
)
from gitops_kubepkg.reconcile.status import inventory_of  # noqa: E402
from gitops_kubepkg.sources.catalog import LABEL_LATEST  # noqa: E402

NAMESPACE = "gitops-demo"
AUTHOR = {
    "GIT_AUTHOR_NAME": "gitops-kubepkg demo",
    "GIT_AUTHOR_EMAIL": "demo@gitops-kubepkg.invalid",
    "GIT_COMMITTER_NAME": "gitops-kubepkg demo",
    "GIT_COMMITTER_EMAIL": "demo@gitops-kubepkg.invalid",
}


class StepFailed(Exception):
    pass


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def indent(text: str) -> None:
    for line in text.rstrip("\n").splitlines():
        print(f"    {line}", flush=True)


def cli(*args: str, kubeconfig: str = "", ok: tuple[int, ...] = (0,)) -> str:
    """Run ``gitops-kubepkg ARGS`` as a user would; show the command and what it printed."""
    print(f"  $ gitops-kubepkg {' '.join(args)}", flush=True)
    env = {**os.environ, **AUTHOR}
    if kubeconfig:
        env["KUBECONFIG"] = kubeconfig
    out = subprocess.run(
        [sys.executable, "-m", "gitops_kubepkg", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    indent(out.stdout)
    indent(out.stderr)
    if out.returncode not in ok:
        raise StepFailed(f"`gitops-kubepkg {' '.join(args)}` exited {out.returncode}")
    return out.stdout


def kubectl(*args: str, kubeconfig: str, stdin: str | None = None) -> str:
    """Run ``kubectl ARGS`` (the one local-cluster built) as a user would, shown like ``cli``."""
    print(f"  $ kubectl {' '.join(args)}", flush=True)
    found = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "local-cluster"), "which", "kubectl"],
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode != 0:
        raise StepFailed(f"no kubectl: {found.stderr.strip()}")
    out = subprocess.run(
        [found.stdout.strip().splitlines()[-1], f"--kubeconfig={kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    indent(out.stdout)
    indent(out.stderr)
    if out.returncode != 0:
        raise StepFailed(f"`kubectl {' '.join(args)}` exited {out.returncode}")
    return out.stdout


PROPOSAL = f"""apiVersion: gitops.kubepkg.dev/v1alpha1
kind: PackageRevision
metadata:
  name: prod-redis-7.0.0
  namespace: {NAMESPACE}
spec:
  repository: prod
  catalog: catalog
  packageName: redis
  revision: 7.0.0
  lifecycle: Proposed
  upgrade: true
"""


def start_cluster(directory: Path) -> str:
    """``scripts/local-cluster up``, its progress shown; the kubeconfig path."""
    process = subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "local-cluster"), "up", "--dir", str(directory)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None and process.stdout is not None
    for line in process.stderr:
        print(f"    {line.rstrip()}", flush=True)
    out = process.stdout.read()
    if process.wait() != 0:
        raise StepFailed("the local control plane did not start (its log is above)")
    return out.strip().splitlines()[-1]


def stop_cluster(directory: Path) -> None:
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "local-cluster"), "down", "--dir", str(directory)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )


def adopt(deployment: Path, catalog_url: str, path: str, tag: str) -> str:
    """Record in the deployment repository that ``path`` is the catalog's ``tag``.

    The example deployment was written by hand; ``promote --upgrade`` needs to know which
    catalog revision a deployed file started from (the three-way merge's base). This is the
    step its error message asks for: add the catalog annotations.
    """
    catalog = git.open_bare(Path(catalog_url.removeprefix("file://")))
    tag_commit = catalog.peel(catalog.refs()[f"refs/tags/{tag}"])
    repo = git.open_bare(deployment)
    head = repo.resolve("refs/heads/main")
    assert head is not None
    doc = yaml.safe_load(repo.read(head, path) or b"")
    doc["metadata"]["annotations"] = {
        ANNOTATION_URL: catalog_url,
        ANNOTATION_TAG: tag,
        ANNOTATION_COMMIT: tag_commit,
    }
    text = yaml.safe_dump(doc, sort_keys=False).encode()
    return repo.commit_files("main", {path: text}, f"{path}: record its catalog origin {tag}")


def summarize(kube: Kube, promotion: dict[str, str]) -> dict[str, Any]:
    revisions = [
        r
        for r in kube.list("gitops.kubepkg.dev/v1alpha1", "PackageRevision", NAMESPACE)
        if r["spec"]["repository"] == "catalog"
    ]
    kubepkgs = kube.list("octohelm.tech/v1alpha1", "KubePkg", NAMESPACE)
    objects = []
    packages = {}
    for pkg in sorted(kubepkgs, key=lambda p: p["metadata"]["name"]):
        status = pkg.get("status") or {}
        ready: dict[str, Any] = next(
            (c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {}
        )
        inventory = inventory_of(status)
        packages[pkg["metadata"]["name"]] = {
            "version": pkg["spec"]["version"],
            "ready": ready.get("status", "Unknown"),
            "message": ready.get("message", ""),
            "commit": (status.get("source") or {}).get("commit", ""),
            "objects": len(inventory),
        }
        for ref in inventory:
            live = kube.get(ref.api_version, ref.kind, ref.name, ref.namespace)
            entry = {
                "kind": ref.kind,
                "namespace": ref.namespace,
                "name": ref.name,
                "package": pkg["metadata"]["name"],
                "exists": live is not None,
            }
            containers = (
                (((live or {}).get("spec") or {}).get("template") or {}).get("spec") or {}
            ).get("containers") or []
            if containers:
                entry["images"] = [c.get("image", "") for c in containers]
            objects.append(entry)
    return {
        "namespace": NAMESPACE,
        "packageRevisions": sorted(
            (
                {
                    "name": r["metadata"]["name"],
                    "package": r["spec"]["packageName"],
                    "revision": r["spec"]["revision"],
                    "latest": (r["metadata"].get("labels") or {}).get(LABEL_LATEST) == "true",
                }
                for r in revisions
            ),
            key=lambda r: str(r["name"]),
        ),
        "promotion": promotion,
        "kubepkgs": packages,
        "objects": objects,
    }


def print_summary(summary: dict[str, Any]) -> None:
    say("summary")
    revisions = summary["packageRevisions"]
    print(f"  PackageRevisions ({len(revisions)}), from the catalog's tags:")
    for r in revisions:
        print(f"    {r['package']} {r['revision']}{'   (latest)' if r['latest'] else ''}")
    p = summary["promotion"]
    print(
        f"  Promotion: {p['package']} {p['from']} -> {p['to']} "
        f"(branch {p['branch']}, merged into main at {p['merged'][:12]})"
    )
    kubepkgs = summary["kubepkgs"]
    print(f"  KubePkgs ({len(kubepkgs)}), from the deployment repository:")
    for name, k in kubepkgs.items():
        print(
            f"    {name} {k['version']}: {k['objects']} object(s), Ready={k['ready']}"
            f" ({k['message']})"
        )
    objects = summary["objects"]
    print(f"  Objects applied ({len(objects)}):")
    for o in objects:
        where = f"{o['namespace']}/{o['name']}" if o["namespace"] else o["name"]
        images = f"  image {', '.join(o['images'])}" if o.get("images") else ""
        state = "" if o["exists"] else "  (MISSING)"
        print(f"    {o['kind']} {where} (KubePkg {o['package']}){images}{state}")
    print(
        "  (Pods run on kwok, the local control plane's simulated kubelet: Deployments become\n"
        "   Available as they would on nodes, so Ready reflects a real rollout.)"
    )


def all_ready(kube: Kube) -> bool:
    """Every KubePkg of the demo has Ready=True."""
    kubepkgs = kube.list("octohelm.tech/v1alpha1", "KubePkg", NAMESPACE)
    return bool(kubepkgs) and all(
        any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (k.get("status") or {}).get("conditions") or []
        )
        for k in kubepkgs
    )


def run(args: argparse.Namespace, work: Path) -> tuple[dict[str, Any], str]:
    started = time.monotonic()
    if args.kubeconfig:
        kubeconfig = os.path.abspath(args.kubeconfig)
        say(f"using the cluster of {kubeconfig}")
    else:
        say("starting the local control plane (the first run builds it from Go modules)")
        kubeconfig = start_cluster(work / "cluster")
        say(f"control plane up: KUBECONFIG={kubeconfig}")

    say("making the example catalog and deployment into real git repositories")
    made = subprocess.run(
        [sys.executable, str(REPO / "examples" / "repos" / "make-repos.py"), str(work / "repos")],
        capture_output=True,
        text=True,
        check=True,
    )
    catalog_url, deployment_url = made.stdout.split()
    indent(made.stdout)

    say("installing the CRDs")
    cli("install", kubeconfig=kubeconfig)
    kube = Kube(kubeconfig)
    try:
        kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})

        say("registering the repositories")
        cli("repo", "add", "catalog", "--url", catalog_url, "--type", "catalog",
            "-n", NAMESPACE, kubeconfig=kubeconfig)  # fmt: skip
        cli("repo", "add", "prod", "--url", deployment_url, "--type", "deployment",
            "-n", NAMESPACE, kubeconfig=kubeconfig)  # fmt: skip

        say("recording the catalog origin of the hand-deployed redis 6.2.0 (for the upgrade)")
        commit = adopt(
            Path(deployment_url.removeprefix("file://")),
            catalog_url,
            "apps/redis/kubepkg.yaml",
            "redis/v6.2.0",
        )
        indent(f"commit {commit[:12]} on main: apps/redis/kubepkg.yaml annotated")

        say("proposing redis 7.0.0 through the Kubernetes API (a PackageRevision in Proposed)")
        kubectl("create", "-f", "-", kubeconfig=kubeconfig, stdin=PROPOSAL)
        say("one controller pass: it opens the promotion branch (promote --upgrade)")
        cli("controller", "--once", "-n", NAMESPACE, "--state-dir", str(work / "state"),
            kubeconfig=kubeconfig)  # fmt: skip
        kubectl("get", "packagerevisions", "-n", NAMESPACE, kubeconfig=kubeconfig)
        shown = kubectl("get", "packagerevisionresources", "prod-redis-7.0.0", "-n", NAMESPACE,
                        "-o", "yaml", kubeconfig=kubeconfig)  # fmt: skip
        resources = yaml.safe_load(shown)
        if "redis:7.0" not in str((resources.get("spec") or {}).get("rendered", "")):
            raise StepFailed("PackageRevisionResources prod-redis-7.0.0 does not render redis 7.0")

        say("publishing it (the approver's patch): the controller merges and applies it")
        kubectl("patch", "packagerevision", "prod-redis-7.0.0", "-n", NAMESPACE, "--type=merge",
                "-p", '{"spec":{"lifecycle":"Published"}}', kubeconfig=kubeconfig)  # fmt: skip
        cli("controller", "--once", "-n", NAMESPACE, "--state-dir", str(work / "state"),
            kubeconfig=kubeconfig)  # fmt: skip
        published = kube.get("gitops.kubepkg.dev/v1alpha1", "PackageRevision", "prod-redis-7.0.0",
                             NAMESPACE)  # fmt: skip
        status = (published or {}).get("status") or {}
        if status.get("lifecycle") != "Published":
            raise StepFailed(f"PackageRevision prod-redis-7.0.0 was not published: {status}")
        approved = {"branch": status.get("branch", ""),
                    "targetCommit": (published or {})["spec"]["commit"]}  # fmt: skip

        say("waiting for the rollout (kwok, the simulated kubelet, runs the Pods), re-reconciling")
        deadline = time.monotonic() + 90
        while not all_ready(kube) and time.monotonic() < deadline:
            time.sleep(2)
            cli("controller", "--once", "--no-repositories", "-n", NAMESPACE,
                "--state-dir", str(work / "state"), kubeconfig=kubeconfig)  # fmt: skip

        say("what the cluster holds now")
        cli("get", "repositories", "-n", NAMESPACE, kubeconfig=kubeconfig)
        cli("get", "revisions", "-n", NAMESPACE, kubeconfig=kubeconfig)
        cli("get", "kubepkgs", "-n", NAMESPACE, "-o", "wide", kubeconfig=kubeconfig)

        summary = summarize(
            kube,
            {
                "package": "redis",
                "from": "6.2.0",
                "to": "7.0.0",
                "branch": approved["branch"],
                "merged": approved["targetCommit"],
            },
        )
    finally:
        kube.close()
    summary["seconds"] = round(time.monotonic() - started, 1)
    return summary, kubeconfig


def dashboard(listen: str, work: Path, kubeconfig: str) -> None:
    """The controller, running, with its dashboard on ``listen`` until Ctrl-C."""
    say(f"the controller with its dashboard: open http://{listen}/ (Ctrl-C stops it)")
    args = ["controller", "-n", NAMESPACE, "--leader-election-namespace", NAMESPACE,
            "--state-dir", str(work / "state"),
            "--dashboard-listen", listen, "--dashboard-no-auth", "--dashboard-actions"]  # fmt: skip
    print(f"  $ gitops-kubepkg {' '.join(args)}", flush=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "gitops_kubepkg", *args],
        cwd=REPO,
        env={**os.environ, **AUTHOR, "KUBECONFIG": kubeconfig},
        stdin=subprocess.DEVNULL,
    )
    try:
        code = process.wait()
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: how this step is meant to end
        say("stopping the controller")
        return
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    if code != 0:
        raise StepFailed(f"the controller exited {code}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="leave the control plane running")
    parser.add_argument("--kubeconfig", help="use this cluster instead of starting one")
    parser.add_argument("--summary-json", type=Path, metavar="FILE", help="write the summary here")
    parser.add_argument(
        "--dashboard",
        nargs="?",
        const="127.0.0.1:9494",
        metavar="HOST:PORT",
        help="afterwards, run the controller with its dashboard here (loopback) until Ctrl-C",
    )
    args = parser.parse_args(argv)

    def interrupted(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    work = Path(tempfile.mkdtemp(prefix="gitops-kubepkg-demo-"))
    code = 1
    try:
        summary, kubeconfig = run(args, work)
        print_summary(summary)
        say("where the redis Deployment came from: KubePkg, commits, catalog tag, digests, drift")
        cli("trace", "deployment/redis", "-n", NAMESPACE, kubeconfig=kubeconfig)
        if args.summary_json:
            args.summary_json.write_text(json.dumps(summary, indent=2) + "\n")
        missing = [o for o in summary["objects"] if not o["exists"]]
        code = 0 if summary["objects"] and not missing else 1
        if code == 0 and args.dashboard:
            dashboard(args.dashboard, work, kubeconfig)
    except StepFailed as e:
        print(f"demo failed: {e}", file=sys.stderr)
    except KeyboardInterrupt:
        print("demo interrupted", file=sys.stderr)
        code = 130
    finally:
        if args.kubeconfig is None and not args.keep:
            say("stopping the local control plane")
            stop_cluster(work / "cluster")
        if args.keep and args.kubeconfig is None:
            say(
                f"left running: export KUBECONFIG={work / 'cluster' / 'kubeconfig'}; "
                f"stop it with: scripts/local-cluster down --dir {work / 'cluster'}"
            )
        else:
            shutil.rmtree(work, ignore_errors=True)
    if code == 0:
        say("demo done")
    return code


if __name__ == "__main__":
    sys.exit(main())
