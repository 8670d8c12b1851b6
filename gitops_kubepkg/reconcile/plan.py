"""Plan: compare the rendered objects with live state and the last inventory. Pure.

Second step of a pass (render > plan > apply > prune > status). Objects are sorted into stages
(CRDs and Namespaces first, then the rest in a stable kind order; within the second stage, tiers of
kinds that may be written together: what others refer to, then workloads, then what changes the
API itself (webhooks, APIServices) and custom resources) and sorted into: to create (not
live), to check (live, but not a superset of what we apply: the server may only have normalised a
value, so apply asks it with a dry run), unchanged (live already holds everything we apply,
including the config digest, so the pass writes nothing), and to prune (applied before, gone from
the package, still carrying our labels, not annotated to keep).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from gitops_kubepkg.reconcile.objects import (
    ANNOTATION_DIGEST,
    FIELD_MANAGER,
    ObjectRef,
    is_ours,
    prune_disabled,
)
from gitops_kubepkg.spec import KubeObject

# Apply order within the second stage: what others refer to comes first.
KIND_ORDER = (
    "CustomResourceDefinition",
    "Namespace",
    "ResourceQuota",
    "LimitRange",
    "PriorityClass",
    "StorageClass",
    "RuntimeClass",
    "IngressClass",
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "Service",
    "Endpoints",
    "EndpointSlice",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "StatefulSet",
    "Job",
    "CronJob",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "NetworkPolicy",
    "Ingress",
    "APIService",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
)
_RANK = {kind: i for i, kind in enumerate(KIND_ORDER)}
FIRST_STAGE = frozenset({"CustomResourceDefinition", "Namespace"})
_VOLATILE_METADATA = ("managedFields", "resourceVersion", "generation")


# The second stage's tiers: kinds of one tier have no order among them and are written at once.
_WORKLOADS = frozenset(
    {"DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment", "StatefulSet"}
    | {"Job", "CronJob"}
)
_LAST = frozenset({"APIService", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"})

INERT_KINDS = frozenset(
    {
        ("v1", "ConfigMap"),
        ("v1", "Secret"),
        ("v1", "ServiceAccount"),
        ("v1", "Service"),
        ("rbac.authorization.k8s.io/v1", "Role"),
        ("rbac.authorization.k8s.io/v1", "RoleBinding"),
        ("rbac.authorization.k8s.io/v1", "ClusterRole"),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
    }
)
"""Built-in kinds with no status to wait for and nothing that acts on a new object's behalf
(no Pods, volumes, load balancers or admission): creating one and deleting it again at once
leaves no trace. Apply creates them without a dry run (a refusal deletes what the pass created),
and the controller watches them by metadata only (their health is their existence)."""


def is_inert(obj: Mapping[str, Any]) -> bool:
    """Whether ``obj`` is of an ``INERT_KINDS`` kind (a Service only if no load balancer or node
    port is allocated for it)."""
    if (obj.get("apiVersion"), obj.get("kind")) not in INERT_KINDS:
        return False
    if obj.get("kind") == "Service":
        return bool((obj.get("spec") or {}).get("type", "ClusterIP") == "ClusterIP")
    return True


def tier_of(kind: str) -> int:
    """The write tier of a second-stage kind: 1 what others refer to (configuration, RBAC,
    storage, Services, policies), 2 workloads, 3 webhooks, APIServices and kinds we do not know
    (custom resources: an operator may act on them at once)."""
    if kind in _WORKLOADS:
        return 2
    if kind in _LAST or kind not in _RANK:
        return 3
    return 1


def stage_of(kind: str) -> int:
    """0 for CRDs and Namespaces (applied and settled before anything else), 1 for the rest."""
    return 0 if kind in FIRST_STAGE else 1


def kind_rank(kind: str) -> int:
    return _RANK.get(kind, len(KIND_ORDER))


def apply_order(obj: Mapping[str, Any]) -> tuple[int, int, str, str, str]:
    ref = ObjectRef.of(obj)
    return (stage_of(ref.kind), kind_rank(ref.kind), ref.kind, ref.namespace, ref.name)


def write_order(obj: Mapping[str, Any]) -> tuple[int, int, int, str, str, str]:
    """``apply_order`` with each second-stage kind's tier first (how apply groups its writes)."""
    ref = ObjectRef.of(obj)
    stage = stage_of(ref.kind)
    return (stage, tier_of(ref.kind) if stage else 0, *apply_order(obj)[1:])


def is_subset(desired: Any, live: Any) -> bool:
    """Whether ``live`` holds every value of ``desired`` (server defaults may add fields)."""
    return next(differences(desired, live), None) is None


def _same_scalar(desired: Any, live: Any) -> bool:
    if desired == live:
        return True
    # JSON numbers the server may echo as another type (1 vs 1.0); strings stay strict.
    return (
        isinstance(desired, int | float)
        and isinstance(live, int | float)
        and not isinstance(desired, bool)
        and float(desired) == float(live)
    )


