"""Typing throttle: at most one relayed ``typing`` event per user and channel per interval (pure).

A client sends ``typing`` on keystrokes, often several a second; every relayed event is a frame
to every other member's connections (PROTOCOL.md, "Ephemeral events"). Relaying one per
``interval_s`` (2 s by default, a setting) keeps the "alice is typing…" indicator alive on
every screen, since clients show it for a few seconds after the last event, at a small fraction
of the fanout. The protocol lets the server drop typing events silently, so a throttled event is
just dropped: no error frame.
"""

from __future__ import annotations


class TypingThrottle:
    """Allow the first ``typing`` of a (user, channel), then at most one per ``interval_s``.

    An event at exactly ``last_allowed + interval_s`` is allowed, so a client typing steadily
    gets one relayed event every ``interval_s``, and any window of ``interval_s`` (half-open)
    holds at most one.

    Memory holds one float per (user, channel) that typed within the last ``interval_s``:
    call :meth:`prune` now and then (the gateway does it on its housekeeping timer). An entry
    older than ``interval_s`` no longer affects any decision, so pruning changes nothing but
    memory.
    """

    def __init__(self, interval_s: float = 2.0) -> None:
        if interval_s < 0:
            raise ValueError(f"interval_s must be >= 0, got {interval_s!r}")
        self.interval_s = interval_s
        self._last: dict[tuple[str, str], float] = {}

    def allow(self, user: str, channel: str, now: float) -> bool:
        """True if this ``typing`` should be relayed (and record it); False to drop it."""
        key = (user, channel)
        last = self._last.get(key)
        if last is not None and now < last + self.interval_s:
            return False
        self._last[key] = now
        return True

    def prune(self, now: float) -> int:
        """Forget entries that can no longer throttle anything; return how many were dropped."""
        stale = [k for k, t in self._last.items() if now >= t + self.interval_s]
        for k in stale:
            del self._last[k]
        return len(stale)

    def __len__(self) -> int:
        """How many (user, channel) pairs are remembered (for tests and metrics)."""
        return len(self._last)
