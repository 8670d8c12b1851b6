"""The controller runtime on a real API server: informers, event-driven health and drift.

``Runtime`` runs in this process (no Repository part) with resync and the progressing fallback
set to an hour, so anything that happens within the test happened because of a watch event.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gitops_kubepkg import git
from gitops_kubepkg.clock import FakeClock
from gitops_kubepkg.controller import runtime as runtime_module
from gitops_kubepkg.controller.runtime import KUBEPKG, REPOSITORY, Runtime
from gitops_kubepkg.controller.sync import Syncer
from gitops_kubepkg.conventions import PROGRESSING, STALLED, Outcome
from gitops_kubepkg.kube import Kube
from gitops_kubepkg.reconcile.kubepkg import KubePkgReconciler
from gitops_kubepkg.reconcile.objects import (
    ANNOTATION_DEPENDS_ON,
    ANNOTATION_DRIFT,
    ANNOTATION_IGNORE_FIELDS,
    LABEL_PACKAGE,
)
from gitops_kubepkg.runtime.informer import Cache, Informer
from gitops_kubepkg.sources import catalog
from gitops_kubepkg.spec import KubeObject
from gitops_kubepkg.spec.crds import GITOPS_API_VERSION
from tests.integration.controllers import edit_config_map_by_hand, wait_until
from tests.integration.test_reconcile import cm, kubepkg
from tests.integration.test_reconcile_health import deployment
from tests.integration.test_sources_sync import add_repository
from tests.integration.test_sources_sync import kubepkg as sync_kubepkg

pytestmark = pytest.mark.integration

API_VERSION, KIND = "octohelm.tech/v1alpha1", "KubePkg"
HOUR = 3600.0
PASSES: list[str] = []
"""Names of the KubePkgs the running runtime passed over, in order."""


class FlakyReconciler(KubePkgReconciler):
    """Raises what a response that fails to parse raises, on the first pass only."""

    def __init__(self, kube: Kube) -> None:
        super().__init__(kube)
        self.passes = 0

    def reconcile_object(self, obj: KubeObject) -> Any:
        self.passes += 1
        if self.passes == 1:
            raise ValueError("Expecting value: line 1 column 1 (char 0)")
        return super().reconcile_object(obj)


@pytest.fixture
def running(
    kube: Kube, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Runtime, list[Outcome]]]:
    monkeypatch.setattr(runtime_module, "PROGRESSING_FALLBACK", HOUR)
    outcomes: list[Outcome] = []
    reconciler = FlakyReconciler(kube)
    PASSES.clear()
    rt = Runtime(
        kube,
        syncer=None,
        reconciler=reconciler,
        namespace=namespace,
        workers=2,
        resync=HOUR,
        watch_files=False,
        observer=lambda key, outcome, seconds: (outcomes.append(outcome), PASSES.append(key[1])),
    )
    rt.queue.base_delay = 0.2
    rt.start()
    try:
        yield rt, outcomes
    finally:
        rt.stop()
        reconciler.applier.close()


def ready(kube: Kube, name: str, namespace: str) -> dict[str, Any] | None:
    pkg = kube.get(API_VERSION, KIND, name, namespace)
    for c in ((pkg or {}).get("status") or {}).get("conditions") or []:
        if c["type"] == "Ready" and c["status"] == "True":
            return dict(c)
    return None


def store(kube: Kube, doc: dict[str, Any], namespace: str) -> None:
    obj = copy.deepcopy(doc)
    obj["metadata"]["namespace"] = namespace
    kube.apply(obj)


def test_a_crashing_pass_backs_off_and_the_kubepkg_still_reconciles(
    kube: Kube, namespace: str, running: tuple[Runtime, list[Outcome]]
) -> None:
    rt, outcomes = running
    store(kube, kubepkg("conf", "1.0.0", cm("conf", namespace, mode="a")), namespace)
    wait_until(lambda: ready(kube, "conf", namespace), 30, "the KubePkg to be Ready")
    assert outcomes[0].kind == "error" and "Expecting value" in outcomes[0].message
    assert rt.workers.problems() == [], "no worker died"
    wait_until(
        lambda: rt.queue.failures((KUBEPKG, namespace, "conf")) == 0,
        10,
        "the successful pass to reset the key's backoff",
    )


def test_a_hand_edit_is_reverted_by_its_watch_event_without_a_resync(
    kube: Kube, namespace: str, running: tuple[Runtime, list[Outcome]]
) -> None:
    rt, _ = running
    store(kube, kubepkg("conf", "1.0.0", cm("conf", namespace, mode="a")), namespace)
    wait_until(lambda: ready(kube, "conf", namespace), 30, "the KubePkg to be Ready")
    edit_config_map_by_hand(kube, namespace, "conf", {"mode": "by-hand"})

    def reverted() -> bool:
        live = kube.get("v1", "ConfigMap", "conf", namespace)
        return live is not None and live["data"]["mode"] == "a"

    wait_until(reverted, 20, "the hand edit to be reverted (resync is an hour)")
    # The ConfigMap kind is watched once, metadata only, selected by our label.
    watched = [i for i in rt.cache.informers() if i.kind == "ConfigMap" and i.api_version == "v1"]
    assert len(watched) == 1
    assert watched[0].metadata_only and watched[0].label_selector == LABEL_PACKAGE
    cached = watched[0].get(namespace, "conf")
    assert cached is not None and "data" not in cached and cached["kind"] == "ConfigMap"


def test_a_deleted_object_is_applied_again_at_once(
    kube: Kube, namespace: str, running: tuple[Runtime, list[Outcome]]
) -> None:
    store(kube, kubepkg("conf", "1.0.0", cm("conf", namespace, mode="a")), namespace)
    wait_until(lambda: ready(kube, "conf", namespace), 30, "the KubePkg to be Ready")
    kube.delete("v1", "ConfigMap", "conf", namespace)
    wait_until(
        lambda: kube.get("v1", "ConfigMap", "conf", namespace),
        20,
        "the deleted ConfigMap to be applied again (resync is an hour)",
    )


def test_a_kubepkg_turns_ready_on_its_deployments_events(
    kube: Kube, namespace: str, running: tuple[Runtime, list[Outcome]]
) -> None:
    """No timed re-check (the progressing fallback is an hour): the Deployment's status updates
    wake the KubePkg."""
    web = deployment("web", namespace, 2)
    store(kube, kubepkg("health", "1.0.0", web), namespace)
    wait_until(lambda: ready(kube, "health", namespace), 120, "the KubePkg to be Ready")
    live = kube.get("apps/v1", "Deployment", "web", namespace)
    assert live is not None and live["status"].get("availableReplicas") == 2


def test_an_informer_caches_lists_resumes_and_sees_deletions(kube: Kube, namespace: str) -> None:
    events: list[tuple[str, str]] = []
    informer = Informer(kube, "v1", "ConfigMap", namespace, watch_timeout=2)
    informer.add_handler(lambda e, o: events.append((e, o["metadata"]["name"])))
    kube.apply(cm("before", namespace, a="1"))
    stop = threading.Event()
    informer.start(stop)
    try:
        assert informer.synced.wait(20)
        assert ("ADDED", "before") in events
        kube.apply(cm("after", namespace, a="1"))
        wait_until(lambda: informer.get(namespace, "after"), 20, "the watch to cache 'after'")
        kube.delete("v1", "ConfigMap", "before", namespace)
        wait_until(lambda: ("DELETED", "before") in events, 20, "the deletion event")
        assert informer.get(namespace, "before") is None
        # Watches end every 2 s here: each new one resumes where the last ended, without a list.
        wait_until(lambda: informer.watches >= 3, 20, "three watches")
        assert informer.lists == 1
        assert informer.get(namespace, "after") is not None
    finally:
        stop.set()


def test_an_informer_index_follows_label_changes_and_deletions(kube: Kube, namespace: str) -> None:
    """What ``CachedLive`` reads in every pass: a package's objects by index, not by a scan."""

    def labelled(name: str, package: str) -> dict[str, Any]:
        obj = cm(name, namespace, a="1")
        obj["metadata"]["labels"] = {LABEL_PACKAGE: package}
        return obj

    def package_of(obj: KubeObject) -> str | None:
        return ((obj.get("metadata") or {}).get("labels") or {}).get(LABEL_PACKAGE)

    def names(package: str) -> list[str]:
        return sorted(o["metadata"]["name"] for o in informer.indexed(package))

    informer = Informer(
        kube, "v1", "ConfigMap", namespace, label_selector=LABEL_PACKAGE, index=package_of
    )
    for name, package in [("a1", "a"), ("a2", "a"), ("b1", "b")]:
        kube.apply(labelled(name, package))
    stop = threading.Event()
    informer.start(stop)
    try:
        assert informer.synced.wait(20)
        assert names("a") == ["a1", "a2"] and names("b") == ["b1"]
        kube.apply(labelled("a2", "b"))  # moved from a to b
        wait_until(lambda: names("b") == ["a2", "b1"], 20, "a2 filed under b")
        assert names("a") == ["a1"]
        kube.delete("v1", "ConfigMap", "a1", namespace)
        wait_until(lambda: names("a") == [], 20, "a1 gone from the index")
        assert names("nothing") == []
    finally:
        stop.set()


