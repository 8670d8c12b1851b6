"""A work queue of object keys with delays, per-key backoff and one worker per key at a time.

The controller's scheduling core for KubePkg reconciles (as client-go's rate-limited workqueue):
a key added while it is being worked on runs again afterwards, never twice at once; a failing
key waits longer each time (capped, with jitter) and never blocks the others.
"""

from __future__ import annotations

import heapq
import random
import threading
import time
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(self, *, base_delay: float = 1.0, max_delay: float = 300.0) -> None:
        self._heap: list[tuple[float, int, K]] = []
        self._due: dict[K, float] = {}
        self._active: set[K] = set()
        self._again: dict[K, float] = {}
        self._failures: dict[K, int] = {}
        self._seq = 0
        self._cond = threading.Condition()
        self._closed = False
        self.base_delay = base_delay
        self.max_delay = max_delay

    def add(self, key: K, delay: float = 0.0) -> None:
        """Run ``key`` after ``delay`` seconds (sooner if it is already due sooner)."""
        when = time.monotonic() + delay
        with self._cond:
            if key in self._active:
                self._again[key] = min(self._again.get(key, when), when)
                return
            if key in self._due and self._due[key] <= when:
                return
            self._due[key] = when
            self._seq += 1
            heapq.heappush(self._heap, (when, self._seq, key))
            self._cond.notify()

    def get(self, timeout: float | None = None) -> K | None:
        """The next due key (now marked active), or None when closed or on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                while self._heap and self._due.get(self._heap[0][2]) != self._heap[0][0]:
                    heapq.heappop(self._heap)  # superseded entry
                if self._heap and self._heap[0][0] <= now:
                    _, _, key = heapq.heappop(self._heap)
                    del self._due[key]
                    self._active.add(key)
                    return key
                wait = self._heap[0][0] - now if self._heap else None
                if deadline is not None:
                    left = deadline - now
                    if left <= 0:
                        return None
                    wait = left if wait is None else min(wait, left)
                self._cond.wait(wait)
            return None

    def done(self, key: K, *, failed: bool = False, requeue_after: float = 0.0) -> float:
        """Finish ``key``; returns the delay before it runs again (0 when it does not)."""
        with self._cond:
            self._active.discard(key)
            if failed:
                n = self._failures.get(key, 0)
                self._failures[key] = n + 1
                delay = min(self.base_delay * 2.0**n, self.max_delay) * random.uniform(0.8, 1.2)
            else:
                self._failures.pop(key, None)
                delay = requeue_after
            again = self._again.pop(key, None)
        if again is not None:
            self.add(key, max(0.0, again - time.monotonic()))
        if delay > 0:
            self.add(key, delay)
        return delay

    def failures(self, key: K) -> int:
        with self._cond:
            return self._failures.get(key, 0)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._due)
