"""Tracks a deadline per connection and announces the user offline when any of them expires."""

from __future__ import annotations

from labkit.core.presence import OFFLINE, ONLINE, Transition

EXERCISE = "ex06_presence"
MISTAKE = "one quiet device takes the user offline although another device keeps heartbeating"
CAUGHT_BY = ("multi_device",)


class PresenceTracker:
    def __init__(self, heartbeat_s: float = 10.0) -> None:
        self.heartbeat_s = heartbeat_s
        self.expiry_s = 3 * heartbeat_s
        self._conns: dict[tuple[str, str], float] = {}
        self._last: dict[str, float] = {}
        self._online: set[str] = set()

    def connect(self, user: str, conn_id: str, now: float) -> list[Transition]:
        return self.heartbeat(user, conn_id, now)

    def heartbeat(self, user: str, conn_id: str, now: float) -> list[Transition]:
        self._conns[(user, conn_id)] = now
        self._last[user] = max(self._last.get(user, now), now)
        if user in self._online:
            return []
        self._online.add(user)
        return [Transition(user, ONLINE, now, now)]

    def disconnect(self, user: str, conn_id: str, now: float) -> list[Transition]:
        return []

    def expire(self, now: float) -> list[Transition]:
        out = []
        for (user, conn_id), seen in sorted(self._conns.items(), key=lambda kv: kv[1]):
            if seen + self.expiry_s <= now:
                del self._conns[(user, conn_id)]
                if user in self._online:  # "this connection timed out, so did its user"
                    self._online.discard(user)
                    out.append(Transition(user, OFFLINE, self._last[user], seen + self.expiry_s))
        return out

    def status(self, user: str, now: float) -> tuple[str, float | None]:
        last = self._last.get(user)
        if last is None:
            return OFFLINE, None
        return (ONLINE if user in self._online else OFFLINE), last

    def online_users(self, now: float) -> set[str]:
        return set(self._online)

    def next_deadline(self) -> float | None:
        live = [seen + self.expiry_s for (u, _), seen in self._conns.items() if u in self._online]
        return min(live, default=None)
