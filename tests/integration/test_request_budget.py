"""The API request budget of a cold pass (issue 14): at most 10 requests per KubePkg.

A real controller process on the real API server, KubePkgs of Flux's benchmark shape (a Deployment
scaled to 0, a ServiceAccount, a Service, a ConfigMap). The budget is what one more KubePkg costs
until it is Ready: a first batch starts the watches of the applied kinds (a fixed cost, whatever
the number of KubePkgs), then the counter on /metrics is read before and after a second batch.
A count, not a time. And ``--once`` works on ``--kubepkg-workers`` threads.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from gitops_kubepkg.controller.runtime import Runtime
from gitops_kubepkg.kube import Kube
from gitops_kubepkg.reconcile.kubepkg import KubePkgReconciler
from gitops_kubepkg.reconcile.status import PROGRESSING, READY
from tests.integration.controllers import RunningController, flux_app, wait_until

pytestmark = pytest.mark.integration

BUDGET = 10


def ready(kube: Kube, namespace: str) -> int:
    return sum(
        1
        for pkg in kube.list("octohelm.tech/v1alpha1", "KubePkg", namespace)
        for c in (pkg.get("status") or {}).get("conditions") or []
        if c["type"] == "Ready" and c["status"] == "True"
    )


def test_a_cold_pass_costs_at_most_10_api_requests_per_kubepkg(
    kubeconfig: str, kube: Kube, namespace: str, tmp_path: Path
) -> None:
    args = ("-n", namespace, "--no-leader-elect", "--no-repositories", "--kubepkg-workers", "2")
    with RunningController(
        kubeconfig, tmp_path / "state", *args, log=tmp_path / "controller.log"
    ) as controller:
        wait_until(lambda: controller.get("/readyz")[0] == 200, 60, "readiness")
        for i in range(2):
            kube.apply(flux_app(f"warm-{i}", namespace))
        wait_until(lambda: ready(kube, namespace) == 2, 120, "the first 2 KubePkgs Ready")
        before = controller.api_requests()
        apps = 8
        for i in range(apps):
            kube.apply(flux_app(f"app-{i}", namespace))
        wait_until(lambda: ready(kube, namespace) == 2 + apps, 120, f"{apps} more KubePkgs Ready")
        spent = controller.api_requests() - before
        log = controller.log()
    assert spent <= BUDGET * apps, (
        f"{apps} KubePkgs cost {spent} API requests until Ready ({spent / apps:.1f} each, "
        f"budget {BUDGET}); controller log:\n{log[-4000:]}"
    )
    for i in range(apps):  # each really applied: the budget was not met by skipping work
        for kind in ("ConfigMap", "ServiceAccount", "Service"):
            assert kube.get("v1", kind, f"app-{i}", namespace) is not None
        assert kube.get("apps/v1", "Deployment", f"app-{i}", namespace) is not None


def test_once_passes_on_as_many_threads_as_kubepkg_workers(kube: Kube, namespace: str) -> None:
    """``controller --once`` runs ``Runtime.run_once`` with ``--kubepkg-workers`` threads."""
    for i in range(6):
        kube.apply(flux_app(f"once-{i}", namespace))
    threads: set[str] = set()
    reconciler = KubePkgReconciler(kube)
    runtime = Runtime(
        kube,
        syncer=None,
        reconciler=reconciler,
        namespace=namespace,
        workers=3,
        watch_files=False,
        observer=lambda key, outcome, seconds: threads.add(threading.current_thread().name),
    )
    try:
        results = runtime.run_once()
    finally:
        reconciler.applier.close()
    assert sorted(name for (_, name), _ in results) == [f"once-{i}" for i in range(6)]
    assert all(outcome.kind in (READY, PROGRESSING) for _, outcome in results), results
    assert len(threads) >= 2 and threads <= {"once-0", "once-1", "once-2"}, threads
