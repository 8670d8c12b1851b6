"""The dashboard's cache: informers of what the pages show, and a version per topic.

Between the API server and every viewer. One list+watch per kind (``runtime.informer``) keeps
Repositories, KubePkgs, PackageRevisions and Events of the watched namespaces in memory, so a
page costs no API request however many people look. Each informer event bumps its topic's
version and wakes the live streams waiting in ``wait``: a viewer hears of a change from the
cache, never by polling the API server. The airgap import record and the registry's
repositories are files on the controller's volume; a light check of their modification times
(``files_interval``) bumps the ``airgap`` and ``registry`` topics.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable
from pathlib import Path

from gitops_kubepkg.airgap.trust import RECORD_NAME
from gitops_kubepkg.controller.repository import API_VERSION as REPOSITORY_API
from gitops_kubepkg.controller.repository import KIND as REPOSITORY_KIND
from gitops_kubepkg.kube import Kube
from gitops_kubepkg.runtime.informer import Cache, Handler, Informer
from gitops_kubepkg.sources.catalog import KIND as REVISION_KIND
from gitops_kubepkg.spec import API_VERSION as KUBEPKG_API
from gitops_kubepkg.spec import KIND as KUBEPKG_KIND
from gitops_kubepkg.spec import KubeObject

log = logging.getLogger(__name__)

REPOSITORIES, KUBEPKGS, REVISIONS, EVENTS, AIRGAP, REGISTRY = (
    "repositories",
    "kubepkgs",
    "revisions",
    "events",
    "airgap",
    "registry",
)
TOPICS = (REPOSITORIES, KUBEPKGS, REVISIONS, EVENTS, AIRGAP, REGISTRY)


class State:
    """The informers and the topic versions; ``start`` lists and watches, ``stop`` ends it."""

    def __init__(
        self,
        kube: Kube,
        *,
        namespace: str = "",
        state_dir: Path | None = None,
        store: Path | None = None,
        files_interval: float = 2.0,
        cache: Cache | None = None,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.state_dir = state_dir
        self.store = store
        self.files_interval = files_interval
        self._stop = threading.Event()
        self.cache = cache or Cache(kube, self._stop, namespace=namespace)
        """The controller process's cache when it runs in one (its leader's runtime watches the
        same Repositories and KubePkgs: one watch of each, not two); else its own."""
        self._versions = dict.fromkeys(TOPICS, 0)
        self._changed = threading.Condition()
        self.repositories: Informer | None = None
        self.kubepkgs: Informer | None = None
        self.revisions: Informer | None = None
        self.events: Informer | None = None
        self._files: threading.Thread | None = None
        self._handlers: list[tuple[Informer, Handler]] = []

    # -- topics -------------------------------------------------------------------------------

    def bump(self, *topics: str) -> None:
        with self._changed:
            for topic in topics:
                self._versions[topic] += 1
            self._changed.notify_all()

    def versions(self) -> dict[str, int]:
        with self._changed:
            return dict(self._versions)

    def wait(self, seen: dict[str, int], timeout: float) -> dict[str, int]:
        """Block until a topic's version differs from ``seen`` (or ``timeout``, or stop); the
        versions now."""
        with self._changed:
            self._changed.wait_for(
                lambda: self._versions != seen or self._stop.is_set(), timeout=timeout
            )
            return dict(self._versions)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        def bumper(topic: str) -> Handler:
            return lambda event, obj: self.bump(topic)

        def watch(api_version: str, kind: str, topic: str, optional: bool = False) -> Informer:
            handler = bumper(topic)
            informer, _ = self.cache.informer(api_version, kind, handler=handler, optional=optional)
            self._handlers.append((informer, handler))
            return informer

        self.repositories = watch(REPOSITORY_API, REPOSITORY_KIND, REPOSITORIES)
        self.kubepkgs = watch(KUBEPKG_API, KUBEPKG_KIND, KUBEPKGS)
        self.revisions = watch(REPOSITORY_API, REVISION_KIND, REVISIONS)
        self.events = watch("v1", "Event", EVENTS, optional=True)
        self._files = threading.Thread(
            target=self._watch_files, name="dashboard-files", daemon=True
        )
        self._files.start()

    def stop(self) -> None:
        self._stop.set()
        for informer, handler in self._handlers:  # a shared cache outlives the dashboard
            informer.remove_handler(handler)
        with self._changed:
            self._changed.notify_all()
        if self._files is not None:
            self._files.join()

    def synced(self, timeout: float = 0.0) -> bool:
        informers = [self.repositories, self.kubepkgs, self.revisions]
        return all(i is not None and i.synced.wait(timeout) for i in informers)

    def problems(self) -> list[str]:
        return self.cache.problems()

    # -- reads --------------------------------------------------------------------------------

    @staticmethod
    def _items(informer: Informer | None) -> list[KubeObject]:
        return informer.items() if informer is not None else []

    def repository_list(self) -> list[KubeObject]:
        return self._items(self.repositories)

    def kubepkg_list(self) -> list[KubeObject]:
        return self._items(self.kubepkgs)

    def revision_list(self) -> list[KubeObject]:
        return self._items(self.revisions)

    def event_list(self) -> list[KubeObject]:
        return self._items(self.events)

    def kubepkg(self, namespace: str, name: str) -> KubeObject | None:
        return self.kubepkgs.get(namespace, name) if self.kubepkgs is not None else None

    def repository(self, namespace: str, name: str) -> KubeObject | None:
        return self.repositories.get(namespace, name) if self.repositories is not None else None

    # -- files --------------------------------------------------------------------------------

    def _file_marks(self) -> dict[str, tuple[float, ...]]:
        def mtimes(paths: Iterable[Path]) -> tuple[float, ...]:
            out = []
            for p in paths:
                with contextlib.suppress(OSError):
                    out.append(p.stat().st_mtime)
                    continue
                out.append(-1.0)
            return tuple(out)

        records = [d / RECORD_NAME for d in (self.store, self.state_dir) if d is not None]
        tags: list[Path] = []
        if self.store is not None:
            base = self.store / "repositories"
            tags.append(base)
            with contextlib.suppress(OSError):
                tags.extend(base.rglob("_tags"))
                tags.extend(p for d in base.rglob("_tags") for p in d.iterdir())
        return {AIRGAP: mtimes(records), REGISTRY: mtimes(tags)}

    def _watch_files(self) -> None:
        marks = self._file_marks()
        while not self._stop.wait(self.files_interval):
            try:
                now = self._file_marks()
            except Exception:  # a store being written under us: look again next time
                log.debug("dashboard: reading the store's modification times", exc_info=True)
                continue
            changed = [topic for topic in now if now[topic] != marks.get(topic)]
            marks = now
            if changed:
                self.bump(*changed)
