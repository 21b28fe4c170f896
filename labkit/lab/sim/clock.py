"""Virtual time: a number advanced by a heap of timers (no sleeps, no asyncio, no sockets).

Every simulated node schedules its next step with :meth:`Scheduler.after` and the run loop
pops the earliest timer, sets :attr:`Scheduler.now` to its time and calls it. Ties are broken by
the order in which the timers were set, so a run depends on nothing but its seed.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any


class Scheduler:
    """The simulated clock and its timers."""

    __slots__ = ("_count", "_heap", "events", "now")

    def __init__(self) -> None:
        self.now = 0.0
        self.events = 0
        """Timers run so far."""
        self._heap: list[tuple[float, int, Callable[..., object], tuple[Any, ...]]] = []
        self._count = itertools.count()

    def at(self, t: float, fn: Callable[..., object], *args: Any) -> None:
        """Call ``fn(*args)`` at virtual time ``t`` (never before ``now``)."""
        heapq.heappush(self._heap, (max(t, self.now), next(self._count), fn, args))

    def after(self, delay: float, fn: Callable[..., object], *args: Any) -> None:
        """Call ``fn(*args)`` ``delay`` virtual seconds from now."""
        heapq.heappush(self._heap, (self.now + delay, next(self._count), fn, args))

    def run(self, until: float) -> None:
        """Run every timer due at or before ``until``; leave ``now == until``."""
        heap = self._heap
        pop = heapq.heappop
        n = 0
        while heap and heap[0][0] <= until:
            t, _, fn, args = pop(heap)
            self.now = t
            fn(*args)
            n += 1
        self.events += n
        self.now = max(self.now, until)

    def pending(self) -> int:
        return len(self._heap)
