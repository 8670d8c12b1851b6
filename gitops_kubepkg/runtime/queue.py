"""The one work queue of the controller: keys with due times, one worker per key at a time.

Like client-go's rate-limited workqueue: a key added while it is queued is deduplicated (the
sooner due time wins); a key added while a worker has it runs again right after; a failed key
waits longer each time (doubling from ``base_delay``, capped at ``max_delay``, with +-20%
jitter) and never blocks the others; keys start at most ``qps`` per second (burst ``burst``) so
a relist of thousands of objects does not stampede the API server. Timed polls are just delayed
adds. All times come from an injectable ``Clock``, so tests drive the queue in fake time with
``pop_due``; workers block in ``get``.
"""

from __future__ import annotations

import heapq
import random
import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from gitops_kubepkg.clock import SYSTEM, Clock

K = TypeVar("K", bound=Hashable)


def backoff(failures: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds before retry number ``failures`` (1 = first retry): doubling from ``base``, capped,
    times a jitter in [0.8, 1.2] so keys that failed together do not retry together."""
    if failures <= 0:
        return 0.0
    delay = min(base * 2.0 ** (failures - 1), cap)
    return delay * (rng or random).uniform(0.8, 1.2)


def jitter(interval: float) -> float:
    """How far a timed poll (a Repository's interval) may drift late: a tenth of the interval,
    at most a minute, so polls that started together spread out."""
    return min(interval * 0.1, 60.0)


class WorkQueue(Generic[K]):
    def __init__(
        self,
        *,
        base_delay: float = 1.0,
        max_delay: float = 300.0,
        qps: float = 0.0,
        burst: int = 100,
        clock: Clock = SYSTEM,
        rng: random.Random | None = None,
        on_start: Callable[[K, float], None] | None = None,
    ) -> None:
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
        self.qps = qps
        """Keys started per second at most (0: no limit)."""
        self.burst = burst
        self._tokens = float(burst)
        self._refilled = clock.monotonic()
        self.clock = clock
        self.rng = rng or random.Random()
        self.on_start = on_start
        """Called with each key as a worker takes it and how long it waited past its due time."""

    # -- adding ---------------------------------------------------------------------------------

    def add(self, key: K, delay: float = 0.0) -> None:
        """Run ``key`` after ``delay`` seconds (sooner if it is already due sooner)."""
        when = self.clock.monotonic() + max(0.0, delay)
        with self._cond:
            self._add_locked(key, when)

    def _add_locked(self, key: K, when: float) -> None:
        if key in self._active:
            self._again[key] = min(self._again.get(key, when), when)
            return
        if key in self._due and self._due[key] <= when:
            return
        self._due[key] = when
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, key))
        self._cond.notify()

    def forget(self, key: K) -> None:
        """Drop ``key`` (its object is gone): no pending run, no failure count."""
        with self._cond:
            self._due.pop(key, None)
            self._again.pop(key, None)
            self._failures.pop(key, None)

    # -- taking ---------------------------------------------------------------------------------

    def _take_locked(self, now: float) -> tuple[K | None, float | None]:
        """The next due key (marked active), else None and how long until one may be due."""
        while self._heap and self._due.get(self._heap[0][2]) != self._heap[0][0]:
            heapq.heappop(self._heap)  # superseded entry
        if not self._heap:
            return None, None
        due = self._heap[0][0]
        if due > now:
            return None, due - now
        if self.qps > 0:
            self._tokens = min(float(self.burst), self._tokens + (now - self._refilled) * self.qps)
            self._refilled = now
            if self._tokens < 1.0:
                return None, (1.0 - self._tokens) / self.qps
            self._tokens -= 1.0
        _, _, key = heapq.heappop(self._heap)
        del self._due[key]
        self._active.add(key)
        if self.on_start is not None:
            self.on_start(key, now - due)
        return key, None

    def pop_due(self) -> K | None:
        """The next key that is due now, without waiting (fake-time tests, ``--once``)."""
        with self._cond:
            if self._closed:
                return None
            return self._take_locked(self.clock.monotonic())[0]

    def get(self, timeout: float | None = None) -> K | None:
        """The next due key (now marked active), or None when closed or on timeout."""
        deadline = None if timeout is None else self.clock.monotonic() + timeout
        with self._cond:
            while not self._closed:
                now = self.clock.monotonic()
                key, wait = self._take_locked(now)
                if key is not None:
                    return key
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
                n = self._failures.get(key, 0) + 1
                self._failures[key] = n
                delay = backoff(n, base=self.base_delay, cap=self.max_delay, rng=self.rng)
            else:
                self._failures.pop(key, None)
                delay = requeue_after
            now = self.clock.monotonic()
            again = self._again.pop(key, None)
            if again is not None:
                # A trigger during the pass runs it again now, but never sooner than a backoff.
                self._add_locked(key, max(again, now + delay) if failed else again)
            if delay > 0:
                self._add_locked(key, now + delay)
        return delay

    # -- state ----------------------------------------------------------------------------------

    def failures(self, key: K) -> int:
        with self._cond:
            return self._failures.get(key, 0)

    def active(self) -> set[K]:
        with self._cond:
            return set(self._active)

    def due_in(self, key: K) -> float | None:
        """Seconds until ``key`` is due (None when it is not queued)."""
        with self._cond:
            when = self._due.get(key)
            return None if when is None else when - self.clock.monotonic()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._due)
