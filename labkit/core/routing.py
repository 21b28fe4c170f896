"""The gateway's routing table: which local connections belong to which channel.

Theory of operation
-------------------
A gateway holds connections; each connection's user is a member of some channels. The message
bus delivers a channel's messages only to gateways subscribed to that channel, so a gateway
must subscribe when its *first* local connection of a channel appears and unsubscribe when the
*last* one goes. This class keeps the map and tells its caller exactly when those two moments
happen; the caller (the gateway adapter, the simulator, a learner's exercise) does the I/O.

It is generic over the connection type ``C`` so the same table serves real websockets
connections, simulated ones and test doubles.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

C = TypeVar("C")


class RoutingTable(Generic[C]):
    """Channel → local connections, and connection → channels.

    ``add`` returns True when the channel just gained its first local connection (subscribe
    now); ``remove`` returns True when it just lost its last one (unsubscribe now).
    """

    def __init__(self) -> None:
        # dicts, not sets: insertion order makes every iteration deterministic, which the
        # seeded simulator relies on (set order of strings changes with PYTHONHASHSEED).
        self._by_channel: dict[str, dict[C, None]] = {}
        self._by_conn: dict[C, dict[str, None]] = {}

    def add(self, conn: C, channel: str) -> bool:
        """Route ``channel`` to ``conn``. True means: the gateway must subscribe to it."""
        members = self._by_channel.get(channel)
        first = members is None
        if members is None:
            members = self._by_channel[channel] = {}
        members[conn] = None
        self._by_conn.setdefault(conn, {})[channel] = None
        return first

    def remove(self, conn: C, channel: str) -> bool:
        """Stop routing ``channel`` to ``conn``. True means: the gateway must unsubscribe."""
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
        """Forget ``conn`` entirely; returns the channels the gateway must now unsubscribe."""
        emptied = []
        for channel in list(self._by_conn.get(conn, {})):
            if self.remove(conn, channel):
                emptied.append(channel)
        self._by_conn.pop(conn, None)
        return emptied

    def connections(self, channel: str) -> list[C]:
        """The local connections of ``channel``, oldest first (a copy: safe while changing)."""
        return list(self._by_channel.get(channel, ()))

    def channels_of(self, conn: C) -> list[str]:
        return list(self._by_conn.get(conn, ()))

    def channels(self) -> list[str]:
        """Every channel with at least one local connection: what the gateway is subscribed to."""
        return list(self._by_channel)

    def has(self, conn: C, channel: str) -> bool:
        return channel in self._by_conn.get(conn, ())

    def add_all(self, conn: C, channels: Iterable[str]) -> list[str]:
        """Route several channels; returns those the gateway must newly subscribe to."""
        return [channel for channel in sorted(channels) if self.add(conn, channel)]

    def __len__(self) -> int:
        """Number of connections in the table."""
        return len(self._by_conn)
