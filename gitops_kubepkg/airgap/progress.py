"""Progress for long airgap work, on stderr: a bar on a terminal, periodic lines otherwise.

Export and import call ``advance(bytes)`` as bytes stream and ``note(text)`` at milestones; they
never know whether a person or a log file is watching. ``Silent`` is what scripts and tests get.
"""

from __future__ import annotations

import sys
import time
from typing import Protocol, TextIO


class Progress(Protocol):
    def start(self, label: str, total: int) -> None: ...

    def advance(self, n: int) -> None: ...

    def note(self, text: str) -> None: ...

    def done(self) -> None: ...


class Silent:
    def start(self, label: str, total: int) -> None:
        pass

    def advance(self, n: int) -> None:
        pass

    def note(self, text: str) -> None:
        pass

    def done(self) -> None:
        pass


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


class StderrProgress:
    """A redrawn bar when ``out`` is a terminal; a line every ``interval`` seconds otherwise."""

    def __init__(self, out: TextIO | None = None, interval: float = 5.0) -> None:
        self.out = out or sys.stderr
        self.tty = self.out.isatty()
        self.interval = 0.1 if self.tty else interval
        self.label = ""
        self.total = 0
        self.done_bytes = 0
        self._started = time.monotonic()
        self._last = 0.0

    def start(self, label: str, total: int) -> None:
        self.label, self.total, self.done_bytes = label, total, 0
        self._started = time.monotonic()
        self._last = 0.0
        self._draw(force=True)

    def advance(self, n: int) -> None:
        self.done_bytes += n
        self._draw()

    def note(self, text: str) -> None:
        if self.tty:
            self.out.write("\r\x1b[K")
        self.out.write(f"{text}\n")
        self.out.flush()
        self._draw(force=True)

    def done(self) -> None:
        if self.total:
            self.done_bytes = max(self.done_bytes, self.total)
        self._draw(force=True)
        if self.tty:
            self.out.write("\n")
            self.out.flush()

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        if not self.label:
            return
        elapsed = max(now - self._started, 1e-6)
        rate = f"{_human(self.done_bytes / elapsed)}/s"
        if self.total:
            frac = min(self.done_bytes / self.total, 1.0)
            amount = f"{_human(self.done_bytes)}/{_human(self.total)} {frac:4.0%}"
        else:
            frac, amount = 0.0, _human(self.done_bytes)
        if self.tty:
            width = 24
            filled = int(frac * width)
            bar = "#" * filled + "-" * (width - filled) if self.total else ""
            self.out.write(f"\r\x1b[K{self.label} [{bar}] {amount} {rate}")
        else:
            self.out.write(f"{self.label}: {amount} {rate}\n")
        self.out.flush()
