"""Keeps members in a list: a connection added twice leaves a ghost after one removal."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

EXERCISE = "ex02_routing"
MISTAKE = "a repeated add stores the connection twice; one remove leaves a ghost, no unsubscribe"
CAUGHT_BY = ("same_connection_twice",)


class RoutingTable:
    def __init__(self) -> None:
        self._by_channel: dict[str, list[Any]] = {}
        self._by_conn: dict[Any, list[str]] = {}

    def add(self, conn: Any, channel: str) -> bool:
        members = self._by_channel.setdefault(channel, [])
        first = not members
        members.append(conn)
        channels = self._by_conn.setdefault(conn, [])
        if channel not in channels:
            channels.append(channel)
        return first

    def remove(self, conn: Any, channel: str) -> bool:
        channels = self._by_conn.get(conn, [])
        if channel in channels:
            channels.remove(channel)
        if conn in self._by_conn and not channels:
            del self._by_conn[conn]
        members = self._by_channel.get(channel)
        if not members or conn not in members:
            return False
        members.remove(conn)
        if not members:
            del self._by_channel[channel]
            return True
        return False

    def remove_connection(self, conn: Any) -> list[str]:
        return [c for c in list(self._by_conn.get(conn, ())) if self.remove(conn, c)]

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
