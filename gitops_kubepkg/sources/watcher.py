"""Watch file:// repositories so a local commit syncs at once instead of at the next poll.

Beside the webhook receiver, a trigger onto the controller's work queue: watchfiles reports changes under each
repository's directory (refs, packed-refs, objects) and the watcher triggers that repository's key.
The set of paths is replaced whole when repositories come and go.
"""

from __future__ import annotations

import logging
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path

import watchfiles

log = logging.getLogger(__name__)


def local_path(url: str) -> Path | None:
    """The directory a file:// URL names, or None for a network URL."""
    if not url.startswith("file://"):
        return None
    return Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path))


class Watcher:
    """One thread running ``watchfiles.watch`` over every local repository."""

    def __init__(self, trigger: Callable[[str], object], *, debounce_ms: int = 50) -> None:
        self._trigger = trigger
        self._debounce = debounce_ms
        self._paths: dict[str, Path] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def update(self, paths: Mapping[str, Path]) -> None:
        """Watch exactly ``paths`` (key -> directory); restarts the watch when the set changed."""
        existing = {k: p for k, p in paths.items() if p.is_dir()}
        with self._lock:
            if existing == self._paths:
                return
            self._stop_thread()
            self._paths = dict(existing)
            if not self._paths:
                return
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._loop, args=(dict(self._paths), self._stop), daemon=True, name="watch"
            )
            self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._stop_thread()
            self._paths = {}

    def _stop_thread(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _loop(self, paths: dict[str, Path], stop: threading.Event) -> None:
        roots = {p.resolve(): k for k, p in paths.items()}
        try:
            for changes in watchfiles.watch(
                *roots, stop_event=stop, debounce=self._debounce, rust_timeout=500
            ):
                keys = set()
                for _, changed in changes:
                    target = Path(changed)
                    for root, key in roots.items():
                        if target == root or root in target.parents:
                            keys.add(key)
                for key in sorted(keys):
                    self._trigger(key)
        except Exception:  # the Repository is still polled; a broken watch only loses the fast path
            log.exception("watching local repositories failed")
