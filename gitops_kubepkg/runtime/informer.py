"""Informers: one list+watch per kind into a shared cache; handlers turn events into queued keys.

An ``Informer`` lists its kind once, then watches from the list's resourceVersion, following
bookmarks, and resumes each new watch where the last one ended; only a 410 (the version is too
old) or an error event makes it list again, and a relist tells its handlers what changed and what
went away meanwhile. Passes read objects from ``Cache`` instead of asking the API server. An
informer built ``metadata_only`` keeps just each object's metadata (the applied kinds: we only need
to notice that an object changed, to queue its KubePkg), label-selected to what we applied.

An informer never dies of an error: a failed list or watch, or a response that does not parse, is
logged and retried with backoff (``problems`` says so until it has listed again).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable
from typing import Any

from gitops_kubepkg.clock import SYSTEM, Clock
from gitops_kubepkg.errors import KubeError
from gitops_kubepkg.kube import Kube
from gitops_kubepkg.spec import KubeObject

log = logging.getLogger(__name__)

ObjectKey = tuple[str, str]
"""(namespace, name); namespace "" for cluster-scoped objects."""
Handler = Callable[[str, KubeObject], None]
"""Called with ADDED, MODIFIED or DELETED and the object (for DELETED: its last known state)."""
Index = Callable[[KubeObject], Hashable | None]
"""What an informer files each object under (None: nowhere), so ``indexed`` finds a group of
objects without scanning the kind."""

ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"


def key_of(obj: KubeObject) -> ObjectKey:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _version(obj: KubeObject) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


class Informer:
    def __init__(
        self,
        kube: Kube,
        api_version: str,
        kind: str,
        namespace: str = "",
        *,
        label_selector: str = "",
        metadata_only: bool = False,
        watch_timeout: int = 300,
        clock: Clock = SYSTEM,
        index: Index | None = None,
    ) -> None:
        self.kube = kube
        self.api_version = api_version
        self.kind = kind
        self.namespace = namespace
        self.label_selector = label_selector
        self.metadata_only = metadata_only
        self.watch_timeout = watch_timeout
        self.clock = clock
        self._objects: dict[ObjectKey, KubeObject] = {}
        self._index = index
        self._indexed: dict[Hashable, set[ObjectKey]] = {}
        self._handlers: list[Handler] = []
        self._lock = threading.Lock()
        self.resource_version = ""
        self.synced = threading.Event()
        """Set once the first list is in the cache."""
        self.lists = 0
        self.watches = 0
        self.error = ""
        """The last list or watch failure, "" once it listed or watched again."""
        self._thread: threading.Thread | None = None
        self.optional = False
        """True for a watch we can do without (applied kinds): a 403 stops it, said once."""
        self.forbidden = False
        """Stopped because the API server said 403 (``optional`` only): not a failure."""
        self.on_synced: Callable[[], None] | None = None
        """Called once, after the first list: what changed before it was never an event."""

    @property
    def name(self) -> str:
        what = f"{self.kind}.{self.api_version}"
        return f"{what} ({self.label_selector})" if self.label_selector else what

    # -- the cache ------------------------------------------------------------------------------

    def add_handler(self, handler: Handler) -> None:
        """Tell ``handler`` of every change from now on, and of every object already cached (as
        ADDED), as client-go does for a handler added late: a part that shares the informer
        after it listed still hears of each object. An object may be told twice, never missed."""
        with self._lock:
            self._handlers = [*self._handlers, handler]
            cached = list(self._objects.values())
        for obj in cached:
            try:
                handler(ADDED, obj)
            except Exception:
                log.exception("informer %s: handler failed on %s %s", self.name, ADDED, key_of(obj))

    def remove_handler(self, handler: Handler) -> None:
        with self._lock:
            self._handlers = [h for h in self._handlers if h != handler]

    def get(self, namespace: str, name: str) -> KubeObject | None:
        with self._lock:
            return self._objects.get((namespace, name))

    def items(self) -> list[KubeObject]:
        with self._lock:
            return list(self._objects.values())

    def keys(self) -> list[ObjectKey]:
        with self._lock:
            return list(self._objects)

    def indexed(self, value: Hashable) -> list[KubeObject]:
        """The objects the informer's ``index`` files under ``value``."""
        assert self._index is not None, f"informer {self.name} keeps no index"
        with self._lock:
            return [self._objects[key] for key in self._indexed.get(value, ())]

    def _file(self, key: ObjectKey, old: KubeObject | None, new: KubeObject | None) -> None:
        """Move ``key`` in the index from where ``old`` was filed to where ``new`` is."""
        if self._index is None:
            return
        before = self._index(old) if old is not None else None
        after = self._index(new) if new is not None else None
        if before == after:
            return
        if before is not None:
            keys = self._indexed.get(before)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._indexed[before]
        if after is not None:
            self._indexed.setdefault(after, set()).add(key)

    def _notify(self, event: str, obj: KubeObject) -> None:
        for handler in self._handlers:  # replaced, never changed in place: safe to iterate
            try:
                handler(event, obj)
            except Exception:  # a handler's bug must not stop the informer
                log.exception("informer %s: handler failed on %s %s", self.name, event, key_of(obj))

    def _event(self, event: str, obj: KubeObject) -> None:
        key = key_of(obj)
        with self._lock:
            if event == DELETED:
                old = self._objects.pop(key, None)
                self._file(key, old, None)
                obj = obj or old or {}
            else:
                old = self._objects.get(key)
                self._objects[key] = obj
                self._file(key, old, obj)
        if event != DELETED and old is not None and _version(old) == _version(obj):
            return  # nothing new (a relist of an unchanged object)
        self._notify(ADDED if event != DELETED and old is None else event, obj)

    def relist(self) -> None:
        """List the kind into the cache; tell the handlers what changed and what went away."""
        items, version = self.kube.list_with_version(
            self.api_version,
            self.kind,
            self.namespace,
            label_selector=self.label_selector,
            metadata_only=self.metadata_only,
        )
        self.lists += 1
        listed = {key_of(obj) for obj in items}
        with self._lock:
            gone = [obj for key, obj in self._objects.items() if key not in listed]
        for obj in gone:
            self._event(DELETED, obj)
        for obj in items:
            self._event(MODIFIED, obj)
        self.resource_version = version
        first = not self.synced.is_set()
        self.synced.set()
        if first and self.on_synced is not None:
            try:
                self.on_synced()
            except Exception:
                log.exception("informer %s: on_synced failed", self.name)

    # -- the loop -------------------------------------------------------------------------------

    def watch_once(self, stop: threading.Event) -> None:
        """One watch from the current resourceVersion until the server ends it (or a 410)."""
        self.watches += 1
        for event, obj in self.kube.watch(
            self.api_version,
            self.kind,
            self.namespace,
            resource_version=self.resource_version,
            timeout_seconds=self.watch_timeout,
            label_selector=self.label_selector,
            metadata_only=self.metadata_only,
        ):
            if stop.is_set():
                return
            if event == "ERROR":
                status: dict[str, Any] = obj
                log.info(
                    "informer %s: watch ended: %s (listing again)",
                    self.name,
                    status.get("message") or status.get("reason") or status,
                )
                self.resource_version = ""  # 410 Gone and friends: list again
                return
            version = _version(obj)
            if event != "BOOKMARK":
                self._event(event, obj)
            if version:
                self.resource_version = version

    def run(self, stop: threading.Event) -> None:
        delay = 1.0
        while not stop.is_set():
            try:
                if not self.resource_version:
                    self.relist()
                self.watch_once(stop)
                self.error = ""
                delay = 1.0
            except KubeError as e:
                if stop.is_set():
                    return  # stopping: the server may be gone already
                if e.status == 403 and self.optional:
                    self.forbidden = True
                    log.error(
                        "informer %s: not allowed to list and watch it (%s); changes to these "
                        "objects are seen only by timed checks. Grant the controller list and "
                        "watch on this kind to see them at once.",
                        self.name,
                        e,
                    )
                    return
                if e.status == 410:
                    self.resource_version = ""
                    continue
                self.error = str(e)
                log.warning("informer %s: %s (retry in %.0fs)", self.name, e, delay)
                self.clock.wait(stop, delay)
                delay = min(delay * 2, 30.0)
            except Exception as e:  # a response that does not parse: list again, later
                if stop.is_set():
                    return
                self.error = f"{type(e).__name__}: {e}"
                log.error("informer %s failed (retry in %.0fs)", self.name, delay, exc_info=True)
                self.resource_version = ""
                self.clock.wait(stop, delay)
                delay = min(delay * 2, 30.0)

    def start(self, stop: threading.Event) -> None:
        self._thread = threading.Thread(
            target=self.run, args=(stop,), name=f"informer-{self.kind}", daemon=True
        )
        self._thread.start()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


