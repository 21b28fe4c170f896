"""``remove_connection`` forgets the connection's own entry but not the channels' member lists."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

EXERCISE = "ex02_routing"
MISTAKE = (
    "a closed connection stays a member of its channels: no unsubscribe, and writes to a dead"
    " socket"
)
CAUGHT_BY = ("remove_connection", "random_session")


class RoutingTable:
    def __init__(self) -> None:
        self._by_channel: dict[str, dict[Any, None]] = {}
        self._by_conn: dict[Any, dict[str, None]] = {}

    def add(self, conn: Any, channel: str) -> bool:
        members = self._by_channel.get(channel)
        first = members is None
        self._by_channel.setdefault(channel, {})[conn] = None
        self._by_conn.setdefault(conn, {})[channel] = None
        return first

    def remove(self, conn: Any, channel: str) -> bool:
        self._by_conn.get(conn, {}).pop(channel, None)
        if conn in self._by_conn and not self._by_conn[conn]:
            del self._by_conn[conn]
        members = self._by_channel.get(channel)
        if members is None or conn not in members:
            return False
        del members[conn]
        if not members:
            del self._by_channel[channel]
            return True
        return False

    def remove_connection(self, conn: Any) -> list[str]:
        self._by_conn.pop(conn, None)
        return []

    def connections(self, channel: str) -> list[Any]:
        return list(self._by_channel.get(channel, ()))

    def channels_of(self, conn: Any) -> list[str]:
        return list(self._by_conn.get(conn, ()))

    def channels(self) -> list[str]:
        return list(self._by_channel)

    def has(self, conn: Any, channel: str) -> bool:
        return channel in self._by_conn.get(conn, ())

    def add_all(self, conn: Any, channels: Iterable[str]) -> list[str]:
        return [c for c in sorted(set(channels)) if self.add(conn, c)]

    def __len__(self) -> int:
        return len(self._by_conn)
