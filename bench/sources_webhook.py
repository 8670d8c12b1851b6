"""Push-to-PackageRevision latency: a tag pushed, a signed webhook posted, the object visible.

Runs the controller's runtime (``Runtime``: informers, one queue) and its webhook receiver against the local control plane
(``scripts/local-cluster``, or GITOPS_KUBEPKG_TEST_KUBECONFIG) and a catalog served by ``git daemon``
on loopback. Each round tags ``web/v1.<n>.0``, POSTs a GitHub-signed push webhook and waits until
the PackageRevision can be read. The peer is the same controller with no webhook, polling every
``--poll-interval`` seconds (what a push costs without the receiver). Prints p50/p90 and the ratio.

    .venv/bin/python bench/sources_webhook.py [--rounds 20] [--poll-interval 2]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gitops_kubepkg import git
from gitops_kubepkg.controller.runtime import Runtime
from gitops_kubepkg.controller.sync import Syncer
from gitops_kubepkg.controller.webhooks import WebhookSecrets
from gitops_kubepkg.kube import Kube
from gitops_kubepkg.serving import parse_listen
from gitops_kubepkg.sources import catalog
from gitops_kubepkg.sources.webhook import WebhookServer
from gitops_kubepkg.spec.crds import GITOPS_API_VERSION
from tests.integration.cluster import start_cluster, stop_cluster
from tests.integration.git_servers import free_port, git_daemon

REPO = Path(__file__).resolve().parents[1]
SECRET = b"bench-secret"


def kubepkg(version: str) -> bytes:
    return json.dumps(
        {
            "apiVersion": "octohelm.tech/v1alpha1",
            "kind": "KubePkg",
            "metadata": {"name": "web"},
            "spec": {"version": version},
        }
    ).encode()


def install_crds(kube: Kube) -> None:
    for crd_file in sorted((REPO / "deploy" / "crds").glob("*.yaml")):
        crd = yaml.safe_load(crd_file.read_text())
        kube.apply(crd)
        kube.wait_for(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            crd["metadata"]["name"],
            condition="Established",
        )
    kube.forget_discovery()


def wait_visible(kube: Kube, name: str, namespace: str, timeout: float = 120) -> float:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if kube.get(GITOPS_API_VERSION, catalog.KIND, name, namespace) is not None:
            return time.perf_counter()
        time.sleep(0.005)
    raise TimeoutError(name)


def rounds(
    kube: Kube, work: Path, *, webhook: bool, count: int, poll_interval: float, minor0: int
) -> list[float]:
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    root = work / namespace
    repo = git.init_bare(root / "catalog.git")
    repo.tag("web/v1.0.0", repo.commit_files("main", {"web/kubepkg.json": kubepkg("1.0.0")}, "c"))
    with git_daemon(root) as server:
        kube.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "hook", "namespace": namespace},
                "stringData": {"token": SECRET.decode()},
            }
        )
        kube.apply(
            {
                "apiVersion": GITOPS_API_VERSION,
                "kind": "Repository",
                "metadata": {"name": "catalog", "namespace": namespace},
                "spec": {
                    "url": server.repo_url("catalog.git"),
                    "type": "catalog",
                    "interval": "1h" if webhook else f"{poll_interval}s",
                    "webhookSecretRef": {"name": "hook"},
                },
            }
        )
        port = free_port()
        runtime = Runtime(
            kube,
            syncer=Syncer(kube, work / f"state-{namespace}"),
            reconciler=None,
            namespace=namespace,
            watch_files=False,
        )
        runtime.start()
        secrets = WebhookSecrets(kube, namespace) if webhook else None
        server = None
        if secrets is not None:
            secrets.start()
            server = WebhookServer(
                parse_listen(f"127.0.0.1:{port}", "--webhook-listen"),
                secrets.lookup,
                runtime.trigger,
            )
            server.start()
        latencies = []
        try:
            wait_visible(kube, catalog.revision_name("catalog", "web", "1.0.0"), namespace)
            for n in range(minor0, minor0 + count):
                version = f"1.{n}.0"
                commit = repo.commit_files("main", {"web/kubepkg.json": kubepkg(version)}, version)
                repo.tag(f"web/v{version}", commit)
                pushed = time.perf_counter()
                if webhook:
                    body = json.dumps({"ref": f"refs/tags/web/v{version}"}).encode()
                    sig = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
                    request = urllib.request.Request(
                        f"http://127.0.0.1:{port}/hooks/{namespace}/catalog",
                        data=body,
                        headers={"X-GitHub-Event": "push", "X-Hub-Signature-256": sig},
                        method="POST",
                    )
                    with urllib.request.urlopen(request, timeout=10) as response:
                        assert response.status == 202
                seen = wait_visible(
                    kube, catalog.revision_name("catalog", "web", version), namespace
                )
                latencies.append(seen - pushed)
        finally:
            if server is not None:
                server.stop()
            if secrets is not None:
                secrets.stop()
            runtime.stop()
            kube.delete("v1", "Namespace", namespace)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--poll-interval", type=float, default=2.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-webhook-") as tmp:
        work = Path(tmp)
        kubeconfig = start_cluster(work / "cluster")
        try:
            kube = Kube(kubeconfig)
            install_crds(kube)
            hook = rounds(kube, work, webhook=True, count=args.rounds, poll_interval=0, minor0=1)
            poll = rounds(
                kube,
                work,
                webhook=False,
                count=max(5, args.rounds // 2),
                poll_interval=args.poll_interval,
                minor0=1,
            )
            kube.close()
        finally:
            stop_cluster(work / "cluster")

    def q(xs: list[float], p: float) -> float:
        return statistics.quantiles(xs, n=100)[int(p) - 1] if len(xs) > 1 else xs[0]

    print("push -> PackageRevision visible (seconds)")
    print(f"{'':28}{'p50':>8}{'p90':>8}{'rounds':>8}")
    print(
        f"{'webhook (gitops-kubepkg)':28}{statistics.median(hook):8.3f}{q(hook, 90):8.3f}{len(hook):8d}"
    )
    label = f"poll every {args.poll_interval:g}s (peer)"
    print(f"{label:28}{statistics.median(poll):8.3f}{q(poll, 90):8.3f}{len(poll):8d}")
    print(f"ratio poll/webhook p50: {statistics.median(poll) / statistics.median(hook):.1f}x")


if __name__ == "__main__":
    main()
