"""Which writes apply may make at once, and which creates it may make without a dry run."""

from __future__ import annotations

from typing import Any

from gitops_kubepkg.reconcile.plan import is_inert, tier_of, write_order


def obj(api_version: str, kind: str, name: str = "x", **spec: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"apiVersion": api_version, "kind": kind, "metadata": {"name": name}}
    if spec:
        out["spec"] = spec
    return out


def test_configuration_comes_before_workloads_and_webhooks_and_custom_resources_last() -> None:
    assert {tier_of(k) for k in ("ConfigMap", "ServiceAccount", "Service", "Secret")} == {1}
    assert {tier_of(k) for k in ("RoleBinding", "PersistentVolumeClaim", "Ingress")} == {1}
    assert {tier_of(k) for k in ("Deployment", "StatefulSet", "Job", "CronJob")} == {2}
    assert {tier_of(k) for k in ("MutatingWebhookConfiguration", "APIService", "Widget")} == {3}


def test_write_order_groups_by_stage_then_tier() -> None:
    objects = [
        obj("example.com/v1", "Widget", "w"),
        obj("apps/v1", "Deployment", "d"),
        obj("v1", "Namespace", "n"),
        obj("policy/v1", "PodDisruptionBudget", "p"),  # ranks after Deployment, same tier as CM
        obj("v1", "ConfigMap", "c"),
    ]
    names = [o["metadata"]["name"] for o in sorted(objects, key=write_order)]
    assert names == ["n", "c", "p", "d", "w"]


def test_inert_kinds_are_built_in_and_act_on_nothing() -> None:
    assert is_inert(obj("v1", "ConfigMap"))
    assert is_inert(obj("v1", "Secret"))
    assert is_inert(obj("rbac.authorization.k8s.io/v1", "RoleBinding"))
    assert is_inert(obj("v1", "Service", clusterIP="None"))
    assert not is_inert(obj("v1", "Service", type="LoadBalancer"))  # a load balancer is made
    assert not is_inert(obj("v1", "Service", type="NodePort"))
    assert not is_inert(obj("apps/v1", "Deployment"))
    assert not is_inert(obj("v1", "PersistentVolumeClaim"))  # a volume is provisioned
    assert not is_inert(obj("example.com/v1", "ConfigMap"))  # same name, another API


def test_a_failure_to_retry_wins_over_refusals_and_a_refusal_names_the_object() -> None:
    from gitops_kubepkg.errors import KubeError, Unavailable
    from gitops_kubepkg.reconcile.apply import (
        ApplyRefused,
        Lagged,
        OwnedElsewhere,
        _transient,
        _Tried,
    )
    from gitops_kubepkg.reconcile.objects import ObjectRef

    ref = ObjectRef("v1", "ConfigMap", "ns", "a")
    assert _transient(Unavailable("gone")) and _transient(KubeError("x", status=503))
    assert _transient(KubeError("slow down", status=429))
    assert not _transient(KubeError("invalid", status=422))
    assert not _transient(KubeError("forbidden", status=403))

    def raised(tried: _Tried) -> BaseException | None:
        try:
            tried.raise_any()
        except Exception as e:
            return e
        return None

    busy = KubeError("busy", status=500)
    assert raised(_Tried(refused=[(ref, "no")], failed=[busy])) is busy
    taken = raised(_Tried(refused=[(ref, "no")], taken=[(ref, "belongs to KubePkg ns/b")]))
    assert isinstance(taken, OwnedElsewhere) and "belongs to KubePkg ns/b" in str(taken)
    refused = raised(_Tried(refused=[(ref, "port out of range")], lagged=True))
    assert isinstance(refused, ApplyRefused) and "ConfigMap ns/a" in str(refused)
    assert isinstance(raised(_Tried(lagged=True)), Lagged)
    assert raised(_Tried()) is None
