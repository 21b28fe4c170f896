"""Announces offline as soon as a connection closes."""

from __future__ import annotations

import heapq

from labkit.core.presence import OFFLINE, ONLINE, Transition

EXERCISE = "ex06_presence"
MISTAKE = "flapping: a phone changing networks shows offline then online to every watcher"
CAUGHT_BY = ("no_flapping", "random")


class PresenceTracker:
    def __init__(self, heartbeat_s: float = 10.0) -> None:
        if heartbeat_s <= 0:
            raise ValueError(f"heartbeat_s must be positive, got {heartbeat_s!r}")
        self.heartbeat_s = heartbeat_s
        self.expiry_s = 3 * heartbeat_s
        self._last: dict[str, float] = {}
        self._online: set[str] = set()
        self._heap: list[tuple[float, str]] = []

    def connect(self, user: str, conn_id: str, now: float) -> list[Transition]:
        return self.heartbeat(user, conn_id, now)

    def heartbeat(self, user: str, conn_id: str, now: float) -> list[Transition]:
        previous = self._last.get(user)
        latest = now if previous is None else max(previous, now)
        self._last[user] = latest
        lapsed = previous is not None and previous + self.expiry_s <= now
        if user in self._online and not lapsed:
            return []
        if user not in self._online:
            self._online.add(user)
            heapq.heappush(self._heap, (latest + self.expiry_s, user))
        return [Transition(user, ONLINE, latest, now)]

    def disconnect(self, user: str, conn_id: str, now: float) -> list[Transition]:
        if user not in self._online:  # "the connection closed: they left"
            return []
        self._online.discard(user)
        return [Transition(user, OFFLINE, self._last[user], now)]

    def expire(self, now: float) -> list[Transition]:
        out: list[Transition] = []
        while self._heap and self._heap[0][0] <= now:
            _, user = heapq.heappop(self._heap)
            if user not in self._online:
                continue
            deadline = self._last[user] + self.expiry_s
            if deadline > now:
                heapq.heappush(self._heap, (deadline, user))
                continue
            self._online.discard(user)
            out.append(Transition(user, OFFLINE, self._last[user], deadline))
        out.sort(key=lambda t: (t.at, t.user))
        return out

    def status(self, user: str, now: float) -> tuple[str, float | None]:
        last = self._last.get(user)
        if last is None:
            return OFFLINE, None
        if user in self._online and now < last + self.expiry_s:
            return ONLINE, last
        return OFFLINE, last

    def online_users(self, now: float) -> set[str]:
        return {u for u in self._online if now < self._last[u] + self.expiry_s}

    def next_deadline(self) -> float | None:
        while self._heap:
            deadline, user = self._heap[0]
            if user not in self._online:
                heapq.heappop(self._heap)
                continue
            actual = self._last[user] + self.expiry_s
            if actual != deadline:
                heapq.heapreplace(self._heap, (actual, user))
                continue
            return deadline
        return None
