"""A progress bar without dependencies: one stderr line, rewritten in place.

On a terminal the line is redrawn at most ten times a second; when stderr is not a terminal
(CI logs, tests) only the final state of each bar is printed, so logs stay short.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``with Progress("fanout labkit", total=200) as bar: bar.update(n)``."""

    def __init__(self, label: str, total: float, *, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = max(total, 1e-9)
        self.done = 0.0
        self.note = ""
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self._drawn = 0.0
        self._start = time.monotonic()

    def __enter__(self) -> Progress:
        self._draw(force=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()

    def update(self, done: float, note: str = "") -> None:
        self.done = min(done, self.total)
        if note:
            self.note = note
        self._draw()

    def advance(self, step: float = 1.0, note: str = "") -> None:
        self.update(self.done + step, note)

    def _line(self) -> str:
        width = 24
        frac = self.done / self.total
        filled = int(frac * width)
        bar = "#" * filled + "." * (width - filled)
        elapsed = time.monotonic() - self._start
        note = f"  {self.note}" if self.note else ""
        return f"{self.label:<28} [{bar}] {frac * 100:5.1f}% {elapsed:6.1f}s{note}"

    def _draw(self, force: bool = False) -> None:
        if not self.tty:
            return
        now = time.monotonic()
        if not force and now - self._drawn < 0.1:
            return
        self._drawn = now
        self.stream.write("\r\x1b[2K" + self._line()[:160])
        self.stream.flush()

    def finish(self, note: str = "") -> None:
        if note:
            self.note = note
        line = self._line()[:160]
        if self.tty:
            self.stream.write("\r\x1b[2K" + line + "\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def say(text: str) -> None:
    """A plain status line on stderr (never on stdout, which carries the table)."""
    print(text, file=sys.stderr, flush=True)
