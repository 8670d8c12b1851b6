"""Pods behind a workload that is not ready: which of them says why, in the kubelet's words. Pure.

Part of the last step of a pass (``status.health``). A Deployment, StatefulSet, DaemonSet,
ReplicaSet or Job only counts its Pods ("0/1 replicas available"); the reason a rollout does not
progress is in its Pods' container states: an image that cannot be pulled, a container that
crash-loops, a container the kubelet cannot create (a missing ConfigMap), a Pod nobody can
schedule. ``pod_problem`` reads one Pod status as the kubelet writes it (shapes taken from a real
kubelet: tests/unit/data/realnode_pods.json) and ``workload_problem`` names the first Pod of a
workload that has one, so a KubePkg's Ready condition can say
``Deployment/web: pod web-5d..: container app: CrashLoopBackOff (...)``.

Which Pods belong to a workload is its ``spec.selector`` (render leaves pod templates as the
package wrote them, so Pods carry no label of ours); ``selector_query`` turns it into the
label selector a list sends, ``selects`` applies it to Pods listed some other way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"})

IMAGE_PULL_FAILED = "ImagePullFailed"
CRASH_LOOP = "CrashLoopBackOff"
CONTAINER_FAILED = "ContainerCreateFailed"
CONTAINER_EXITED = "ContainerFailed"
"""A container that exited non-zero and is not restarted (``restartPolicy: Never``, a Job's)."""
UNSCHEDULABLE = "Unschedulable"

_PULL = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "RegistryUnavailable",
    }
)
_CREATE = frozenset(
    {
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
        "PreCreateHookError",
        "PostStartHookError",
        "PreStartHookError",
        "ContainerCannotRun",
    }
)
MESSAGE_LIMIT = 400
"""Characters of a kubelet message kept (an image pull error runs to several hundred)."""


@dataclass(frozen=True)
class PodProblem:
    """Why one Pod keeps its workload from being ready: ``reason`` is one of the constants above
    (a KubePkg condition reason), ``message`` names the Pod and container."""

    reason: str
    message: str


def _short(text: Any) -> str:
    s = " ".join(str(text or "").split())
    return s if len(s) <= MESSAGE_LIMIT else s[: MESSAGE_LIMIT - 3] + "..."


def _exit(terminated: Mapping[str, Any]) -> str:
    reason = terminated.get("reason") or "terminated"
    code = terminated.get("exitCode")
    signal = terminated.get("signal")
    detail = f"exit code {code}" if code is not None else ""
    if signal:
        detail = f"{detail}, signal {signal}" if detail else f"signal {signal}"
    return f"{reason} ({detail})" if detail else str(reason)


def container_problem(status: Mapping[str, Any], restart_never: bool) -> PodProblem | None:
    """The problem of one entry of ``containerStatuses`` / ``initContainerStatuses`` (message
    without the Pod), or None when it is fine or only on its way (ContainerCreating)."""
    name = status.get("name", "?")
    state = status.get("state") or {}
    restarts = int(status.get("restartCount") or 0)
    last = (status.get("lastState") or {}).get("terminated") or {}
    waiting = state.get("waiting")
    if isinstance(waiting, Mapping):
        reason = str(waiting.get("reason") or "")
        message = _short(waiting.get("message"))
        detail = f" ({message})" if message else ""
        if reason in _PULL:
            image = status.get("image") or ""
            named = f" {image}" if image and image not in message else ""
            return PodProblem(IMAGE_PULL_FAILED, f"container {name}: {reason}{named}{detail}")
        if reason == "CrashLoopBackOff":
            after = f"; last {_exit(last)}" if last else ""
            return PodProblem(CRASH_LOOP, f"container {name}: {reason}{detail}{after}")
        if reason in _CREATE:
            return PodProblem(CONTAINER_FAILED, f"container {name}: {reason}{detail}")
        return None
    terminated = state.get("terminated")
    if isinstance(terminated, Mapping) and int(terminated.get("exitCode") or 0) != 0:
        # Between two restarts the kubelet shows the last exit with a restart count (what a real
        # kubelet reports during a crash loop's back-off); with restartPolicy Never it stays.
        if restarts > 0:
            return PodProblem(
                CRASH_LOOP,
                f"container {name}: {_exit(terminated)}, restarted {restarts} times",
            )
        if restart_never:
            return PodProblem(CONTAINER_EXITED, f"container {name}: {_exit(terminated)}")
    return None


def pod_problem(pod: Mapping[str, Any]) -> PodProblem | None:
    """The first problem of one Pod (init containers first: they run first), with its name."""
    meta = pod.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return None  # an old Pod on its way out
    status = pod.get("status") or {}
    name = meta.get("name", "?")
    never = (pod.get("spec") or {}).get("restartPolicy") == "Never"
    for key in ("initContainerStatuses", "containerStatuses"):
        for c in status.get(key) or []:
            if isinstance(c, Mapping) and (problem := container_problem(c, never)):
                return PodProblem(problem.reason, f"pod {name}: {problem.message}")
    for c in status.get("conditions") or []:
        if (
            c.get("type") == "PodScheduled"
            and c.get("status") == "False"
            and c.get("reason") == "Unschedulable"
        ):
            detail = _short(c.get("message"))
            return PodProblem(UNSCHEDULABLE, f"pod {name}: unschedulable ({detail})")
    return None


def _requirement_matches(req: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key, op = req.get("key", ""), req.get("operator", "")
    values = req.get("values") or []
    if op == "In":
        return key in labels and labels[key] in values
    if op == "NotIn":
        return key not in labels or labels[key] not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    return False


def selects(workload: Mapping[str, Any], pod: Mapping[str, Any]) -> bool:
    """Whether ``workload``'s ``spec.selector`` selects ``pod`` (an empty or absent selector
    selects nothing: the API server refuses one on these kinds, and we never guess)."""
    selector = (workload.get("spec") or {}).get("selector") or {}
    match = selector.get("matchLabels") or {}
    exprs = selector.get("matchExpressions") or []
    if not match and not exprs:
        return False
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in match.items()) and all(
        _requirement_matches(r, labels) for r in exprs
    )


def selector_query(workload: Mapping[str, Any]) -> str:
    """``spec.selector`` as a list's ``labelSelector`` ("" when it has none)."""
    selector = (workload.get("spec") or {}).get("selector") or {}
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for r in selector.get("matchExpressions") or []:
        key, op, values = r.get("key", ""), r.get("operator", ""), r.get("values") or []
        if op in ("In", "NotIn"):
            parts.append(f"{key} {op.lower()} ({','.join(values)})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


def workload_problem(
    workload: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]
) -> PodProblem | None:
    """The first Pod (by name) of ``workload`` with a problem; the count of the others that have
    one too is added, so one message covers a Deployment of 50 crash-looping replicas."""
    namespace = (workload.get("metadata") or {}).get("namespace", "")
    mine = sorted(
        (p for p in pods if (p.get("metadata") or {}).get("namespace", "") == namespace),
        key=lambda p: str((p.get("metadata") or {}).get("name", "")),
    )
    problems = [pr for p in mine if selects(workload, p) and (pr := pod_problem(p))]
    if not problems:
        return None
    first = problems[0]
    more = f" (and {len(problems) - 1} more pods)" if len(problems) > 1 else ""
    return PodProblem(first.reason, first.message + more)