def test_a_handler_added_to_a_shared_informer_hears_of_what_it_cached(
    kube: Kube, namespace: str
) -> None:
    """The dashboard and the leader's runtime share the process's informers; whichever comes
    second is told of every cached object, then of changes, and hears nothing once removed."""
    kube.apply(cm("early", namespace, a="1"))
    stop = threading.Event()
    cache = Cache(kube, stop, namespace=namespace)
    first: list[tuple[str, str]] = []
    informer, new = cache.informer("v1", "ConfigMap", handler=lambda e, o: first.append(
        (e, o["metadata"]["name"])))  # fmt: skip
    try:
        assert new and informer.synced.wait(20)
        second: list[tuple[str, str]] = []

        def late(event: str, obj: KubeObject) -> None:
            second.append((event, obj["metadata"]["name"]))

        again, new = cache.informer("v1", "ConfigMap", handler=late)
        assert again is informer and not new, "one watch per kind"
        assert ("ADDED", "early") in second, second
        kube.apply(cm("later", namespace, a="1"))
        wait_until(lambda: ("ADDED", "later") in second, 20, "the late handler to hear 'later'")
        assert ("ADDED", "later") in first
        informer.remove_handler(late)
        kube.apply(cm("last", namespace, a="1"))
        wait_until(lambda: ("ADDED", "last") in first, 20, "the first handler to hear 'last'")
        assert ("ADDED", "last") not in second
    finally:
        stop.set()