def _key_path(path: str, key: str) -> str:
    if key.replace("_", "").isalnum() and not key[:1].isdigit():
        return f"{path}.{key}" if path else key
    return f'{path}["{key}"]'


def differences(desired: Any, live: Any, path: str = "") -> Iterator[str]:
    """The field paths (``spec.template.spec.containers[0].image``) where ``live`` does not hold
    ``desired``'s value, lazily: ``is_subset`` stops at the first, ``trace`` names them all."""
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            yield path or "."
            return
        for k, v in desired.items():
            where = _key_path(path, str(k))
            if k not in live:
                yield where
            else:
                yield from differences(v, live[k], where)
    elif isinstance(desired, list):
        if not isinstance(live, list) or len(desired) != len(live):
            yield path or "."
            return
        for i, (d, v) in enumerate(zip(desired, live, strict=True)):
            yield from differences(d, v, f"{path}[{i}]")
    elif not _same_scalar(desired, live):
        yield path or "."


def _annotation(obj: Mapping[str, Any], key: str) -> Any:
    return ((obj.get("metadata") or {}).get("annotations") or {}).get(key)


def untouched_since_applied(desired: Mapping[str, Any], live: Mapping[str, Any]) -> bool:
    """Live carries what we last applied (same config digest) and nobody wrote it since.

    The fast path of a no-op pass: no other field manager has written the object (outside the
    status subresource) at or after our last apply, so every field we own still has our value.
    A write through the scale subresource (``kubectl scale``, an HPA) counts: it changes
    ``spec.replicas``, and the server records it without a time, so an entry without a time is
    taken as later than ours.
    """
    digest = _annotation(desired, ANNOTATION_DIGEST)
    if not digest or _annotation(live, ANNOTATION_DIGEST) != digest:
        return False
    entries = (live.get("metadata") or {}).get("managedFields") or []
    ours = [
        e
        for e in entries
        if e.get("manager") == FIELD_MANAGER
        and e.get("operation") == "Apply"
        and not e.get("subresource")
    ]
    if len(ours) != 1:
        return False
    applied_at = ours[0].get("time") or ""
    return not any(
        e.get("manager") != FIELD_MANAGER
        and e.get("subresource") != "status"
        and (e.get("time") or "~") >= applied_at  # "~" sorts after any timestamp
        for e in entries
    )


def normalised(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """``obj`` as the server stores it, where that is known: Secret stringData becomes data."""
    if obj.get("kind") == "Secret" and obj.get("apiVersion") == "v1" and obj.get("stringData"):
        data = dict(obj.get("data") or {})
        for k, v in obj["stringData"].items():
            data[k] = base64.b64encode(str(v).encode()).decode()
        return {k: v for k, v in {**obj, "data": data}.items() if k != "stringData"}
    return obj


def comparable(obj: Mapping[str, Any]) -> dict[str, Any]:
    """``obj`` without what changes on every write (for comparing a dry-run result with live)."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _VOLATILE_METADATA}
    return {**obj, "metadata": meta}


@dataclass(frozen=True)
class Plan:
    create: list[KubeObject] = field(default_factory=list)
    check: list[KubeObject] = field(default_factory=list)
    unchanged: list[ObjectRef] = field(default_factory=list)
    prune: list[ObjectRef] = field(default_factory=list)
    keep: list[tuple[ObjectRef, str]] = field(default_factory=list)

    @property
    def to_write(self) -> list[KubeObject]:
        return sorted(self.create + self.check, key=apply_order)


def plan(
    desired: Iterable[KubeObject],
    live: Mapping[ObjectRef, KubeObject],
    inventory: Iterable[ObjectRef],
    *,
    package: str,
    namespace: str,
) -> Plan:
    """Sort each desired object and each previously applied object into what to do with it."""
    out = Plan()
    wanted: set[ObjectRef] = set()
    for obj in sorted(desired, key=apply_order):
        ref = ObjectRef.of(obj)
        wanted.add(ref)
        current = live.get(ref)
        if current is None:
            out.create.append(obj)
        elif untouched_since_applied(obj, current) or is_subset(normalised(obj), current):
            out.unchanged.append(ref)
        else:
            out.check.append(obj)
    # Labelled live objects count too: an inventory lost with the status must not leak objects.
    candidates = set(inventory) | {r for r, o in live.items() if is_ours(o, package, namespace)}
    for ref in sorted(candidates - wanted, key=lambda r: (-stage_of(r.kind), r)):
        current = live.get(ref)
        if current is None:
            continue
        if not is_ours(current, package, namespace):
            out.keep.append((ref, "it no longer carries this package's labels"))
        elif prune_disabled(current):
            out.keep.append((ref, "it is annotated gitops.kubepkg.dev/prune: disabled"))
        else:
            out.prune.append(ref)
    return out
