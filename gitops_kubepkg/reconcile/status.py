"""Status: object health, the outcome of a pass, and the KubePkg status that reports both. Pure.

Last step of a pass. Health follows kstatus: each object is Current, InProgress, Failed or
Unknown; a workload that is not ready also reads its Pods (``pods.py``), so its health names the
Pod, container and kubelet reason that hold it back, and the outcome's reason says what kind of
problem it is (ImagePullFailed, CrashLoopBackOff, ...). A pass ends in one ``Outcome`` (ready, progressing, stalled: needs a human, or failed:
retry with backoff), and ``conditions`` is the one place that maps an outcome to the Ready,
Reconciling and Stalled conditions and to when the next pass should run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gitops_kubepkg.clock import SYSTEM, timestamp
from gitops_kubepkg.conventions import (
    ERROR,
    PROGRESSING,
    READY,
    STALLED,
    Outcome,
    condition,
    find_condition,
)
from gitops_kubepkg.reconcile.objects import ObjectRef
from gitops_kubepkg.reconcile.pods import WORKLOAD_KINDS, workload_problem
from gitops_kubepkg.spec import KubeObject
from gitops_kubepkg.spec.record import Finding, Revision

CURRENT, IN_PROGRESS, FAILED, UNKNOWN = "Current", "InProgress", "Failed", "Unknown"


@dataclass(frozen=True)
class Health:
    state: str
    message: str = ""
    reason: str = ""
    """Set when a workload's Pods say why it is not ready (``pods.py``: ImagePullFailed,
    CrashLoopBackOff, ContainerCreateFailed, ContainerFailed, Unschedulable)."""


def _cond(obj: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return None


def health(obj: Mapping[str, Any], pods: Sequence[Mapping[str, Any]] | None = None) -> Health:
    """The kstatus-style state of one live object. For a workload that is not Current,
    ``pods`` (its namespace's, or just its own; None: not read) may name the Pod that holds it
    back: the message gets ``; pod NAME: container C: REASON (kubelet message)`` and the health
    that reason."""
    h = _object_health(obj)
    if pods is None or h.state == CURRENT or obj.get("kind") not in WORKLOAD_KINDS:
        return h
    problem = workload_problem(obj, pods)
    if problem is None:
        return h
    return Health(h.state, f"{h.message}; {problem.message}", problem.reason)


def needs_pods(obj: Mapping[str, Any], h: Health) -> bool:
    """Whether a pass should read ``obj``'s Pods: a workload that is not Current, once its
    controller has seen its spec (the pass that just created or changed it has no Pods of
    that spec to ask yet), not being deleted. A ready workload costs no request."""
    meta = obj.get("metadata") or {}
    if h.state == CURRENT or obj.get("kind") not in WORKLOAD_KINDS or meta.get("deletionTimestamp"):
        return False
    observed = (obj.get("status") or {}).get("observedGeneration")
    if obj.get("kind") != "Job" and meta.get("generation") is not None:
        return observed is not None and observed >= meta["generation"]
    return True


def _object_health(obj: Mapping[str, Any]) -> Health:
    kind = obj.get("kind", "")
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    spec = obj.get("spec") or {}
    if meta.get("deletionTimestamp"):
        return Health(IN_PROGRESS, "being deleted")
    generation = meta.get("generation")
    observed = status.get("observedGeneration")
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet") and (
        generation is not None and (observed is None or observed < generation)
    ):
        return Health(IN_PROGRESS, "the controller has not seen the latest spec yet")
    if kind in ("Deployment", "ReplicaSet", "StatefulSet"):
        want = spec.get("replicas", 1)
        if kind == "Deployment":
            progressing = _cond(obj, "Progressing")
            if progressing and progressing.get("reason") == "ProgressDeadlineExceeded":
                return Health(FAILED, progressing.get("message", "progress deadline exceeded"))
            updated = status.get("updatedReplicas", 0)
            if updated < want:
                return Health(IN_PROGRESS, f"{updated}/{want} replicas updated")
        ready_key = "availableReplicas" if kind == "Deployment" else "readyReplicas"
        ready = status.get(ready_key, 0)
        if ready < want:
            return Health(IN_PROGRESS, f"{ready}/{want} replicas {ready_key[:-8]}")
        if kind == "StatefulSet" and status.get("updateRevision") not in (
            None,
            status.get("currentRevision"),
        ):
            return Health(IN_PROGRESS, "rolling update in progress")
        return Health(CURRENT, f"{ready}/{want} replicas {ready_key[:-8]}")
    if kind == "DaemonSet":
        want = status.get("desiredNumberScheduled", 0)
        available = status.get("numberAvailable", 0)
        updated = status.get("updatedNumberScheduled", 0)
        if available < want or updated < want:
            return Health(IN_PROGRESS, f"{available}/{want} pods available")
        return Health(CURRENT, f"{available}/{want} pods available")
    if kind == "Job":
        if (c := _cond(obj, "Failed")) and c.get("status") == "True":
            return Health(FAILED, c.get("message") or "job failed")
        if (c := _cond(obj, "Complete")) and c.get("status") == "True":
            return Health(CURRENT, "complete")
        return Health(IN_PROGRESS, "job running")
    if kind == "PersistentVolumeClaim":
        phase = status.get("phase", "Pending")
        return Health(CURRENT if phase == "Bound" else IN_PROGRESS, f"phase {phase}")
    if kind == "CustomResourceDefinition":
        c = _cond(obj, "Established")
        ok = bool(c and c.get("status") == "True")
        return Health(CURRENT if ok else IN_PROGRESS, "established" if ok else "not established")
    if kind == "Namespace":
        phase = status.get("phase", "Active")
        return Health(CURRENT if phase == "Active" else IN_PROGRESS, f"phase {phase}")
    if (c := _cond(obj, "Ready")) is not None:
        if c.get("status") == "True":
            return Health(CURRENT, c.get("message") or "ready")
        if c.get("reason") in ("Failed", "Error"):
            return Health(FAILED, c.get("message") or "not ready")
        return Health(IN_PROGRESS, c.get("message") or "not ready")
    return Health(CURRENT)


def outcome_for(resources: Mapping[ObjectRef, Health], version: str) -> Outcome:
    """Ready when every object is Current; progressing while some roll out; stalled on failure.

    Messages depend only on state, never on what this pass changed, so a pass with nothing to
    do computes the same status as the last one and writes nothing.
    """
    failed = [(r, h) for r, h in sorted(resources.items()) if h.state == FAILED]
    if failed:
        ref, h = min(failed, key=lambda rh: (not rh[1].reason, rh[0]))
        return Outcome(STALLED, h.reason or "HealthCheckFailed", f"{ref}: {h.message}")
    waiting = [(r, h) for r, h in sorted(resources.items()) if h.state != CURRENT]
    if waiting:
        # An object whose Pods say why it waits comes first: that is what a human must fix.
        ref, h = min(waiting, key=lambda rh: (not rh[1].reason, rh[0]))
        more = f" (and {len(waiting) - 1} more)" if len(waiting) > 1 else ""
        return Outcome(
            PROGRESSING, h.reason or "Progressing", f"waiting for {ref}: {h.message}{more}", 5.0
        )
    if not resources:
        return Outcome(READY, "ReconciliationSucceeded", f"version {version}: no objects to apply")
    return Outcome(
        READY, "ReconciliationSucceeded", f"version {version}: {len(resources)} objects ready"
    )


HEALTH_TIMEOUT = 600.0
"""How long a KubePkg may stay progressing before it is Stalled (``controller --health-timeout``)."""


def progressing_for(previous: Mapping[str, Any], now: datetime) -> float | None:
    """Seconds since the KubePkg's Reconciling condition turned True, by the status the last
    pass wrote; None when it is not progressing (or the time does not read)."""
    since = None
    for c in previous.get("conditions") or []:
        if c.get("type") == "Reconciling" and c.get("status") == "True":
            since = c.get("lastTransitionTime")
    if not since:
        return None
    try:
        started = datetime.strptime(str(since), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None
    return (now - started).total_seconds()


def with_health_timeout(
    outcome: Outcome, previous: Mapping[str, Any], now: datetime, timeout: float
) -> Outcome:
    """``outcome``, or Stalled (HealthCheckTimeout) when the KubePkg has been progressing for
    longer than ``timeout`` seconds: since its Reconciling condition turned True, by the status
    the last pass wrote. It stays Stalled until its objects turn healthy (their events wake it)."""
    if outcome.kind != PROGRESSING or timeout <= 0:
        return outcome
    waited = progressing_for(previous, now)
    if waited is None or waited <= timeout:
        return outcome
    return Outcome(
        STALLED,
        "HealthCheckTimeout",
        f"not healthy after {waited:.0f}s (health timeout {timeout:g}s): {outcome.message}",
    )


QUIET_WITHOUT_TIMEOUT = 3600.0
"""Seconds a progressing KubePkg without a health timeout waits for events alone (the runtime
caps it at --resync)."""


def quiet_for(
    live: Mapping[ObjectRef, Mapping[str, Any]],
    resources: Mapping[ObjectRef, Health],
    previous: Mapping[str, Any],
    now: datetime,
    timeout: float,
) -> float:
    """How long a progressing KubePkg may wait for its objects' events alone (its outcome's
    ``requeue_after``; the runtime honours it only while it watches every kind the KubePkg
    applied). 0, the runtime's 30 s safety net, while a workload waits on its Pods: a Pod's
    change is no event here. Otherwise every change that can make it Ready is an event of an
    applied object (a Deployment's controller seeing its spec, a PVC bound, a CRD established):
    it waits until its health timeout would stall it (``timeout``, 0: none), so a thousand
    Deployments waiting for kube-controller-manager cost no pass each every 30 s."""
    if any(needs_pods(live[r], h) for r, h in resources.items() if r in live):
        return 0.0
    if timeout <= 0:
        return QUIET_WITHOUT_TIMEOUT
    return max(1.0, timeout - (progressing_for(previous, now) or 0.0) + 1.0)


def ready_now(obj: Mapping[str, Any] | None) -> bool:
    """True when a KubePkg's Ready condition is True for its current generation (what a KubePkg
    that depends on it waits for)."""
    if obj is None:
        return False
    generation = (obj.get("metadata") or {}).get("generation")
    ready = _cond(obj, "Ready")
    return bool(
        ready
        and ready.get("status") == "True"
        and (generation is None or ready.get("observedGeneration") == generation)
    )


DRIFTED = "DriftDetected"


def drift_message(drift: Sequence[str]) -> str:
    """One line naming what another writer changed and that it stays (``drift: detect``)."""
    shown = "; ".join(drift[:10]) + (f"; and {len(drift) - 10} more" if len(drift) > 10 else "")
    return f"changed by another writer, not reverted (drift: detect): {shown}"


def previous_condition(status: Mapping[str, Any], type_: str) -> Mapping[str, Any]:
    """The condition ``type_`` of a status (as the API returned it); {} when none."""
    return find_condition(status.get("conditions"), type_)


def conditions(
    outcome: Outcome,
    generation: int,
    previous: list[dict[str, Any]],
    now: datetime | None = None,
    findings: Sequence[Finding] | None = None,
    drift: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Ready / Reconciling / Stalled for ``outcome``, Consistent for ``findings`` (None: the
    pass did not check), and Drifted while ``drift`` names changes another writer made that the
    KubePkg only reports (``drift: detect``); transition times kept where nothing changed
    (``conventions.condition``)."""
    stamp = timestamp(now or SYSTEM.now())

    def cond(type_: str, status: bool, reason: str, message: str) -> dict[str, Any]:
        return condition(
            type_, status, reason, message, now=stamp, generation=generation, previous=previous
        )

    out = [cond("Ready", outcome.kind == READY, outcome.reason, outcome.message)]
    if outcome.kind in (PROGRESSING, ERROR):
        out.append(cond("Reconciling", True, outcome.reason, outcome.message))
    if outcome.kind == STALLED:
        out.append(cond("Stalled", True, outcome.reason, outcome.message))
    if findings is not None:
        if findings:
            reason = findings[0].reason if len(findings) == 1 else "Inconsistent"
            out.append(cond("Consistent", False, reason, "; ".join(f.message for f in findings)))
        else:
            message = "images pinned by digest; version matches the recorded catalog tag"
            out.append(cond("Consistent", True, "Consistent", message))
    if drift:
        out.append(cond("Drifted", True, DRIFTED, drift_message(drift)))
    return out


