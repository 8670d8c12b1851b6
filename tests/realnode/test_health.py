"""Health read from Pods that really run (reconcile/pods.py, status.health): a KubePkg turns Ready
only once its Pod's readiness probe passes, a crash loop and an image the store does not hold are
reported with the Pod, container and the kubelet's own reason. kwok marks every Pod Ready at once,
so only a real kubelet can show that the KubePkg waits for the probe, and only a real kubelet
writes the container states these messages quote.

The passes run in this process (``KubePkgReconciler`` against the real node's API server), one
after another, as the controller's runtime would run them on its events."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gitops_kubepkg.conventions import PROGRESSING, READY, Outcome
from gitops_kubepkg.kube import Kube
from gitops_kubepkg.reconcile.kubepkg import KubePkgReconciler
from gitops_kubepkg.reconcile.pods import CRASH_LOOP, IMAGE_PULL_FAILED
from tests.integration.cluster import set_mirror
from tests.integration.registry_peers import registry_serve
from tests.realnode.conftest import BUSYBOX, RealCluster

pytestmark = pytest.mark.realnode

HOST_IP = "10.88.0.1"
"""The host side of the node's network namespace, where a registry we serve is reachable."""
MISSING_REGISTRY = "store.airgap.invalid"


class PodListCounter(Kube):
    """The real connection; counts the Pod lists a pass sends (what health may cost)."""

    pod_lists = 0

    def list(
        self, api_version: str, kind: str, namespace: str = "", *, label_selector: str = ""
    ) -> Any:
        if kind == "Pod":
            self.pod_lists += 1
        return super().list(api_version, kind, namespace, label_selector=label_selector)


@pytest.fixture
def kube(real_cluster: RealCluster, real_kube: Any) -> Iterator[PodListCounter]:
    client = PodListCounter(real_cluster.kubeconfig)
    yield client
    client.close()


@pytest.fixture
def namespace(real_kube: Any) -> Iterator[str]:
    name = f"rh-{uuid.uuid4().hex[:8]}"
    real_kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    real_kube.delete("v1", "Namespace", name)


def kubepkg(namespace: str, container: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "octohelm.tech/v1alpha1",
        "kind": "KubePkg",
        "metadata": {"name": "app", "namespace": namespace},
        "spec": {
            "version": "1.0.0",
            "manifests": {
                "web.deployment": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {"name": "web"},
                    "spec": {
                        "selector": {"matchLabels": {"app": "web"}},
                        "template": {
                            "metadata": {"labels": {"app": "web"}},
                            "spec": {
                                "terminationGracePeriodSeconds": 1,
                                "containers": [{"name": "app", **container}],
                            },
                        },
                    },
                }
            },
        },
    }


def web_pod(kube: Kube, namespace: str) -> dict[str, Any] | None:
    pods = kube.list("v1", "Pod", namespace, label_selector="app=web")
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    return live[0] if live else None


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return {}


def passes_until(
    reconciler: KubePkgReconciler, namespace: str, done: Any, timeout: float = 120.0
) -> list[Outcome]:
    """Reconcile passes, one a second, until ``done(outcome)``; every outcome seen."""
    seen: list[Outcome] = []
    deadline = time.monotonic() + timeout
    while True:
        outcome, _ = reconciler.reconcile(namespace, "app")
        seen.append(outcome)
        if done(outcome):
            return seen
        assert time.monotonic() < deadline, f"last outcome: {outcome}"
        time.sleep(1.0)


