"""Exercise 2: the gateway's routing table (channel → local connections).

Task
----
Implement :class:`RoutingTable`, generic over the connection type ``C`` (any hashable object:
a websocket, a simulated connection, a test double). It maps each channel to the connections
*on this gateway* whose user is a member, and each connection to its channels, and it tells the
gateway exactly when to subscribe to a channel's bus topic and when to unsubscribe:

- ``add(conn, channel)`` returns True when ``channel`` just got its *first* local connection
  (subscribe now), False otherwise, including when ``conn`` was already there;
- ``remove(conn, channel)`` returns True when ``channel`` just lost its *last* local connection
  (unsubscribe now), False otherwise, including when ``conn`` was not there;
- ``remove_connection(conn)`` forgets a closed connection and returns the channels it left
  empty; ``add_all(conn, channels)`` adds several and returns those to subscribe to.

The queries: ``connections(channel)`` (oldest first, a copy the caller may keep while the table
changes), ``channels_of(conn)``, ``channels()`` (every channel with a local connection: what the
gateway should be subscribed to), ``has(conn, channel)`` and ``len(table)`` (the number of
connections).

Why
---
Slack's gateways do not receive every message of the workspace: each subscribes only to the
channels its connected users are in. A subscription too many costs every message of that channel
crossing the network for nobody; a subscription too few (or an unsubscribe while someone still
listens) means a member silently hears nothing. The table owns both decisions so the gateway
cannot get them wrong in one of its many code paths (join, leave, close, crash).

Interview angle
---------------
"Design the fanout layer of a chat system": this is the per-gateway half of it, and the follow-up
questions are about cost: how many subscriptions a gateway holds (channels with local members,
not all channels), what happens when a user with 5 tabs closes one (nothing on the bus), and
what the data structure costs per message (a dict lookup, then one write per local member).

Grade it: ``labkit grade ex02``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

C = TypeVar("C")


class RoutingTable(Generic[C]):
    """Channel → local connections, and connection → channels."""

    def __init__(self) -> None:
        raise NotImplementedError("RoutingTable.__init__")

    def add(self, conn: C, channel: str) -> bool:
        """Route ``channel`` to ``conn``. True means: the gateway must subscribe to it."""
        raise NotImplementedError("RoutingTable.add")

    def remove(self, conn: C, channel: str) -> bool:
        """Stop routing ``channel`` to ``conn``. True means: the gateway must unsubscribe."""
        raise NotImplementedError("RoutingTable.remove")

    def remove_connection(self, conn: C) -> list[str]:
        """Forget ``conn`` entirely; returns the channels the gateway must now unsubscribe."""
        raise NotImplementedError("RoutingTable.remove_connection")

    def connections(self, channel: str) -> list[C]:
        """The local connections of ``channel``, oldest first (a copy)."""
        raise NotImplementedError("RoutingTable.connections")

    def channels_of(self, conn: C) -> list[str]:
        """The channels routed to ``conn``."""
        raise NotImplementedError("RoutingTable.channels_of")

    def channels(self) -> list[str]:
        """Every channel with at least one local connection."""
        raise NotImplementedError("RoutingTable.channels")

    def has(self, conn: C, channel: str) -> bool:
        """Whether ``channel`` is routed to ``conn``."""
        raise NotImplementedError("RoutingTable.has")

    def add_all(self, conn: C, channels: Iterable[str]) -> list[str]:
        """Route several channels; returns those the gateway must newly subscribe to."""
        raise NotImplementedError("RoutingTable.add_all")

    def __len__(self) -> int:
        """Number of connections in the table."""
        raise NotImplementedError("RoutingTable.__len__")