def condition_reason(kube: Kube, name: str, namespace: str) -> str:
    pkg = kube.get(API_VERSION, KIND, name, namespace)
    for c in ((pkg or {}).get("status") or {}).get("conditions") or []:
        if c["type"] == "Ready":
            return str(c["reason"])
    return ""


def test_depends_on_waits_for_the_dependency_to_be_ready_and_is_woken_by_it(
    kube: Kube, namespace: str, running: tuple[Runtime, list[Outcome]]
) -> None:
    app = kubepkg("app", "1.0.0", cm("app-config", namespace, db="db:5432"))
    app["metadata"]["annotations"] = {ANNOTATION_DEPENDS_ON: "db"}
    store(kube, app, namespace)
    wait_until(
        lambda: condition_reason(kube, "app", namespace) == "DependencyNotReady",
        30,
        "app to wait for db",
    )
    assert kube.get("v1", "ConfigMap", "app-config", namespace) is None, "nothing applied yet"
    pkg = kube.get(API_VERSION, KIND, "app", namespace) or {}
    ready_cond = next(c for c in pkg["status"]["conditions"] if c["type"] == "Ready")
    assert ready_cond["message"] == (
        f"waiting for KubePkg {namespace}/db to be Ready before applying"
    )

    store(kube, kubepkg("db", "1.0.0", deployment("db", namespace, 1)), namespace)
    wait_until(lambda: ready(kube, "app", namespace), 120, "app Ready after db")
    db_ready = ready(kube, "db", namespace)
    assert db_ready is not None
    config = kube.get("v1", "ConfigMap", "app-config", namespace)
    assert config is not None
    assert config["metadata"]["creationTimestamp"] >= db_ready["lastTransitionTime"], (
        "app was applied only after db turned Ready"
    )


