"""A workload that is not ready is explained by its Pods: Pod statuses as a real kubelet wrote
them (tests/unit/data/realnode_pods.json, captured on the real node of scripts/local-cluster)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from gitops_kubepkg.conventions import PROGRESSING, STALLED
from gitops_kubepkg.reconcile.objects import ObjectRef
from gitops_kubepkg.reconcile.pods import (
    CONTAINER_EXITED,
    CONTAINER_FAILED,
    CRASH_LOOP,
    IMAGE_PULL_FAILED,
    UNSCHEDULABLE,
    pod_problem,
    selector_query,
    selects,
    workload_problem,
)
from gitops_kubepkg.reconcile.status import (
    CURRENT,
    IN_PROGRESS,
    Health,
    KubePkgStatus,
    health,
    live_health,
    needs_pods,
    outcome_for,
)

DATA = json.loads((Path(__file__).parent / "data" / "realnode_pods.json").read_text())
PODS: list[dict[str, Any]] = DATA["pods"]


def workload(name: str) -> dict[str, Any]:
    return copy.deepcopy(next(w for w in DATA["workloads"] if w["metadata"]["name"] == name))


def pod(prefix: str) -> dict[str, Any]:
    return copy.deepcopy(next(p for p in PODS if p["metadata"]["name"].startswith(prefix)))


def test_a_crash_looping_container_names_pod_container_exit_and_restarts() -> None:
    h = health(workload("crash"), PODS)
    assert h.state == IN_PROGRESS
    assert h.reason == CRASH_LOOP
    assert h.message.startswith(
        "0/1 replicas available; pod crash-79595dd475-j5mqn: container app:"
    )
    assert "Error (exit code 3), restarted" in h.message


def test_crash_loop_back_off_while_waiting() -> None:
    p = pod("crash")
    status = p["status"]["containerStatuses"][0]
    status["lastState"] = {"terminated": status["state"]["terminated"]}
    status["state"] = {
        "waiting": {
            "reason": "CrashLoopBackOff",
            "message": "back-off 40s restarting failed container=app pod=crash_default(5b08)",
        }
    }
    problem = pod_problem(p)
    assert problem is not None and problem.reason == CRASH_LOOP
    assert problem.message == (
        "pod crash-79595dd475-j5mqn: container app: CrashLoopBackOff (back-off 40s restarting "
        "failed container=app pod=crash_default(5b08)); last Error (exit code 3)"
    )


@pytest.mark.parametrize("name", ["pull", "pull2"])
def test_an_image_pull_failure_names_the_image(name: str) -> None:
    problem = pod_problem(pod(name))
    assert problem is not None and problem.reason == IMAGE_PULL_FAILED
    kubelet_reason = "ImagePullBackOff" if name == "pull" else "ErrImagePull"
    container = "app" if name == "pull" else "pull2"
    assert f"container {container}: {kubelet_reason} (" in problem.message
    assert "127.0.0.1:5999/" in problem.message
    assert len(problem.message) < 500  # the kubelet's message is cut, not the reason


def test_a_missing_config_map_is_a_container_create_failure() -> None:
    h = health(workload("config"), PODS)
    assert h.reason == CONTAINER_FAILED
    assert h.message.endswith(
        "pod config-57669c6657-tdxbv: container app: CreateContainerConfigError "
        '(configmap "nope" not found)'
    )


def test_a_failing_readiness_probe_is_no_pod_problem() -> None:
    h = health(workload("probe"), PODS)
    assert (h.state, h.reason, h.message) == (IN_PROGRESS, "", "0/1 replicas available")


def test_job_pods_that_exit_non_zero_with_restart_policy_never() -> None:
    h = health(workload("job"), PODS)
    assert h.reason == CONTAINER_EXITED
    assert "container app: Error (exit code 2)" in h.message
    assert h.message.endswith("(and 3 more pods)")


def test_a_ready_workload_reads_no_pods() -> None:
    w = workload("crash")
    w["status"].update(availableReplicas=1, readyReplicas=1, updatedReplicas=1)
    assert health(w).state == CURRENT
    assert not needs_pods(w, health(w))
    assert health(w, PODS) == health(w)  # even a crash-looping Pod it selects changes nothing
    assert needs_pods(workload("crash"), health(workload("crash")))
    # The pass that just created or changed it: its controller has not seen it, no Pods to ask.
    fresh = workload("crash")
    fresh["metadata"]["generation"] = 2
    assert not needs_pods(fresh, health(fresh))
    del fresh["status"]
    assert not needs_pods(fresh, health(fresh))
    assert needs_pods(workload("job"), health(workload("job")))  # a Job has no observedGeneration


def test_pods_of_other_workloads_or_namespaces_do_not_count() -> None:
    w = workload("probe")
    crash = pod("crash")
    crash["metadata"]["labels"]["app"] = "probe"
    assert health(w, [crash]).reason == CRASH_LOOP
    crash["metadata"]["namespace"] = "elsewhere"
    assert health(w, [crash]).reason == ""
    assert health(w, [pod("crash")]).reason == ""


def test_a_pod_being_deleted_is_no_problem() -> None:
    p = pod("crash")
    p["metadata"]["deletionTimestamp"] = "2026-11-30T15:50:00Z"
    assert pod_problem(p) is None


def test_an_unschedulable_pod() -> None:
    p = pod("probe")
    p["status"] = {
        "phase": "Pending",
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/2 nodes are available: 2 Insufficient memory.",
            }
        ],
    }
    problem = pod_problem(p)
    assert problem is not None and problem.reason == UNSCHEDULABLE
    assert "2 Insufficient memory" in problem.message


def test_selectors() -> None:
    w = {
        "spec": {
            "selector": {
                "matchLabels": {"app": "web"},
                "matchExpressions": [
                    {"key": "tier", "operator": "In", "values": ["a", "b"]},
                    {"key": "canary", "operator": "DoesNotExist"},
                    {"key": "zone", "operator": "Exists"},
                    {"key": "track", "operator": "NotIn", "values": ["old"]},
                ],
            }
        }
    }
    assert selector_query(w) == "app=web,tier in (a,b),!canary,zone,track notin (old)"

    def labelled(**labels: str) -> dict[str, Any]:
        return {"metadata": {"labels": labels}}

    assert selects(w, labelled(app="web", tier="a", zone="z"))
    assert not selects(w, labelled(app="web", tier="c", zone="z"))
    assert not selects(w, labelled(app="web", tier="a", zone="z", canary="1"))
    assert not selects(w, labelled(app="web", tier="a"))
    assert not selects(w, labelled(app="web", tier="a", zone="z", track="old"))
    assert not selects({"spec": {}}, labelled(app="web"))
    assert selector_query({"spec": {}}) == ""
    assert workload_problem({"spec": {}, "metadata": {"namespace": "default"}}, PODS) is None


def test_outcome_reason_and_message_name_the_pod() -> None:
    ns = "default"
    live = {ObjectRef.of(w): w for w in DATA["workloads"]}
    resources = live_health(live, {ns: PODS})
    outcome = outcome_for(resources, "1.0.0")
    assert outcome.kind == PROGRESSING
    # The first object with a Pod problem, not the first by name (config < crash < job < probe).
    assert outcome.reason == CONTAINER_FAILED
    assert outcome.message.startswith(
        "waiting for Deployment default/config: 0/1 replicas available; pod config-"
    )
    only_probe = {r: h for r, h in resources.items() if r.name == "probe"}
    assert outcome_for(only_probe, "1.0.0").reason == "Progressing"
    failed = {**resources, ObjectRef("v1", "Job", ns, "zz"): Health("Failed", "job failed")}
    assert outcome_for(failed, "1.0.0").kind == STALLED
    assert outcome_for(failed, "1.0.0").reason == "HealthCheckFailed"


def test_status_resources_carry_the_reason() -> None:
    live = {ObjectRef.of(w): w for w in DATA["workloads"]}
    resources = live_health(live, {"default": PODS})
    status = KubePkgStatus(outcome_for(resources, "1.0.0"), 1, resources=resources)
    entries = {e["name"]: e for e in status.to_status({})["resources"]}
    assert entries["pull"]["reason"] == IMAGE_PULL_FAILED
    assert "ImagePullBackOff" in entries["pull"]["message"]
    assert "reason" not in entries["probe"]


def test_a_progressing_kubepkg_waits_for_events_alone_until_a_workload_waits_on_its_pods() -> None:
    """The 30 s safety net (``quiet_for`` 0) only while a Pod's change could go unseen; a
    Deployment its controller has not seen yet needs no timed pass before its health timeout."""
    from datetime import UTC, datetime

    from gitops_kubepkg.reconcile.status import QUIET_WITHOUT_TIMEOUT, quiet_for

    observed = workload("crash")  # its controller saw the spec; its Pod crash-loops
    unseen = copy.deepcopy(observed)
    unseen["metadata"]["generation"] = 2  # a new spec the controller has not seen yet
    now = datetime(2026, 11, 30, 12, 0, 10, tzinfo=UTC)
    started = {
        "conditions": [
            {"type": "Reconciling", "status": "True", "lastTransitionTime": "2026-11-30T12:00:00Z"}
        ]
    }
    for obj, expected in [(observed, 0.0), (unseen, 300.0 - 10.0 + 1.0)]:
        ref = ObjectRef.of(obj)
        resources = {ref: health(obj, PODS)}
        assert resources[ref].state == IN_PROGRESS
        assert quiet_for({ref: obj}, resources, started, now, 300.0) == expected
    ref = ObjectRef.of(unseen)
    resources = {ref: health(unseen, PODS)}
    assert quiet_for({ref: unseen}, resources, {}, now, 0.0) == QUIET_WITHOUT_TIMEOUT
    assert quiet_for({ref: unseen}, resources, started, now, 5.0) == 1.0  # due: stall it now
