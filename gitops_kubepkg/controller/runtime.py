"""The leader's runtime: Repositories and KubePkgs on one queue, driven by informers.

Hosted by ``process.py`` for one term of leadership (``--once`` uses ``run_once``). Built on
``gitops_kubepkg.runtime``:

- informers (one shared cache): Repositories and KubePkgs (whole objects), and, selected by our
  package label, every kind a KubePkg applied (started as a pass first applies that kind): whole
  objects, except ``INERT_KINDS`` (ConfigMaps, Secrets, ...: no status) by metadata only;
- one ``WorkQueue`` of keys ``(kind, namespace, name)`` and one pool of supervised workers. What
  puts a key on the queue:
  - a Repository: listed or its spec changed, a new ``requestedAt``, a webhook or local commit
    (``trigger``), and its poll: after each pass it is queued again one interval later (with
    jitter; a failure backs off instead). There is no other timer;
  - a KubePkg: listed, its spec, annotations or deletion changed (not our own status writes),
    a KubePkg it depends on (``depends-on`` annotation) turning Ready, another member of a
    depends-on cycle it is on changing (a cycle stalls every member, ``DependencyCycle``), and any
    change to an object it applied: a Deployment becoming Available (Ready without a timed
    re-check), a hand edit (reverted at once, no resync needed; only reported with ``drift:
    detect``) or a deletion. While progressing it is also checked at a slow fallback interval,
    and every ``resync`` seconds;
- a pass reads its Repository or KubePkg from the cache, not the API server, and so does its apply
  for the objects it applied before (``CachedLive``; a kind not watched yet is listed).

Anything a pass raises is that key's failure: it backs off and runs again (``runtime.workers``).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gitops_kubepkg.clock import SYSTEM, Clock
from gitops_kubepkg.controller import repository
from gitops_kubepkg.controller.metrics import Metrics
from gitops_kubepkg.controller.sync import Syncer
from gitops_kubepkg.conventions import ERROR, GONE, PROGRESSING, READY, Outcome
from gitops_kubepkg.errors import InputError, KubeError
from gitops_kubepkg.kube import Kube
from gitops_kubepkg.reconcile.apply import LiveScope
from gitops_kubepkg.reconcile.kubepkg import KubePkgReconciler
from gitops_kubepkg.reconcile.objects import (
    LABEL_PACKAGE,
    ObjectRef,
    dependency_cycle,
    depends_on,
    package_of,
)
from gitops_kubepkg.reconcile.plan import INERT_KINDS
from gitops_kubepkg.reconcile.status import inventory_of, ready_now
from gitops_kubepkg.runtime.informer import ADDED, DELETED, Cache, Informer, key_of
from gitops_kubepkg.runtime.queue import WorkQueue, jitter
from gitops_kubepkg.runtime.workers import Result, Workers
from gitops_kubepkg.sources import deployment
from gitops_kubepkg.sources.watcher import Watcher, local_path
from gitops_kubepkg.spec import API_VERSION, KIND, KubeObject

log = logging.getLogger(__name__)

REPOSITORY = "Repository"
KUBEPKG = "KubePkg"
Key = tuple[str, str, str]
"""(kind, namespace, name): kind is REPOSITORY or KUBEPKG."""
KubePkgObserver = Callable[[tuple[str, str], Outcome, float], None]

PROGRESSING_FALLBACK = 30.0
"""A progressing KubePkg is woken by its objects' events; this is a safety net for what is no
event here (a Pod's change, a kind we may not watch)."""
SETTLE = 0.2
"""Events of applied objects within this many seconds make one pass (a rollout sends many)."""


def _by_metadata(api_version: str, kind: str) -> bool:
    """Applied kinds watched by metadata only: their health does not need their body."""
    return (api_version, kind) in INERT_KINDS


class CachedLive:
    """Apply's ``LiveSource`` in the controller: a package's objects from the informers of the
    kinds KubePkgs applied; None (apply lists) for a kind not watched, not listed yet or refused."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache

    def objects(
        self, scope: LiveScope, package: str, namespace: str
    ) -> tuple[list[KubeObject], bool] | None:
        api_version, kind, ns = scope
        partial = _by_metadata(api_version, kind)
        informer = self.cache.find(
            api_version, kind, label_selector=LABEL_PACKAGE, metadata_only=partial
        )
        if (
            informer is None
            or informer.forbidden
            or not informer.synced.is_set()
            or informer.namespace not in ("", ns)
        ):
            return None
        return informer.indexed((ns, package, namespace)), not partial


def _by_package(obj: KubeObject) -> tuple[str, str, str] | None:
    """An applied object's place in its informer's index: (its namespace, the KubePkg that
    applied it, that KubePkg's namespace), what ``CachedLive`` asks for in every pass."""
    owner = package_of(obj)
    if owner is None:
        return None
    return key_of(obj)[0], owner[1], owner[0]


class Runtime:
    def __init__(
        self,
        kube: Kube,
        *,
        syncer: Syncer | None,
        reconciler: KubePkgReconciler | None,
        namespace: str = "",
        workers: int = 4,
        resync: float = 300.0,
        watch_files: bool = True,
        observer: KubePkgObserver | None = None,
        clock: Clock = SYSTEM,
        qps: float = 50.0,
        metrics: Metrics | None = None,
        owns: Callable[[str, str], bool] | None = None,
        cache: Cache | None = None,
    ) -> None:
        self.kube = kube
        self.syncer = syncer
        self.reconciler = reconciler
        self.namespace = namespace
        self.resync = resync
        self.observer = observer
        self.clock = clock
        self.metrics = metrics
        self.owns = owns or (lambda namespace, name: True)
        """Whether this replica works on a Repository or KubePkg (sharding: its shard is ours)."""
        self.stop_event = threading.Event()
        self.queue: WorkQueue[Key] = WorkQueue(
            clock=clock,
            qps=qps,
            burst=200,
            on_start=(lambda key, waited: metrics.queue_wait.observe(waited)) if metrics else None,
        )
        self.workers: Workers[Key] = Workers(
            self.queue, self.handle, count=workers, name="worker", on_error=self._crashed
        )
        self.cache = cache or Cache(kube, self.stop_event, namespace=namespace, clock=clock)
        """The process's cache when it shares one (the dashboard reads the same informers);
        otherwise this runtime's own, whose informers end with it."""
        self._handlers: list[tuple[Informer, Callable[[str, KubeObject], None]]] = []
        if reconciler is not None:
            reconciler.live_source = CachedLive(self.cache)
        self.repositories: Informer | None = None
        self.kubepkgs: Informer | None = None
        self.watcher = Watcher(self.trigger_key) if watch_files and syncer is not None else None
        self._marks: dict[Key, Any] = {}
        self._watched_kinds: set[tuple[str, str]] = set()
        self._waiters: dict[tuple[str, str], set[Key]] = {}
        """KubePkg (namespace, name) -> the KubePkgs waiting for it to be Ready (dependsOn)."""
        self._cycle_peers: dict[tuple[str, str], set[Key]] = {}
        """KubePkg (namespace, name) -> the other members of a depends-on cycle it was found on."""
        self._on_cycle: dict[tuple[str, str], frozenset[tuple[str, str]]] = {}
        """KubePkg (namespace, name) -> the members of the cycle its last pass found it on."""
        self._lock = threading.Lock()
        self._rng = random.Random()
        self._supervisor: threading.Thread | None = None
        self._forget_pending = False
        """A mirror cleanup waits for the Repository passes in flight."""

    # -- life cycle -----------------------------------------------------------------------------

    def start(self) -> None:
        if self.syncer is not None:
            self.repositories, _ = self.cache.informer(
                repository.API_VERSION, repository.KIND, handler=self._repository_event
            )
            self._handlers.append((self.repositories, self._repository_event))
        if self.reconciler is not None:
            self.kubepkgs, _ = self.cache.informer(API_VERSION, KIND, handler=self._kubepkg_event)
            self._handlers.append((self.kubepkgs, self._kubepkg_event))
        self.workers.start()
        self._supervisor = threading.Thread(target=self._supervise, name="supervisor", daemon=True)
        self._supervisor.start()

    def _supervise(self) -> None:
        while not self.clock.wait(self.stop_event, 1.0):
            for _ in self.workers.check():
                if self.metrics is not None:
                    self.metrics.worker_restarts.inc()

    def stop(self) -> None:
        """Take no new work; wait for passes in flight (informer threads end on their own)."""
        self.stop_event.set()
        self.workers.stop()
        with self._lock:
            handlers, self._handlers = self._handlers, []
        for informer, handler in handlers:  # a shared cache outlives this runtime
            informer.remove_handler(handler)
        if self.watcher is not None:
            self.watcher.stop()

    @property
    def repositories_listed(self) -> bool:
        return self.repositories is None or self.repositories.synced.is_set()

    @property
    def kubepkgs_listed(self) -> bool:
        return self.kubepkgs is None or self.kubepkgs.synced.is_set()

    def problems(self, *, ready: bool) -> list[str]:
        out = self.workers.problems() + self.cache.problems()
        if ready:
            if not self.repositories_listed:
                out.append("Repository objects not listed yet")
            if not self.kubepkgs_listed:
                out.append("KubePkg objects not listed yet")
        return out

    # -- what enqueues --------------------------------------------------------------------------

    def _add(self, key: Key, delay: float = 0.0) -> None:
        """Queue ``key`` if this replica works on it (its shard is ours)."""
        if self.owns(key[1], key[2]):
            self.queue.add(key, delay)

    def shards_changed(self, owned: set[int]) -> None:
        """Shards moved: queue every known object this replica now works on (the others'
        keys are dropped when they come up)."""
        log.info("working on shards %s", sorted(owned) or "none")
        for kind, informer in ((REPOSITORY, self.repositories), (KUBEPKG, self.kubepkgs)):
            for namespace, name in informer.keys() if informer is not None else []:
                self._add((kind, namespace, name))

    def trigger(self, namespace: str, name: str) -> bool:
        """A verified push or local commit: sync that Repository now."""
        if self.repositories is None or self.repositories.get(namespace, name) is None:
            return False
        if not self.owns(namespace, name):
            return False
        self.queue.add((REPOSITORY, namespace, name))
        return True

    def trigger_key(self, key: str) -> object:
        namespace, _, name = key.partition("/")
        return self.trigger(namespace, name)

    def _changed(self, key: Key, obj: KubeObject) -> bool:
        meta = obj.get("metadata") or {}
        mark = (meta.get("generation"), meta.get("deletionTimestamp"), meta.get("annotations"))
        with self._lock:
            if self._marks.get(key) == mark:
                return False
            self._marks[key] = mark
        return True

    def _repository_event(self, event: str, obj: KubeObject) -> None:
        namespace, name = key_of(obj)
        key = (REPOSITORY, namespace, name)
        if event == DELETED:
            with self._lock:
                self._marks.pop(key, None)
            self.queue.forget(key)
            self._forget_mirrors()
        elif self._changed(key, obj):
            token = repository.pending_request(obj)
            if token and self.owns(namespace, name):
                log.info("Repository %s/%s: sync requested (%s)", namespace, name, token)
            self._add(key)
            if event != ADDED:
                self._forget_mirrors()  # its URL may have changed
        self._watch_paths()

    def _kubepkg_event(self, event: str, obj: KubeObject) -> None:
        namespace, name = key_of(obj)
        key = (KUBEPKG, namespace, name)
        if event == DELETED:
            with self._lock:
                self._marks.pop(key, None)
            self._add(key)  # the pass finds it gone and forgets it
            owner = ((obj.get("metadata") or {}).get("annotations") or {}).get(
                deployment.ANNOTATION_REPOSITORY
            )
            if owner and self.syncer is not None:
                # Written from a deployment repository: if its file is still there, git says it
                # should exist, so that Repository applies its branch again (a no-op when the
                # Repository deleted it itself).
                self.syncer.stale(owner)
                self.trigger_key(owner)
            with self._lock:
                self._on_cycle.pop((namespace, name), None)
            self._wake_cycle(namespace, name)
        elif self._changed(key, obj):
            self._add(key)
            self._wake_cycle(namespace, name)
        if ready_now(obj):
            with self._lock:
                waiters = self._waiters.pop((namespace, name), set())
            for waiter in waiters:
                self._add(waiter)
        self.watch_applied(obj)

    def _wake_cycle(self, namespace: str, name: str) -> None:
        """A member of a depends-on cycle changed (its annotation, say): the others look again."""
        with self._lock:
            peers = self._cycle_peers.pop((namespace, name), set())
        for peer in peers:
            self._add(peer)

    def _applied_event(self, event: str, obj: KubeObject) -> None:
        owner = package_of(obj)
        if owner is not None:
            self._add((KUBEPKG, *owner), SETTLE)

    def watch_applied(self, kubepkg: KubeObject) -> None:
        """Watch (our label; inert kinds by metadata only) every kind in a KubePkg's inventory
        not watched yet."""
        for ref in inventory_of(kubepkg.get("status") or {}):
            self.watch_kind(ref)

    def watch_kind(self, ref: ObjectRef) -> None:
        kind = (ref.api_version, ref.kind)
        with self._lock:
            if kind in self._watched_kinds:
                return
            self._watched_kinds.add(kind)
        try:
            namespaced = self.kube.resource(ref.api_version, ref.kind).namespaced
        except KubeError as e:  # a CRD the package applied and removed again: not watched
            log.info("not watching %s %s: %s", ref.api_version, ref.kind, e)
            with self._lock:
                self._watched_kinds.discard(kind)
            return
        informer, _ = self.cache.informer(
            ref.api_version,
            ref.kind,
            label_selector=LABEL_PACKAGE,
            metadata_only=_by_metadata(ref.api_version, ref.kind),
            namespace=self.namespace if namespaced else "",
            handler=self._applied_event,
            on_synced=lambda: self._recheck_kind(ref.api_version, ref.kind),
            optional=True,
            index=_by_package,
        )
        with self._lock:
            self._handlers.append((informer, self._applied_event))

    def _all_watched(self, refs: list[ObjectRef]) -> bool:
        """Whether the kinds of ``refs`` (what a pass applied) are all watched (not refused with
        403): if not, a progressing KubePkg is checked at its outcome's short interval instead of
        waiting for events that cannot come."""
        for ref in refs:
            informer = self.cache.find(
                ref.api_version,
                ref.kind,
                label_selector=LABEL_PACKAGE,
                metadata_only=_by_metadata(ref.api_version, ref.kind),
            )
            if informer is None or informer.forbidden:
                return False
        return True

    def _recheck_kind(self, api_version: str, kind: str) -> None:
        """A kind's watch just started: a change to its objects before that was no event, so
        every KubePkg that applied that kind gets one more pass."""
        for obj in self.kubepkgs.items() if self.kubepkgs is not None else []:
            inventory = inventory_of(obj.get("status") or {})
            if any(r.api_version == api_version and r.kind == kind for r in inventory):
                self._add((KUBEPKG, *key_of(obj)), SETTLE)

    # -- passes ---------------------------------------------------------------------------------

    def handle(self, key: Key) -> Result:
        kind, namespace, name = key
        if not self.owns(namespace, name):
            return Result(forget=True)  # its shard moved to another replica
        if kind == REPOSITORY:
            return self._repository_pass(namespace, name)
        return self._kubepkg_pass(namespace, name)

    def _repository_pass(self, namespace: str, name: str) -> Result:
        try:
            return self._sync(namespace, name)
        finally:
            if self._forget_pending:
                self._forget_mirrors(finishing=(REPOSITORY, namespace, name))

    def _sync(self, namespace: str, name: str) -> Result:
        assert self.syncer is not None and self.repositories is not None
        obj = self.repositories.get(namespace, name)
        if obj is None:
            if self.metrics is not None:
                self.metrics.forget(REPOSITORY, namespace, name)
            return Result(forget=True)
        outcome = self.syncer.sync_object(obj)
        if self.metrics is not None:
            suspended = bool((obj.get("spec") or {}).get("suspend"))
            self.metrics.record_pass(
                REPOSITORY, namespace, name, ready=outcome.ready, suspended=suspended
            )
        if outcome.changes:
            log.info("Repository %s/%s: %s", namespace, name, "; ".join(outcome.changes))
        if outcome.failed:
            return Result(failed=True)
        try:
            interval = repository.parse(obj).interval
        except InputError:
            return Result()  # InvalidSpec is in its status; a spec change queues it again
        return Result(requeue_after=interval + self._rng.uniform(0, jitter(interval)))

    def _kubepkg_pass(self, namespace: str, name: str) -> Result:
        assert self.reconciler is not None and self.kubepkgs is not None
        started = self.clock.monotonic()
        obj = self.kubepkgs.get(namespace, name)
        changes = None
        if obj is None:
            outcome = Outcome(GONE, "NotFound", f"KubePkg {namespace}/{name} is gone")
        elif cycle := self._cycle_through(obj):
            outcome = self.reconciler.dependency_cycle(obj, cycle)
        elif waiting := self._waiting_for(obj):
            outcome = self.reconciler.wait_for_dependencies(obj, waiting)
        else:
            outcome, changes = self.reconciler.reconcile_object(obj)
        if changes is not None:
            for ref in changes.live:
                self.watch_kind(ref)
        log.info("KubePkg %s/%s: %s: %s", namespace, name, outcome.kind, outcome.message)
        if self.observer is not None:
            self.observer((namespace, name), outcome, self.clock.monotonic() - started)
        if self.metrics is not None:
            if outcome.kind == GONE:
                self.metrics.forget(KUBEPKG, namespace, name)
            else:
                self.metrics.record_pass(
                    KUBEPKG, namespace, name, ready=outcome.kind == READY, suspended=False
                )
        if outcome.kind == GONE:
            return Result(forget=True)
        if outcome.kind == PROGRESSING:
            refs = list(changes.live) if changes is not None else []
            if outcome.requeue_after > 0 and self._all_watched(refs):
                # Every change that can move it on is an event we watch (the reconciler says
                # no workload waits on Pods): no 30 s safety net, only its health timeout.
                return Result(requeue_after=min(outcome.requeue_after, self.resync))
            return Result(requeue_after=min(PROGRESSING_FALLBACK, self.resync))
        return Result(requeue_after=self.resync)

    def _cycle_through(self, obj: KubeObject) -> list[str]:
        """The depends-on cycle this KubePkg is on (``KubePkg ns/name`` from it back to it), read
        from the cache; [] when none. Every member is woken when another member changes, so
        breaking the cycle anywhere releases them all."""
        assert self.kubepkgs is not None
        if (obj.get("metadata") or {}).get("deletionTimestamp"):
            return []
        me = key_of(obj)
        kubepkgs = self.kubepkgs

        def dependencies(node: tuple[str, str]) -> list[tuple[str, str]]:
            found = obj if node == me else kubepkgs.get(*node)
            return depends_on(found) if found is not None else []

        cycle = dependency_cycle(me, dependencies)
        members = frozenset(cycle)
        with self._lock:
            for member in cycle:
                peers = self._cycle_peers.setdefault(member, set())
                peers.update((KUBEPKG, *other) for other in cycle if other != member)
            if members:
                self._on_cycle[me] = members
            else:
                self._on_cycle.pop(me, None)
            # A member that has not seen this cycle yet may be waiting for a peer to turn Ready
            # (its pass ran before the cycle closed): it looks again, once.
            unaware = [m for m in members if m != me and self._on_cycle.get(m) != members]
        for member in unaware:
            self._add((KUBEPKG, *member))
        return [f"KubePkg {namespace}/{name}" for namespace, name in cycle]

    def _waiting_for(self, obj: KubeObject) -> list[str]:
        """The dependencies of a KubePkg that are not Ready; it is woken when one changes."""
        assert self.kubepkgs is not None
        if (obj.get("metadata") or {}).get("deletionTimestamp"):
            return []  # a deletion never waits
        key = (KUBEPKG, *key_of(obj))
        waiting = []
        for dep in depends_on(obj):
            if not ready_now(self.kubepkgs.get(*dep)):
                waiting.append(f"KubePkg {dep[0]}/{dep[1]}")
                with self._lock:
                    self._waiters.setdefault(dep, set()).add(key)
        return waiting

    def _crashed(self, key: Key, error: BaseException) -> None:
        kind, namespace, name = key
        if kind == KUBEPKG and self.observer is not None:
            self.observer((namespace, name), Outcome(ERROR, "ReconcileFailed", str(error)), 0.0)
        if not isinstance(error, KubeError):
            log.error(
                "%s %s/%s: unexpected %s (a bug)", kind, namespace, name, type(error).__name__
            )

    # -- repositories' side effects ------------------------------------------------------------

    def _repository_specs(self) -> list[repository.RepositorySpec]:
        out = []
        for obj in self.repositories.items() if self.repositories is not None else []:
            try:
                out.append(repository.parse(obj))
            except InputError:
                continue
        return out

    def _watch_paths(self) -> None:
        if self.watcher is None:
            return
        paths: dict[str, Path] = {}
        for spec in self._repository_specs():
            path = local_path(spec.url)
            if path is not None and not spec.suspend and not spec.airgap:
                paths[spec.key] = path
        self.watcher.update(paths)

    def _forget_mirrors(self, finishing: Key | None = None) -> None:
        """Delete the mirrors no Repository names any more; while a Repository pass is in flight
        (it may be reading the very mirror), wait until the last one ends (``finishing``: the
        pass that is ending now)."""
        if self.syncer is None or self.repositories is None:
            return
        with self._lock:
            busy = [k for k in self.queue.active() if k[0] == REPOSITORY and k != finishing]
            self._forget_pending = bool(busy)
        if busy:
            return
        before = self.syncer.clock.monotonic()  # the clock the mirrors' times come from
        urls = {str((o.get("spec") or {}).get("url") or "") for o in self.repositories.items()}
        for path in self.syncer.forget(urls, before=before):
            log.info("removed the mirror %s: no Repository names its URL any more", path)

    # -- --once -------------------------------------------------------------------------------

    def run_once(self) -> list[tuple[tuple[str, str], Outcome]]:
        """One pass over every KubePkg, on ``workers`` threads (``controller --once``)."""
        results: dict[tuple[str, str], Outcome] = {}
        observer = self.observer

        def observe(key: tuple[str, str], outcome: Outcome, seconds: float) -> None:
            results[key] = outcome
            if observer is not None:
                observer(key, outcome, seconds)

        self.observer = observe
        self.kubepkgs = Informer(self.kube, API_VERSION, KIND, self.namespace, clock=self.clock)
        self.kubepkgs.relist()
        keys = [key_of(obj) for obj in self.kubepkgs.items()]
        for namespace, name in keys:
            self.queue.add((KUBEPKG, namespace, name))

        def work() -> None:
            while (key := self.queue.pop_due()) is not None:
                self.workers.run_key(key)

        threads = [
            threading.Thread(target=work, name=f"once-{i}") for i in range(self.workers.count)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        failed = Outcome(ERROR, "ReconcileFailed", "the pass failed (see the log)")
        return [(key, results.get(key, failed)) for key in keys]