def test_repositories_poll_on_the_queue_and_a_deleted_ones_mirror_goes(
    kube: Kube, namespace: str, tmp_path: Path
) -> None:
    """Repositories on the same queue: listed, synced, a trigger (webhook) syncs at once, and
    deleting the last Repository of a URL removes its mirror."""
    shared = git.init_bare(tmp_path / "shared.git")
    shared.tag("a/v1.0.0", shared.commit_files("main", {"a/kubepkg.json": sync_kubepkg("a", "1.0.0")}, "a"))  # fmt: skip
    alone = git.init_bare(tmp_path / "alone.git")
    alone.tag("b/v1.0.0", alone.commit_files("main", {"b/kubepkg.json": sync_kubepkg("b", "1.0.0")}, "b"))  # fmt: skip
    for name, path in [("one", "shared.git"), ("two", "shared.git"), ("three", "alone.git")]:
        add_repository(kube, namespace, name, f"file://{tmp_path / path}", "catalog", interval="1h")
    syncer = Syncer(kube, tmp_path / "state")
    rt = Runtime(
        kube, syncer=syncer, reconciler=None, namespace=namespace, resync=HOUR, watch_files=False
    )
    rt.start()
    try:
        revision = catalog.revision_name("three", "b", "1.0.0")
        wait_until(
            lambda: kube.get(GITOPS_API_VERSION, catalog.KIND, revision, namespace),
            30,
            "the PackageRevision of three",
        )
        mirrors = tmp_path / "state" / "mirrors"
        wait_until(lambda: len(list(mirrors.iterdir())) == 2, 30, "two mirrors")
        alone.tag("b/v1.1.0", alone.commit_files("main", {"b/kubepkg.json": sync_kubepkg("b", "1.1.0")}, "2"))  # fmt: skip
        assert rt.trigger(namespace, "three")
        newer = catalog.revision_name("three", "b", "1.1.0")
        wait_until(
            lambda: kube.get(GITOPS_API_VERSION, catalog.KIND, newer, namespace),
            30,
            "the triggered sync (the poll is an hour away)",
        )
        kube.delete(GITOPS_API_VERSION, "Repository", "three", namespace)
        kube.delete(GITOPS_API_VERSION, "Repository", "one", namespace)
        wait_until(lambda: len(list(mirrors.iterdir())) == 1, 30, "alone.git's mirror removed")
        assert rt.queue.due_in((REPOSITORY, namespace, "two")) is not None, "two still polls"
    finally:
        rt.stop()


def test_a_deployment_that_never_becomes_available_stalls_after_the_health_timeout(
    kube: Kube, namespace: str
) -> None:
    stuck = deployment("stuck", namespace, 1)
    stuck["spec"]["template"]["spec"]["nodeSelector"] = {"no-such-label": "anywhere"}
    store(kube, kubepkg("stuck", "1.0.0", stuck), namespace)
    clock = FakeClock(start=datetime.now(UTC))
    reconciler = KubePkgReconciler(kube, clock=clock.now, health_timeout=60)
    try:
        outcome, _ = reconciler.reconcile(namespace, "stuck")
        assert outcome.kind == PROGRESSING, outcome
        clock.advance(30)
        outcome, _ = reconciler.reconcile(namespace, "stuck")
        assert outcome.kind == PROGRESSING, "within the timeout"
        clock.advance(31)
        outcome, _ = reconciler.reconcile(namespace, "stuck")
    finally:
        reconciler.applier.close()
    assert (outcome.kind, outcome.reason) == (STALLED, "HealthCheckTimeout"), outcome
    pkg = kube.get(API_VERSION, KIND, "stuck", namespace) or {}
    stalled = next(c for c in pkg["status"]["conditions"] if c["type"] == "Stalled")
    assert stalled["reason"] == "HealthCheckTimeout"
    assert f"waiting for Deployment {namespace}/stuck" in stalled["message"]


