"""The controller process's /metrics, /healthz and /readyz, and its JSON log, after real work:
repositories fetched, a KubePkg applied and then pruned, registry requests served.

One real controller process (no leader election), real git, the real kube-apiserver."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gitops_kubepkg import git
from gitops_kubepkg.kube import Kube
from gitops_kubepkg.reconcile.kubepkg import KubePkgReconciler
from gitops_kubepkg.spec import API_VERSION, KIND
from gitops_kubepkg.spec.crds import GITOPS_API_VERSION
from tests.integration.controllers import RunningController, wait_until
from tests.integration.git_servers import free_port

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def package(*configmaps: str) -> bytes:
    return json.dumps(
        {
            "apiVersion": "octohelm.tech/v1alpha1",
            "kind": "KubePkg",
            "metadata": {"name": "app"},
            "spec": {
                "version": "1.0.0",
                "manifests": {
                    f"{name}.configmap": {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "metadata": {"name": name},
                        "data": {"name": name},
                    }
                    for name in configmaps
                },
            },
        }
    ).encode()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """(sample name, labels) -> value, parsed with the Prometheus client's own parser."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], series: str, **labels: str) -> float:  # fmt: skip
    return sum(v for (n, ls), v in found.items() if n == series and set(labels.items()) <= set(ls))


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def test_metrics_name_every_series_after_real_work(
    kube: Kube, kubeconfig: str, namespace: str, tmp_path: Path
) -> None:
    deploy = git.init_bare(tmp_path / "deploy.git")
    deploy.commit_files("main", {"app/kubepkg.json": package("a", "b")}, "two ConfigMaps")
    cat = git.init_bare(tmp_path / "catalog.git")
    cat.tag("app/v1.0.0", cat.commit_files("main", {"app/kubepkg.json": package("a")}, "c"))
    for name, url, kind in [
        ("prod", tmp_path / "deploy.git", "deployment"),
        ("catalog", tmp_path / "catalog.git", "catalog"),
    ]:
        kube.apply(
            {
                "apiVersion": GITOPS_API_VERSION,
                "kind": "Repository",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"url": f"file://{url}", "type": kind, "interval": "1h"},
            }
        )
    store = tmp_path / "store"
    blob = b"an imported layer"
    (store / "blobs" / "sha256").mkdir(parents=True)
    (store / "blobs" / "sha256" / hashlib.sha256(blob).hexdigest()).write_bytes(blob)
    registry_port = free_port()
    args = [
        "-n", namespace, "--no-leader-elect", "--log-format", "json",
        "--serve-registry", str(store), "--registry-listen", f"127.0.0.1:{registry_port}",
    ]  # fmt: skip
    try:
        with RunningController(
            kubeconfig, tmp_path / "state", *args, log=tmp_path / "controller.log"
        ) as controller:
            wait_until(lambda: controller.get("/readyz")[0] == 200, 60, "readiness")
            assert controller.get("/healthz") == (200, "ok\n")
            assert controller.get("/nope")[0] == 404
            wait_until(
                lambda: kube.get("v1", "ConfigMap", "b", namespace), 60, "ConfigMap b applied"
            )

            # Drop b from the package: the next pass prunes it.
            deploy.commit_files("main", {"app/kubepkg.json": package("a")}, "only a")
            out = subprocess.run(
                [sys.executable, "-m", "gitops_kubepkg", "reconcile", "repository", "prod",
                 "-n", namespace, "--kubeconfig", kubeconfig],
                cwd=REPO, capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert out.returncode == 0, out.stderr
            wait_until(lambda: kube.get("v1", "ConfigMap", "b", namespace) is None, 60, "b pruned")
            registry = f"http://127.0.0.1:{registry_port}"
            assert get(f"{registry}/v2/") == 200
            assert get(f"{registry}/v2/library/nope/manifests/latest") == 404

            # The catalog's first sync runs beside prod's and may finish after the prune.
            def settled() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
                s = samples(controller.get("/metrics")[1])
                pruned = value(s, "gitops_kubepkg_objects_pruned_total")
                fetches = value(s, "gitops_kubepkg_git_fetch_duration_seconds_count")
                return s if pruned and fetches >= 3 else None

            found = wait_until(settled, 30, "the prune and three fetches to be counted")
    finally:
        reconciler = KubePkgReconciler(kube)
        if kube.get(API_VERSION, KIND, "app", namespace) is not None:
            kube.delete(API_VERSION, KIND, "app", namespace)
            reconciler.reconcile(namespace, "app")
        reconciler.applier.close()

    duration = "gitops_kubepkg_reconcile_duration_seconds"
    assert value(found, f"{duration}_count", kind="Repository", result="ready") >= 2
    assert value(found, f"{duration}_count", kind="KubePkg") >= 2
    assert value(found, f"{duration}_bucket", kind="KubePkg", le="+Inf") >= 2
    assert value(found, "gitops_kubepkg_git_fetch_duration_seconds_count") >= 3
    assert value(found, "gitops_kubepkg_git_fetch_bytes_total") > 0
    assert value(found, "gitops_kubepkg_git_polls_total", fetched="true") >= 3
    applied = "gitops_kubepkg_objects_applied_total"
    assert value(found, applied, kind="ConfigMap", action="created") == 2
    assert value(found, "gitops_kubepkg_objects_pruned_total", kind="ConfigMap") == 1
    requests = "gitops_kubepkg_registry_requests_total"
    assert value(found, requests, method="GET", code="200") >= 1
    assert value(found, requests, method="GET", code="404") >= 1
    assert value(found, "gitops_kubepkg_registry_store_bytes") == len(blob)
    assert value(found, "gitops_kubepkg_registry_store_blobs") == 1
    assert value(found, "gitops_kubepkg_leader") == 1
    assert value(found, "process_resident_memory_bytes") > 0
    ready = "gitops_kubepkg_ready"
    assert value(found, ready, kind="KubePkg", namespace=namespace, name="app") == 1
    assert value(found, ready, kind="Repository", namespace=namespace, name="prod") == 1
    assert value(found, "gitops_kubepkg_suspended", kind="Repository", name="prod") == 0
    api = "gitops_kubepkg_api_requests_total"
    assert value(found, api, verb="all") > value(found, api, verb="write") > 0
    assert ("gitops_kubepkg_queue_depth", frozenset()) in found
    assert value(found, "gitops_kubepkg_queue_wait_seconds_count") >= 4
    assert value(found, "gitops_kubepkg_worker_restarts_total") == 0

    lines = [json.loads(line) for line in controller.log().splitlines() if line.strip()]
    assert {"ts", "level", "logger", "msg"} <= set(lines[0])
    assert any("applied KubePkg" in line["msg"] for line in lines)