@dataclass
class KubePkgStatus:
    """Everything the status subresource reports after a pass."""

    outcome: Outcome
    generation: int
    inventory: list[ObjectRef] = field(default_factory=list)
    resources: dict[ObjectRef, Health] = field(default_factory=dict)
    images: dict[str, str] = field(default_factory=dict)
    version: str = ""
    source: dict[str, str] = field(default_factory=dict)
    upgrade: dict[str, str] = field(default_factory=dict)
    handled: str = ""
    """The requestedAt annotation this pass answered ("" when none was set)."""
    revision: str = ""
    """``lastAppliedRevision`` (``record.applied_revision``); "" keeps the previous one."""
    history: Sequence[Revision] | None = None
    """None: the pass applied nothing, the previous history stays."""
    findings: Sequence[Finding] | None = None
    drift: Sequence[str] = ()
    """Objects and fields another writer changed that this KubePkg only reports."""
    now: datetime | None = None
    """When the pass wrote it (the reconciler's clock); None: the system clock."""

    def to_status(self, previous: Mapping[str, Any]) -> dict[str, Any]:
        status: dict[str, Any] = {
            "observedGeneration": self.generation,
            "conditions": conditions(
                self.outcome,
                self.generation,
                list(previous.get("conditions") or []),
                now=self.now,
                findings=self.findings,
                drift=self.drift,
            ),
            "inventory": inventory_entries(self.inventory),
            "resources": [
                {
                    **r.to_dict(),
                    "state": h.state,
                    **({"message": h.message} if h.message else {}),
                    **({"reason": h.reason} if h.reason else {}),
                }
                for r, h in sorted(self.resources.items())
                if reported(h)
            ],
        }
        if self.images:
            status["images"] = dict(sorted(self.images.items()))
        version = self.version or previous.get("lastAppliedVersion")
        if version:
            status["lastAppliedVersion"] = version
        if self.source:
            status["source"] = self.source
        revision = self.revision or previous.get("lastAppliedRevision")
        if revision:
            status["lastAppliedRevision"] = revision
        if self.history is not None:
            status["history"] = [r.to_dict() for r in self.history]
        elif previous.get("history"):
            status["history"] = previous["history"]
        upgrade = self.upgrade or previous.get("upgrade")
        if upgrade:
            status["upgrade"] = upgrade
        handled = self.handled or previous.get("lastHandledReconcileAt")
        if handled:
            status["lastHandledReconcileAt"] = handled
        return status


