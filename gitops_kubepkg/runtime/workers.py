"""Worker threads under supervision: whatever a pass raises is that key's failure, never a dead
worker.

Each worker takes a key from the ``WorkQueue`` and calls ``handle(key)``, which returns when the
key should run again (``Result``). At the worker boundary:

- an exception of any type (a ValueError from an API response that fails to parse included)
  becomes that key's failed outcome: the key backs off and runs again, the traceback is logged,
  and ``on_error`` is told (so the key's status and metrics can say Error);
- a worker thread that died anyway (a BaseException, a bug in this module) is replaced on the next
  ``check``; ``problems`` names what is wrong for ``/healthz``, which fails if a worker died and
  was not replaced.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from gitops_kubepkg.runtime.queue import WorkQueue

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Result:
    requeue_after: float = 0.0
    """Run the key again after this many seconds (0: only when something enqueues it)."""
    failed: bool = False
    """Back off (the queue's jittered exponential delay) instead of ``requeue_after``."""
    forget: bool = False
    """The key's object is gone: drop it from the queue."""


class Workers(Generic[K]):
    def __init__(
        self,
        queue: WorkQueue[K],
        handle: Callable[[K], Result],
        *,
        count: int = 2,
        name: str = "worker",
        on_error: Callable[[K, BaseException], None] | None = None,
    ) -> None:
        self.queue = queue
        self.handle = handle
        self.count = max(1, count)
        self.name = name
        self.on_error = on_error
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self.restarts = 0

    def run_key(self, key: K) -> Result:
        """One pass of ``key`` at the supervision boundary; ``done`` is always called."""
        result = Result(failed=True)
        try:
            result = self.handle(key)
        except Exception as e:  # the boundary: any error is this key's, not the worker's
            log.error("%s %s: pass failed: %s", self.name, key, e, exc_info=True)
            if self.on_error is not None:
                try:
                    self.on_error(key, e)
                except Exception:
                    log.exception("%s %s: reporting the failure failed", self.name, key)
        finally:
            if result.forget:
                self.queue.done(key)
                self.queue.forget(key)
            else:
                self.queue.done(key, failed=result.failed, requeue_after=result.requeue_after)
        return result

    def _loop(self) -> None:
        while not self._stop.is_set():
            key = self.queue.get(timeout=0.5)
            if key is not None:
                self.run_key(key)

    def _spawn(self, index: int) -> threading.Thread:
        t = threading.Thread(target=self._loop, name=f"{self.name}-{index}", daemon=True)
        t.start()
        return t

    def start(self) -> None:
        self._threads = [self._spawn(i) for i in range(self.count)]

    def check(self) -> list[str]:
        """Replace dead workers; name the ones that died (an empty list: all alive)."""
        died: list[str] = []
        if self._stop.is_set():
            return died
        for i, t in enumerate(self._threads):
            if not t.is_alive():
                died.append(t.name)
                log.error("%s died; starting a new one", t.name)
                self._threads[i] = self._spawn(i)
                self.restarts += 1
        return died

    def problems(self) -> list[str]:
        """For /healthz: workers that are dead right now (``check`` replaces them)."""
        if self._stop.is_set():
            return []
        return [f"{t.name} is not running" for t in self._threads if not t.is_alive()]

    def stop(self) -> None:
        """Take no new keys; wait for passes in flight."""
        self._stop.set()
        self.queue.close()
        for t in self._threads:
            t.join()
