"""When each repository is polled: its interval with jitter, capped exponential backoff after a
failure, an immediate run on a trigger (webhook, file watcher), and a bounded number at once.

Wraps APScheduler's BackgroundScheduler: one interval job per repository key, run on a thread
pool whose size bounds concurrent syncs. A trigger that arrives while that repository is syncing
is remembered and runs right after, so a push is never lost. ``backoff`` and ``jitter`` are pure.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

log = logging.getLogger(__name__)

BACKOFF_INITIAL = 5.0
BACKOFF_MAX = 300.0


def backoff(failures: int, interval: float, *, initial: float = BACKOFF_INITIAL) -> float:
    """Seconds to wait after ``failures`` failures in a row: doubling, capped.

    Starts below the interval (a failure is retried sooner than a normal poll) and stops at the
    larger of five minutes and the interval.
    """
    if failures <= 0:
        return interval
    first = min(initial, interval)
    cap = max(BACKOFF_MAX, interval)
    return float(min(first * 2 ** (failures - 1), cap))


def jitter(interval: float) -> float:
    """How far a poll may drift late: a tenth of the interval, at most a minute."""
    return min(interval * 0.1, 60.0)


class Schedule:
    """Runs ``run(key) -> bool`` per key; False means failed (back off), True means fine."""

    def __init__(self, run: Callable[[str], bool], *, max_concurrent: int = 4) -> None:
        self._run = run
        self._scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_concurrent)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        self._intervals: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._running: set[str] = set()
        self._pending: set[str] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        self._scheduler.start()

    def shutdown(self) -> None:
        self._scheduler.shutdown(wait=True)

    def scheduled(self) -> set[str]:
        with self._lock:
            return set(self._intervals)

    def failures(self, key: str) -> int:
        with self._lock:
            return self._failures.get(key, 0)

    def set(self, key: str, interval: float) -> None:
        """Poll ``key`` every ``interval`` seconds (first run soon, spread by jitter)."""
        with self._lock:
            if self._intervals.get(key) == interval:
                return
            new = key not in self._intervals
            self._intervals[key] = interval
        trigger = IntervalTrigger(seconds=interval, jitter=jitter(interval) or None)
        if new:
            first = datetime.now().astimezone() + timedelta(
                seconds=random.uniform(0, min(jitter(interval), 1.0))
            )
            self._scheduler.add_job(
                self._job, trigger, args=[key], id=key, next_run_time=first, replace_existing=True
            )
        else:
            self._scheduler.reschedule_job(key, trigger=trigger)

    def remove(self, key: str) -> None:
        with self._lock:
            self._intervals.pop(key, None)
            self._failures.pop(key, None)
            self._pending.discard(key)
        with contextlib.suppress(JobLookupError):
            self._scheduler.remove_job(key)

    def trigger(self, key: str) -> bool:
        """Run ``key`` now (or right after its current run); False when it is not scheduled."""
        with self._lock:
            if key not in self._intervals:
                return False
            if key in self._running:
                self._pending.add(key)
                return True
        try:
            self._scheduler.modify_job(key, next_run_time=datetime.now().astimezone())
        except JobLookupError:
            return False
        return True

    def _job(self, key: str) -> None:
        with self._lock:
            self._running.add(key)
        try:
            while True:
                with self._lock:
                    self._pending.discard(key)
                try:
                    ok = self._run(key)
                except Exception:  # a bug must not kill the schedule of this repository
                    log.exception("sync of %s crashed", key)
                    ok = False
                with self._lock:
                    failures = 0 if ok else self._failures.get(key, 0) + 1
                    self._failures[key] = failures
                    interval = self._intervals.get(key)
                    again = key in self._pending
                if interval is None:
                    return
                if again:
                    continue
                if failures:
                    delay = backoff(failures, interval)
                    with self._lock:
                        if key not in self._intervals:
                            return
                    with contextlib.suppress(JobLookupError):
                        self._scheduler.modify_job(
                            key,
                            next_run_time=datetime.now().astimezone() + timedelta(seconds=delay),
                        )
                return
        finally:
            with self._lock:
                self._running.discard(key)
