"""Exercise 7, solved: the typing throttle.

One number per (user, channel): when its last *relayed* event happened. An event is relayed when
there is none, or when at least ``interval_s`` has passed since it; only relayed events move the
number, so a steady typist is relayed every ``interval_s`` instead of being starved by their own
keystrokes. ``prune`` drops the numbers that can no longer refuse anything (``now >= last +
interval_s``), which bounds memory by the pairs active in the last interval.
"""

from __future__ import annotations


class TypingThrottle:
    def __init__(self, interval_s: float = 2.0) -> None:
        if interval_s < 0:
            raise ValueError(f"interval_s must be >= 0, got {interval_s!r}")
        self.interval_s = interval_s
        self._last: dict[tuple[str, str], float] = {}

    def allow(self, user: str, channel: str, now: float) -> bool:
        key = (user, channel)
        last = self._last.get(key)
        if last is not None and now < last + self.interval_s:
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