def test_a_field_another_manager_owns_is_left_to_it_when_ignored(
    kube: Kube, namespace: str, running: tuple[Runtime, list[Outcome]]
) -> None:
    """An HPA-like manager scales two Deployments; the one whose KubePkg ignores spec.replicas
    keeps its scale, the other is reverted (so the check can fail)."""
    fixed = kubepkg("fixed", "1.0.0", deployment("fixed", namespace, 1))
    scaled = kubepkg("scaled", "1.0.0", deployment("scaled", namespace, 1))
    scaled["metadata"]["annotations"] = {ANNOTATION_IGNORE_FIELDS: "Deployment/*: spec.replicas"}
    store(kube, fixed, namespace)
    store(kube, scaled, namespace)
    for name in ("fixed", "scaled"):
        wait_until(lambda name=name: ready(kube, name, namespace), 120, f"{name} Ready")

    def replicas(name: str) -> int:
        live = kube.get("apps/v1", "Deployment", name, namespace) or {}
        return int((live.get("spec") or {}).get("replicas") or 0)

    def scale(name: str) -> None:
        kube.request(
            "PATCH",
            f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale",
            query={"fieldManager": "hpa"},
            body={"spec": {"replicas": 3}},
            content_type="application/merge-patch+json",
        )

    scale("fixed")
    wait_until(lambda: replicas("fixed") == 1, 20, "the un-ignored scale to be reverted")
    before = len(PASSES)
    scale("scaled")
    wait_until(lambda: "scaled" in PASSES[before:], 20, "a pass of scaled after its scale")
    assert replicas("scaled") == 3, "left to the other manager"
    wait_until(lambda: ready(kube, "scaled", namespace), 120, "scaled Ready at 3 replicas")


def drifted(kube: Kube, name: str, namespace: str) -> dict[str, Any] | None:
    pkg = kube.get(API_VERSION, KIND, name, namespace)
    for c in ((pkg or {}).get("status") or {}).get("conditions") or []:
        if c["type"] == "Drifted" and c["status"] == "True":
            return dict(c)
    return None


def test_drift_detect_reports_a_hand_edit_and_leaves_it_until_the_spec_or_annotation_changes(
    kube: Kube, namespace: str, running: tuple[Runtime, list[Outcome]]
) -> None:
    """Two KubePkgs, one ``drift: detect``: the same hand edit (another field manager) is
    reverted in the default one and only reported in the other, until its spec changes or the
    annotation goes."""
    watched = kubepkg("watched", "1.0.0", cm("watched", namespace, mode="a"))
    watched["metadata"]["annotations"] = {ANNOTATION_DRIFT: "detect"}
    store(kube, watched, namespace)
    store(kube, kubepkg("fixed", "1.0.0", cm("fixed", namespace, mode="a")), namespace)
    for name in ("watched", "fixed"):
        wait_until(lambda name=name: ready(kube, name, namespace), 30, f"{name} Ready")

    def mode(name: str) -> str:
        return str(((kube.get("v1", "ConfigMap", name, namespace) or {}).get("data") or {})["mode"])

    edit_config_map_by_hand(kube, namespace, "watched", {"mode": "by-hand"})
    edit_config_map_by_hand(kube, namespace, "fixed", {"mode": "by-hand"})
    wait_until(lambda: mode("fixed") == "a", 20, "the default KubePkg to revert the edit")
    cond = wait_until(lambda: drifted(kube, "watched", namespace), 20, "Drifted on watched")
    assert cond["reason"] == "DriftDetected"
    assert f"ConfigMap {namespace}/watched: data.mode" in cond["message"], cond["message"]
    assert mode("watched") == "by-hand", "detect never reverts"
    assert drifted(kube, "fixed", namespace) is None
    assert ready(kube, "watched", namespace) is not None, "drift alone does not make it unready"
    events = kube.list("v1", "Event", namespace)
    warned = [
        e
        for e in events
        if e.get("reason") == "Drifted" and e["involvedObject"]["name"] == "watched"
    ]
    assert len(warned) == 1 and "data.mode" in warned[0]["message"]

    # A new spec is applied as usual (the edit goes with it) and the report is cleared.
    watched = kubepkg("watched", "1.0.1", cm("watched", namespace, mode="b"))
    watched["metadata"]["annotations"] = {ANNOTATION_DRIFT: "detect"}
    store(kube, watched, namespace)
    wait_until(lambda: mode("watched") == "b", 20, "the new spec to be applied")
    wait_until(lambda: drifted(kube, "watched", namespace) is None, 20, "Drifted cleared")

    # Edited again and reported; removing the annotation reverts it.
    edit_config_map_by_hand(kube, namespace, "watched", {"mode": "again"})
    wait_until(lambda: drifted(kube, "watched", namespace), 20, "Drifted after the second edit")
    assert mode("watched") == "again"
    kube.request(
        "PATCH",
        f"/apis/octohelm.tech/v1alpha1/namespaces/{namespace}/kubepkgs/watched",
        body={"metadata": {"annotations": {ANNOTATION_DRIFT: None}}},
        content_type="application/merge-patch+json",
    )
    wait_until(lambda: mode("watched") == "b", 20, "the edit reverted once the annotation went")
    wait_until(lambda: drifted(kube, "watched", namespace) is None, 20, "Drifted cleared again")


