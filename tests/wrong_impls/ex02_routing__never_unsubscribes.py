"""Forgets to unsubscribe: ``remove`` drops the member but never reports the channel empty."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

EXERCISE = "ex02_routing"
MISTAKE = "never tells the gateway to unsubscribe, so subscriptions leak"
CAUGHT_BY = ("last_member_unsubscribes", "random_session")


class RoutingTable:
    def __init__(self) -> None:
        self._by_channel: dict[str, dict[Any, None]] = {}
        self._by_conn: dict[Any, dict[str, None]] = {}

    def add(self, conn: Any, channel: str) -> bool:
        members = self._by_channel.setdefault(channel, {})
        first = not members
        members[conn] = None
        self._by_conn.setdefault(conn, {})[channel] = None
        return first

    def remove(self, conn: Any, channel: str) -> bool:
        self._by_channel.get(channel, {}).pop(conn, None)
        self._by_conn.get(conn, {}).pop(channel, None)
        if not self._by_conn.get(conn, True):
            del self._by_conn[conn]
        return False  # the channel may be empty now, but nobody is told

    def remove_connection(self, conn: Any) -> list[str]:
        for channel in list(self._by_conn.get(conn, ())):
            self.remove(conn, channel)
        return []

    def connections(self, channel: str) -> list[Any]:
        return list(self._by_channel.get(channel, ()))

    def channels_of(self, conn: Any) -> list[str]:
        return list(self._by_conn.get(conn, ()))

    def channels(self) -> list[str]:
        return [c for c, members in self._by_channel.items() if members]

    def has(self, conn: Any, channel: str) -> bool:
        return channel in self._by_conn.get(conn, ())

    def add_all(self, conn: Any, channels: Iterable[str]) -> list[str]:
        return [c for c in sorted(set(channels)) if self.add(conn, c)]

    def __len__(self) -> int:
        return len(self._by_conn)
