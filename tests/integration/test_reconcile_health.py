"""KubePkg health end to end: a Deployment that really becomes Available makes the KubePkg Ready.

The local control plane runs kube-scheduler and kwok (a simulated kubelet with one fake Node), so
Pods are scheduled and turn Running and Ready without a container runtime. Against a cluster
given with GITOPS_KUBEPKG_TEST_KUBECONFIG, that cluster must run Pods (any image name is
accepted by kwok; a real kubelet would need to pull it).
"""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest

from gitops_kubepkg.conventions import PROGRESSING, READY
from gitops_kubepkg.kube import Kube
from gitops_kubepkg.reconcile.kubepkg import KubePkgReconciler

pytestmark = pytest.mark.integration

API_VERSION, KIND = "octohelm.tech/v1alpha1", "KubePkg"
IMAGE = "docker.io/library/nginx:alpine"  # never pulled: kwok runs no container


def deployment(name: str, namespace: str, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": IMAGE}]},
            },
        },
    }


def ready_condition(kube: Kube, name: str, namespace: str) -> dict[str, Any]:
    pkg = kube.get(API_VERSION, KIND, name, namespace)
    assert pkg is not None
    for condition in pkg["status"]["conditions"]:
        if condition["type"] == "Ready":
            return dict(condition)
    raise AssertionError(f"no Ready condition in {pkg['status']['conditions']}")


def test_a_kubepkg_becomes_ready_once_its_deployment_is_available(
    kube: Kube, namespace: str
) -> None:
    replicas = 2
    web = deployment("web", namespace, replicas)
    kube.apply(
        {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": "health", "namespace": namespace},
            "spec": {
                "version": "1.0.0",
                "images": {IMAGE: ""},
                "manifests": {f"web.{namespace}.deployment": copy.deepcopy(web)},
            },
        }
    )
    reconciler = KubePkgReconciler(kube)
    try:
        outcome, changes = reconciler.reconcile(namespace, "health")
        assert changes is not None and changes.count("created") == 1, outcome
        # The first pass only created the Deployment: nothing can be available yet.
        assert outcome.kind == PROGRESSING, outcome
        first = ready_condition(kube, "health", namespace)
        assert first["status"] == "False"
        assert f"waiting for Deployment {namespace}/web" in first["message"]

        # Later passes (what the controller's requeue does) pick up the rollout's progress.
        deadline = time.monotonic() + 120
        while outcome.kind != READY and time.monotonic() < deadline:
            assert outcome.kind == PROGRESSING, outcome
            time.sleep(0.5)
            outcome, _ = reconciler.reconcile(namespace, "health")
        assert outcome.kind == READY, f"still {outcome} after 120s"
    finally:
        reconciler.applier.close()

    ready = ready_condition(kube, "health", namespace)
    assert ready["status"] == "True"
    assert ready["message"] == "version 1.0.0: 1 objects ready"
    live = kube.get("apps/v1", "Deployment", "web", namespace)
    assert live is not None
    assert live["status"].get("availableReplicas") == replicas
    pkg = kube.get(API_VERSION, KIND, "health", namespace)
    assert pkg is not None
    assert [r["state"] for r in pkg["status"]["resources"]] == ["Current"]