def stalled(kube: Kube, name: str, namespace: str) -> dict[str, Any] | None:
    pkg = kube.get(API_VERSION, KIND, name, namespace)
    for c in ((pkg or {}).get("status") or {}).get("conditions") or []:
        if c["type"] == "Stalled" and c["status"] == "True":
            return dict(c)
    return None


def test_depends_on_cycles_stall_every_member_naming_the_cycle_until_one_is_broken(
    kube: Kube, namespace: str, running: tuple[Runtime, list[Outcome]]
) -> None:
    """a -> b -> a, s -> s and x -> y -> z -> x: each member is Stalled (DependencyCycle) naming
    its cycle, nothing is applied; removing b's annotation applies b, and a once b is Ready.
    a first waits for a b that does not exist yet: the cycle closing later must reach it too."""
    edges = {"a": "b", "b": "a", "s": "s", "x": "y", "y": "z", "z": "x"}

    def store_with_dependency(name: str) -> None:
        doc = kubepkg(name, "1.0.0", cm(f"{name}-conf", namespace, mode="a"))
        doc["metadata"]["annotations"] = {ANNOTATION_DEPENDS_ON: edges[name]}
        store(kube, doc, namespace)

    store_with_dependency("a")
    wait_until(
        lambda: condition_reason(kube, "a", namespace) == "DependencyNotReady", 30, "a to wait"
    )
    for name in edges:
        if name != "a":
            store_with_dependency(name)
    want = {
        "a": ["a", "b", "a"],
        "b": ["b", "a", "b"],
        "s": ["s", "s"],
        "x": ["x", "y", "z", "x"],
        "y": ["y", "z", "x", "y"],
        "z": ["z", "x", "y", "z"],
    }
    for name, cycle in want.items():
        cond = wait_until(lambda name=name: stalled(kube, name, namespace), 30, f"{name} Stalled")
        assert cond["reason"] == "DependencyCycle"
        named = " -> ".join(f"KubePkg {namespace}/{n}" for n in cycle)
        assert f"depends-on cycle {named}:" in cond["message"], cond["message"]
        assert kube.get("v1", "ConfigMap", f"{name}-conf", namespace) is None, "nothing applied"
    events = [
        e for e in kube.list("v1", "Event", namespace) if e.get("reason") == "DependencyCycle"
    ]
    assert {e["involvedObject"]["name"] for e in events} == set(want)

    kube.request(
        "PATCH",
        f"/apis/octohelm.tech/v1alpha1/namespaces/{namespace}/kubepkgs/b",
        body={"metadata": {"annotations": {ANNOTATION_DEPENDS_ON: None}}},
        content_type="application/merge-patch+json",
    )
    wait_until(lambda: ready(kube, "b", namespace), 30, "b Ready once it depends on nothing")
    wait_until(lambda: ready(kube, "a", namespace), 30, "a Ready after b (woken, not resynced)")
    assert kube.get("v1", "ConfigMap", "a-conf", namespace) is not None
    assert stalled(kube, "x", namespace) is not None, "the other cycle still stalls"