class Cache:
    """The shared cache: one informer per (apiVersion, kind, selector, metadata_only), started on
    first use, so every part that needs a kind shares one watch of it."""

    def __init__(
        self, kube: Kube, stop: threading.Event, *, namespace: str = "", clock: Clock = SYSTEM
    ) -> None:
        self.kube = kube
        self.stop = stop
        self.namespace = namespace
        self.clock = clock
        self._informers: dict[tuple[str, str, str, bool], Informer] = {}
        self._lock = threading.Lock()

    def informer(
        self,
        api_version: str,
        kind: str,
        *,
        label_selector: str = "",
        metadata_only: bool = False,
        namespace: str | None = None,
        handler: Handler | None = None,
        on_synced: Callable[[], None] | None = None,
        optional: bool = False,
        index: Index | None = None,
    ) -> tuple[Informer, bool]:
        """The informer of a kind (started when new; True when it was new). ``handler`` is added
        either way (an informer that exists already replays its cache to it); ``index``,
        ``on_synced`` and ``optional`` are kept only by the informer this call makes: the first
        part to ask for a kind chooses them."""
        key = (api_version, kind, label_selector, metadata_only)
        with self._lock:
            found = self._informers.get(key)
            if found is None:
                informer = Informer(
                    self.kube,
                    api_version,
                    kind,
                    self.namespace if namespace is None else namespace,
                    label_selector=label_selector,
                    metadata_only=metadata_only,
                    clock=self.clock,
                    index=index,
                )
                if handler is not None:
                    informer.add_handler(handler)
                informer.on_synced = on_synced
                informer.optional = optional
                self._informers[key] = informer
        if found is not None:
            if handler is not None:
                found.add_handler(handler)  # outside our lock: it replays the cache
            return found, False
        informer.start(self.stop)
        return informer, True

    def find(
        self, api_version: str, kind: str, *, label_selector: str = "", metadata_only: bool = False
    ) -> Informer | None:
        with self._lock:
            return self._informers.get((api_version, kind, label_selector, metadata_only))

    def informers(self) -> list[Informer]:
        with self._lock:
            return list(self._informers.values())

    def problems(self) -> list[str]:
        out = []
        for informer in self.informers():
            if not informer.alive() and not informer.forbidden and not self.stop.is_set():
                out.append(f"the informer of {informer.name} stopped")
        return out
