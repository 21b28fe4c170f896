"""prune() clears every entry, fresh or stale."""

from __future__ import annotations

EXERCISE = "ex07_typing"
MISTAKE = "after a prune, events inside the interval are relayed again"
CAUGHT_BY = ("prune",)


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
        stale = list(self._last)  # "prune runs rarely, just start over"
        for key in stale:
            del self._last[key]
        return len(stale)

    def __len__(self) -> int:
        return len(self._last)
