"""Records every event, dropped or not, so the window restarts on each keystroke."""

from __future__ import annotations

EXERCISE = "ex07_typing"
MISTAKE = "a steady typist is starved: dropped keystrokes keep pushing the next relay away"
CAUGHT_BY = ("steady_typist",)


class TypingThrottle:
    def __init__(self, interval_s: float = 2.0) -> None:
        if interval_s < 0:
            raise ValueError(f"interval_s must be >= 0, got {interval_s!r}")
        self.interval_s = interval_s
        self._last: dict[tuple[str, str], float] = {}

    def allow(self, user: str, channel: str, now: float) -> bool:
        key = (user, channel)
        last = self._last.get(key)
        self._last[key] = now  # "remember when they last typed"
        return last is None or now >= last + self.interval_s

    def prune(self, now: float) -> int:
        stale = [key for key, last in self._last.items() if now >= last + self.interval_s]
        for key in stale:
            del self._last[key]
        return len(stale)

    def __len__(self) -> int:
        return len(self._last)