def same_status(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Equal apart from condition timestamps: then writing the status would be a no-op write."""

    def strip(s: Mapping[str, Any]) -> dict[str, Any]:
        conds = [
            {k: v for k, v in c.items() if k != "lastTransitionTime"}
            for c in s.get("conditions") or []
        ]
        return {**s, "conditions": conds}

    return strip(a) == strip(b)


def reported(h: Health) -> bool:
    """Whether ``status.resources`` lists an object: when it is not Current, or when a health
    rule says why it is (a rollout, a Job, a PVC, a Ready condition). A ConfigMap is Current by
    existing; the inventory already names it, and 1,000 such lines would only make every status
    write and every read of the KubePkg slower."""
    return h.state != CURRENT or bool(h.message)


def inventory_entries(refs: Iterable[ObjectRef]) -> list[dict[str, Any]]:
    """The inventory as status holds it: one entry per (apiVersion, kind, namespace) with the
    sorted names, about a sixth of the size of one entry per object."""
    groups: dict[tuple[str, str, str], list[str]] = {}
    for r in sorted(set(refs)):
        groups.setdefault((r.api_version, r.kind, r.namespace), []).append(r.name)
    return [
        {"apiVersion": a, "kind": k, **({"namespace": ns} if ns else {}), "names": names}
        for (a, k, ns), names in groups.items()
    ]


def inventory_of(status: Mapping[str, Any]) -> list[ObjectRef]:
    """The objects a status records; entries of one object (``name``, written by earlier
    builds) are read too, so an upgrade does not forget what to prune."""
    out: list[ObjectRef] = []
    for d in status.get("inventory") or []:
        if not isinstance(d, Mapping) or not d.get("apiVersion") or not d.get("kind"):
            continue
        names: list[Any] = d["names"] if isinstance(d.get("names"), list) else [d.get("name")]
        ns = d.get("namespace") or ""
        out.extend(ObjectRef(d["apiVersion"], d["kind"], ns, n) for n in names if n)
    return out


def live_health(
    live: Mapping[ObjectRef, KubeObject],
    pods: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> dict[ObjectRef, Health]:
    """Health of every live object; ``pods``: namespace -> the Pods a pass read there (for the
    workloads ``needs_pods`` picked)."""
    pods = pods or {}
    return {ref: health(obj, pods.get(ref.namespace)) for ref, obj in live.items()}
