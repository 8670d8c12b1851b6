"""Leader election between real controller processes: one of two replicas works, the other
stands by (ready), takes over after the leader is SIGKILLed, answers a requested sync, and
releases the Lease on SIGTERM; a webhook that reaches the standby is forwarded to the leader.

Real processes (``gitops-kubepkg controller``), the real kube-apiserver, real git. The takeover
is checked against a generous deadline derived from the lease duration, never timed."""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from gitops_kubepkg import git
from gitops_kubepkg.controller.leader import API_VERSION as LEASE_API
from gitops_kubepkg.controller.process import LEASE_NAME
from gitops_kubepkg.kube import Kube
from gitops_kubepkg.sources import catalog
from gitops_kubepkg.spec.crds import GITOPS_API_VERSION
from tests.integration.controllers import RunningController, wait_until
from tests.integration.git_servers import free_port

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
LEASE_SECONDS = 4
# The standby needs one lease duration of silence, plus a retry period to notice, plus process
# and API latency: three lease durations and ten seconds is far beyond any of that.
TAKEOVER_DEADLINE = 3 * LEASE_SECONDS + 10


def kubepkg(name: str, version: str) -> bytes:
    return json.dumps(
        {
            "apiVersion": "octohelm.tech/v1alpha1",
            "kind": "KubePkg",
            "metadata": {"name": name},
            "spec": {
                "version": version,
                "manifests": {
                    f"{name}.configmap": {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "metadata": {"name": name},
                        "data": {"version": version},
                    }
                },
            },
        }
    ).encode()


def lease(kube: Kube, namespace: str) -> dict[str, Any]:
    obj = kube.get(LEASE_API, "Lease", LEASE_NAME, namespace)
    return dict((obj or {}).get("spec") or {})


