"""Exercise 2, solved: the gateway's routing table.

Two indexes kept in step: channel → connections and connection → channels. Both are dicts used
as ordered sets (``dict[K, None]``): membership tests are O(1) like a set's, and iteration
follows insertion order, so ``connections()`` is oldest first and a seeded simulation iterates
the same way in every process (a ``set`` of strings does not: its order depends on
``PYTHONHASHSEED``).

The two answers the gateway needs fall out of the channel index: ``add`` creates the channel's
entry exactly when it had no local connection (subscribe), and ``remove`` deletes it exactly when
the last one leaves (unsubscribe). A repeated ``add`` or an unknown ``remove`` changes nothing
and so says nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

C = TypeVar("C")


class RoutingTable(Generic[C]):
    """Channel → local connections, and connection → channels."""

    def __init__(self) -> None:
        self._by_channel: dict[str, dict[C, None]] = {}
        self._by_conn: dict[C, dict[str, None]] = {}

    def add(self, conn: C, channel: str) -> bool:
        members = self._by_channel.get(channel)
        first = members is None
        if members is None:
            members = self._by_channel[channel] = {}
        members[conn] = None
        self._by_conn.setdefault(conn, {})[channel] = None
        return first

    def remove(self, conn: C, channel: str) -> bool:
        channels = self._by_conn.get(conn)
        if channels is not None:
            channels.pop(channel, None)
            if not channels:
                del self._by_conn[conn]
        members = self._by_channel.get(channel)
        if members is None or conn not in members:
            return False
        del members[conn]
        if members:
            return False
        del self._by_channel[channel]
        return True

    def remove_connection(self, conn: C) -> list[str]:
        return [ch for ch in list(self._by_conn.get(conn, ())) if self.remove(conn, ch)]

    def connections(self, channel: str) -> list[C]:
        return list(self._by_channel.get(channel, ()))

    def channels_of(self, conn: C) -> list[str]:
        return list(self._by_conn.get(conn, ()))

    def channels(self) -> list[str]:
        return list(self._by_channel)

    def has(self, conn: C, channel: str) -> bool:
        return channel in self._by_conn.get(conn, ())

    def add_all(self, conn: C, channels: Iterable[str]) -> list[str]:
        return [channel for channel in sorted(set(channels)) if self.add(conn, channel)]

    def __len__(self) -> int:
        return len(self._by_conn)