def test_a_kubepkg_turns_ready_only_after_its_pods_readiness_probe_passes(
    kube: PodListCounter, real_kube: Any, namespace: str
) -> None:
    container = {
        "image": BUSYBOX,
        "imagePullPolicy": "Never",
        # Ready only once /tmp/ready exists, a few seconds after the container started.
        "command": ["sh", "-c", "sleep 6; touch /tmp/ready; exec sleep 3600"],
        "readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 1},
    }
    real_kube.create(kubepkg(namespace, container))
    reconciler = KubePkgReconciler(kube, events=False)
    running_but_unready: list[Outcome] = []

    def done(outcome: Outcome) -> bool:
        if outcome.kind != READY:
            pod = web_pod(kube, namespace)
            states = [c.get("state") or {} for c in (pod or {}).get("status", {}).get(
                "containerStatuses") or []]  # fmt: skip
            if (
                states
                and "running" in states[0]
                and condition(pod, "Ready").get("status") != "True"
            ):
                running_but_unready.append(outcome)
        return outcome.kind == READY

    seen = passes_until(reconciler, namespace, done)
    assert seen[0].kind == PROGRESSING and seen[0].reason == "Progressing"
    assert running_but_unready, "no pass saw the container running before its probe passed"
    assert all(o.message.startswith("waiting for Deployment") for o in running_but_unready)
    assert all(o.reason == "Progressing" for o in running_but_unready)  # no Pod problem
    pod = web_pod(kube, namespace)
    pod_ready = condition(pod, "Ready")
    assert pod_ready.get("status") == "True"
    pkg = real_kube.get("octohelm.tech/v1alpha1", "KubePkg", "app", namespace)
    pkg_ready = condition(pkg, "Ready")
    assert pkg_ready["status"] == "True"
    # The KubePkg turned Ready no earlier than its Pod (RFC 3339 in UTC, seconds: sortable).
    assert pkg_ready["lastTransitionTime"] >= pod_ready["lastTransitionTime"]
    # Steady state: a pass over a ready workload reads no Pods.
    kube.pod_lists = 0
    outcome, _ = reconciler.reconcile(namespace, "app")
    assert outcome.kind == READY and kube.pod_lists == 0


def test_a_crash_looping_container_is_reported_with_its_reason(
    kube: PodListCounter, real_kube: Any, namespace: str
) -> None:
    container = {
        "image": BUSYBOX,
        "imagePullPolicy": "Never",
        "command": ["sh", "-c", "echo starting; exit 3"],
    }
    real_kube.create(kubepkg(namespace, container))
    reconciler = KubePkgReconciler(kube, events=False)
    seen = passes_until(reconciler, namespace, lambda o: o.reason == CRASH_LOOP)
    # Without a readiness probe the container counts as Ready for the moment it runs, so a pass
    # may see the Deployment available in between; the crash loop is what stays.
    assert seen[-1].kind == PROGRESSING
    pod = web_pod(kube, namespace)
    assert pod is not None
    name = pod["metadata"]["name"]
    message = seen[-1].message
    assert message.startswith(
        f"waiting for Deployment {namespace}/web: 0/1 replicas available; pod {name}: "
        "container app: "
    )
    assert "exit code 3" in message
    pkg = real_kube.get("octohelm.tech/v1alpha1", "KubePkg", "app", namespace)
    ready = condition(pkg, "Ready")
    assert (ready["status"], ready["reason"], ready["message"]) == ("False", CRASH_LOOP, message)
    (entry,) = pkg["status"]["resources"]
    assert entry["name"] == "web" and entry["reason"] == CRASH_LOOP
    kube.pod_lists = 0
    reconciler.reconcile(namespace, "app")
    assert kube.pod_lists == 1  # one list, by the Deployment's selector, per pass


def test_an_image_missing_from_the_store_reports_the_pull_failure(
    real_cluster: RealCluster, kube: PodListCounter, real_kube: Any, namespace: str, tmp_path: Path
) -> None:
    store = tmp_path / "store"  # our registry, holding nothing
    store.mkdir()
    image = f"{MISSING_REGISTRY}/library/not-imported:1.0"
    with registry_serve(store, host=HOST_IP) as served:
        set_mirror(real_cluster.directory, MISSING_REGISTRY, f"http://{served.host}")
        real_kube.create(kubepkg(namespace, {"image": image, "command": ["true"]}))
        reconciler = KubePkgReconciler(kube, events=False)
        seen = passes_until(reconciler, namespace, lambda o: o.reason == IMAGE_PULL_FAILED)
    message = seen[-1].message
    assert seen[-1].kind == PROGRESSING
    assert "container app: ErrImagePull" in message or "container app: ImagePullBackOff" in message
    assert image in message
    # Our registry answered 404; containerd then tries the upstream (hosts.toml ``server``),
    # which an airgapped node cannot reach: the kubelet's message quotes that last error.
    assert MISSING_REGISTRY in message
    pkg = real_kube.get("octohelm.tech/v1alpha1", "KubePkg", "app", namespace)
    ready = condition(pkg, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", IMAGE_PULL_FAILED)