def metric(controller: RunningController, name: str) -> float | None:
    _, text = controller.get("/metrics")
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def test_one_replica_leads_the_other_takes_over_when_it_is_killed(
    kube: Kube, kubeconfig: str, namespace: str, tmp_path: Path
) -> None:
    repo = git.init_bare(tmp_path / "catalog.git")
    repo.tag("web/v1.0.0", repo.commit_files("main", {"web/kubepkg.json": kubepkg("web", "1.0.0")}, "1"))  # fmt: skip
    kube.apply(
        {
            "apiVersion": GITOPS_API_VERSION,
            "kind": "Repository",
            "metadata": {"name": "catalog", "namespace": namespace},
            "spec": {"url": f"file://{tmp_path / 'catalog.git'}", "type": "catalog", "interval": "1h"},
        }
    )  # fmt: skip
    args = [
        "-n", namespace, "--leader-election-namespace", namespace,
        "--lease-duration", f"{LEASE_SECONDS}s", "--renew-deadline", "3s", "--retry-period", "1s",
    ]  # fmt: skip
    with (
        RunningController(kubeconfig, tmp_path / "a", *args, log=tmp_path / "a.log") as a,
        RunningController(kubeconfig, tmp_path / "b", *args, log=tmp_path / "b.log") as b,
    ):
        holder = wait_until(lambda: lease(kube, namespace).get("holderIdentity"), 60, "a leader")
        leader, standby = (a, b) if holder == a.identity else (b, a)
        assert holder == leader.identity
        first = lease(kube, namespace)
        assert first["leaseDurationSeconds"] == LEASE_SECONDS
        assert first["acquireTime"] and first["renewTime"]

        # Both are ready: the leader once it listed what it works on, the standby while it can
        # reach the API server (so it may take over). Only the leader works.
        wait_until(lambda: leader.get("/readyz")[0] == 200, 60, "the leader to be ready")
        wait_until(lambda: standby.get("/readyz")[0] == 200, 60, "the standby to be ready")
        assert wait_until(lambda: metric(leader, "gitops_kubepkg_leader") == 1.0, 30, "gauge")
        assert metric(standby, "gitops_kubepkg_leader") == 0.0
        name = catalog.revision_name("catalog", "web", "1.0.0")
        kube.wait_for(GITOPS_API_VERSION, catalog.KIND, name, namespace, timeout=60)
        renewed = wait_until(
            lambda: lease(kube, namespace)["renewTime"] != first["renewTime"],
            30,
            "the leader to renew",
        )
        assert renewed

        leader.signal(signal.SIGKILL)
        assert leader.wait(30) == -signal.SIGKILL
        wait_until(
            lambda: lease(kube, namespace).get("holderIdentity") == standby.identity,
            TAKEOVER_DEADLINE,
            "the standby to take over the Lease of the killed leader",
        )
        after = lease(kube, namespace)
        assert after["leaseTransitions"] == int(first.get("leaseTransitions") or 0) + 1
        wait_until(lambda: standby.get("/readyz")[0] == 200, 60, "the new leader to be ready")

        # The new leader works: a new tag, a requested sync, a new PackageRevision.
        repo.tag("web/v1.1.0", repo.commit_files("main", {"web/kubepkg.json": kubepkg("web", "1.1.0")}, "2"))  # fmt: skip
        out = subprocess.run(
            [sys.executable, "-m", "gitops_kubepkg", "reconcile", "repository", "catalog",
             "-n", namespace, "--kubeconfig", kubeconfig, "--timeout", "60s"],
            cwd=REPO, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr + standby.log()
        name = catalog.revision_name("catalog", "web", "1.1.0")
        assert kube.get(GITOPS_API_VERSION, catalog.KIND, name, namespace) is not None

        standby.signal(signal.SIGTERM)
        assert standby.wait(60) == 0, standby.log()
    released = lease(kube, namespace)
    assert not released.get("holderIdentity"), "SIGTERM releases the Lease"
    assert "released" in standby.log()


def test_a_webhook_sent_to_the_standby_is_forwarded_to_the_leader(
    kube: Kube, kubeconfig: str, namespace: str, tmp_path: Path
) -> None:
    repo = git.init_bare(tmp_path / "catalog.git")
    repo.tag("web/v1.0.0", repo.commit_files("main", {"web/kubepkg.json": kubepkg("web", "1.0.0")}, "1"))  # fmt: skip
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "hook", "namespace": namespace},
            "stringData": {"token": "s3cret"},
        }
    )
    kube.apply(
        {
            "apiVersion": GITOPS_API_VERSION,
            "kind": "Repository",
            "metadata": {"name": "catalog", "namespace": namespace},
            "spec": {
                "url": f"file://{tmp_path / 'catalog.git'}",
                "type": "catalog",
                "interval": "1h",
                "webhookSecretRef": {"name": "hook"},
            },
        }
    )
    ports = {"a": free_port(), "b": free_port()}

    def args(name: str) -> list[str]:
        return [
            "-n", namespace, "--leader-election-namespace", namespace,
            "--lease-duration", f"{LEASE_SECONDS}s", "--renew-deadline", "3s",
            "--retry-period", "1s", "--webhook-listen", f"127.0.0.1:{ports[name]}",
        ]  # fmt: skip

    with (
        RunningController(kubeconfig, tmp_path / "a", *args("a"), log=tmp_path / "a.log") as a,
        RunningController(kubeconfig, tmp_path / "b", *args("b"), log=tmp_path / "b.log") as b,
    ):
        holder = wait_until(lambda: lease(kube, namespace).get("holderIdentity"), 60, "a leader")
        assert holder in (a.identity, b.identity)
        standby_port = ports["b"] if holder == a.identity else ports["a"]
        standby = b if holder == a.identity else a
        first = catalog.revision_name("catalog", "web", "1.0.0")
        kube.wait_for(GITOPS_API_VERSION, catalog.KIND, first, namespace, timeout=60)
        # The leader can be done before the standby has even started listening (a loaded VM).
        wait_until(lambda: standby.get("/readyz")[0] == 200, 60, "the standby to be ready")

        repo.tag("web/v1.1.0", repo.commit_files("main", {"web/kubepkg.json": kubepkg("web", "1.1.0")}, "2"))  # fmt: skip
        body = json.dumps({"ref": "refs/tags/web/v1.1.0"}).encode()
        signature = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
        request = urllib.request.Request(
            f"http://127.0.0.1:{standby_port}/hooks/{namespace}/catalog",
            data=body,
            headers={"X-GitHub-Event": "push", "X-Hub-Signature-256": signature},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 202
        # Polling is an hour away: only the forwarded request makes the leader sync now.
        second = catalog.revision_name("catalog", "web", "1.1.0")
        kube.wait_for(GITOPS_API_VERSION, catalog.KIND, second, namespace, timeout=60)

        # The leader writes status after the revisions: wait for the acknowledgement itself.
        def acknowledged() -> bool:
            repository = kube.get(GITOPS_API_VERSION, "Repository", "catalog", namespace) or {}
            requested = (repository.get("metadata", {}).get("annotations") or {}).get(
                "gitops.kubepkg.dev/requestedAt"
            )
            handled = (repository.get("status") or {}).get("lastHandledReconcileAt")
            return bool(requested) and handled == requested

        wait_until(acknowledged, 60, "the forwarded request acknowledged in status")
