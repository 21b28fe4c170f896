"""Relays only after strictly more than the interval (> instead of >=)."""

from __future__ import annotations

EXERCISE = "ex07_typing"
MISTAKE = "off by one at the boundary: a steady typist at exactly one interval is dropped"
CAUGHT_BY = ("exact_interval",)


class TypingThrottle:
    def __init__(self, interval_s: float = 2.0) -> None:
        if interval_s < 0:
            raise ValueError(f"interval_s must be >= 0, got {interval_s!r}")
        self.interval_s = interval_s
        self._last: dict[tuple[str, str], float] = {}

    def allow(self, user: str, channel: str, now: float) -> bool:
        key = (user, channel)
        last = self._last.get(key)
        if last is not None and now <= last + self.interval_s:
            return False
        self._last[key] = now
        return True

    def prune(self, now: float) -> int:
        stale = [key for key, last in self._last.items() if now >= last + self.interval_s]
        for key in stale:
            del self._last[key]
        return len(stale)

    def __len__(self) -> int:
        return len(self._last)
