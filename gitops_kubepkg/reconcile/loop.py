"""The KubePkg controller loop: list and watch KubePkgs, reconcile each on its own schedule.

Hosted by the controller process. A watch event for a changed spec (or a deletion) queues that
KubePkg at once; after a pass it comes back when its outcome says (progressing: soon, to follow
the rollout; ready or stalled: at the resync interval, which also reverts hand edits); a failed
pass backs off exponentially. Workers handle different KubePkgs in parallel, so one failing or
slow package never blocks the others.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from gitops_kubepkg.errors import GitopsKubepkgError, KubeError
from gitops_kubepkg.kube import Kube
from gitops_kubepkg.reconcile.kubepkg import KubePkgReconciler
from gitops_kubepkg.reconcile.queue import WorkQueue
from gitops_kubepkg.reconcile.status import ERROR, PROGRESSING, Outcome
from gitops_kubepkg.spec import API_VERSION, KIND

log = logging.getLogger(__name__)

Key = tuple[str, str]
Observer = Callable[[Key, Outcome, float], None]


class KubePkgLoop:
    def __init__(
        self,
        kube: Kube,
        reconciler: KubePkgReconciler | None = None,
        *,
        namespace: str = "",
        workers: int = 2,
        resync: float = 300.0,
        observer: Observer | None = None,
    ) -> None:
        self.kube = kube
        self.reconciler = reconciler or KubePkgReconciler(kube)
        self.namespace = namespace
        self.workers = workers
        self.resync = resync
        self.queue: WorkQueue[Key] = WorkQueue()
        self.observer = observer
        self._seen: dict[Key, tuple[Any, Any]] = {}

    def _changed(self, obj: dict[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        mark = (meta.get("generation"), (meta.get("deletionTimestamp"), meta.get("annotations")))
        if self._seen.get(key) == mark:
            return False
        self._seen[key] = mark
        return True

    def reconcile_key(self, key: Key) -> None:
        namespace, name = key
        started = time.monotonic()
        try:
            outcome, _ = self.reconciler.reconcile(namespace, name)
        except GitopsKubepkgError as e:
            delay = self.queue.done(key, failed=True)
            log.warning("KubePkg %s/%s failed, retry in %.0fs: %s", namespace, name, delay, e)
            if self.observer:
                self.observer(
                    key, Outcome(ERROR, "ReconcileFailed", str(e)), time.monotonic() - started
                )
            return
        if outcome.kind == "gone":
            self._seen.pop(key, None)
            self.queue.done(key)
        else:
            after = outcome.requeue_after if outcome.kind == PROGRESSING else self.resync
            self.queue.done(key, requeue_after=after)
        log.info("KubePkg %s/%s: %s: %s", namespace, name, outcome.kind, outcome.message)
        if self.observer:
            self.observer(key, outcome, time.monotonic() - started)

    def _work(self, stop: threading.Event) -> None:
        while not stop.is_set():
            key = self.queue.get(timeout=0.5)
            if key is not None:
                self.reconcile_key(key)

    def _watch(self, stop: threading.Event) -> None:
        backoff = 1.0
        while not stop.is_set():
            try:
                items, version = self.kube.list_with_version(API_VERSION, KIND, self.namespace)
                for obj in items:
                    if self._changed(obj):
                        m = obj["metadata"]
                        self.queue.add((m["namespace"], m["name"]))
                for event, obj in self.kube.watch(
                    API_VERSION, KIND, self.namespace, resource_version=version, timeout_seconds=60
                ):
                    if stop.is_set():
                        return
                    if event == "ERROR":
                        break  # 410 Gone and friends: list again
                    if event == "BOOKMARK":
                        continue
                    m = obj.get("metadata") or {}
                    if event == "DELETED" or self._changed(obj):
                        self.queue.add((m.get("namespace", ""), m.get("name", "")))
                backoff = 1.0
            except KubeError as e:
                log.warning("watching KubePkgs: %s (retry in %.0fs)", e, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, 60.0)

    def run(self, stop: threading.Event) -> None:
        """Run until ``stop`` is set; in-flight passes finish before this returns."""
        threads = [
            threading.Thread(target=self._watch, args=(stop,), name="kubepkg-watch", daemon=True)
        ]
        threads += [
            threading.Thread(
                target=self._work, args=(stop,), name=f"kubepkg-worker-{i}", daemon=True
            )
            for i in range(self.workers)
        ]
        for t in threads:
            t.start()
        stop.wait()
        self.queue.close()
        for t in threads[1:]:
            t.join()

    def run_once(self) -> list[tuple[Key, Outcome]]:
        """One pass over every KubePkg (for ``controller --once``)."""
        results: list[tuple[Key, Outcome]] = []
        for obj in self.kube.list(API_VERSION, KIND, self.namespace):
            m = obj["metadata"]
            key = (m["namespace"], m["name"])
            try:
                outcome, _ = self.reconciler.reconcile(*key)
            except GitopsKubepkgError as e:
                outcome = Outcome(ERROR, "ReconcileFailed", str(e))
            results.append((key, outcome))
        return results
