"""Time, injectable: the one place the controller runtime reads a clock.

Everything that waits, backs off, schedules or stamps a time takes a ``Clock`` (default
``SYSTEM``), so tests run queues, backoff, the scheduler and the leader in fake time
(``FakeClock``: time moves only when the test says so). ``timestamp`` is the one RFC 3339
format we write into status, history and events.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (intervals, deadlines)."""
        ...

    def now(self) -> datetime:
        """The wall-clock time, timezone-aware UTC (what we write down)."""
        ...

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Wait until ``event`` is set or ``seconds`` pass; True when the event is set."""
        ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)

    def wait(self, event: threading.Event, seconds: float) -> bool:
        return event.wait(max(0.0, seconds))


SYSTEM: Clock = SystemClock()


class FakeClock:
    """Time that moves only on ``advance``; ``wait`` returns at once (set or not) after moving
    the clock to the end of the wait, so code that sleeps in a loop makes progress."""

    def __init__(self, start: datetime | None = None) -> None:
        self._mono = 1000.0
        self._start = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def now(self) -> datetime:
        with self._lock:
            return self._start + timedelta(seconds=self._mono - 1000.0)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._mono += seconds

    def wait(self, event: threading.Event, seconds: float) -> bool:
        if event.is_set():
            return True
        self.advance(max(0.0, seconds))
        return event.is_set()


def timestamp(moment: datetime) -> str:
    """``2026-01-01T00:00:00Z``: the format of every time we write (status, history, events)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
