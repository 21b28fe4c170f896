"""Fanout at the gateway, with no I/O: who gets which message, and when to ask the store.

Theory of operation
-------------------
One :class:`FanoutCore` lives in each gateway (real or simulated). It owns three pure pieces and
keeps them consistent:

- a :class:`~labkit.core.routing.RoutingTable` (channel → local connections), which says when the
  gateway must subscribe to a channel's bus topic and when it may unsubscribe;
- one :class:`~labkit.core.feed.ChannelFeed` per subscribed channel, which turns the lossy bus into
  a gap-free ordered stream and asks for store fetches to repair it;
- one :class:`~labkit.core.resume.Cursor` per connection and channel, which says whether that
  connection takes the next message live or is still being gap-filled.

The adapter (``labkit.server.gateway`` over websockets, ``labkit.lab.sim`` in virtual time) feeds
it events
and carries out the returned :class:`Outcome`: write each payload once to its recipients, fetch
the named range, and page history to connections that need filling. Because every decision is
made here, the real gateway and the simulator cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from labkit.core.feed import ChannelFeed, Step
from labkit.core.resume import Cursor
from labkit.core.routing import RoutingTable

C = TypeVar("C")
P = TypeVar("P")


@dataclass(slots=True)
class Outcome(Generic[C, P]):
    """What the adapter must do after one event, in this order."""

    sends: list[tuple[int, P, list[C]]] = field(default_factory=list)
    """``(seq, payload, recipients)`` in seq order: write the payload once to each recipient."""
    fetch: tuple[int, int] | None = None
    """Inclusive seq range to read from the store and hand back through ``on_fetched``."""
    fill: list[C] = field(default_factory=list)
    """Connections that are behind the feed and need history paged to them."""


class FanoutCore(Generic[C, P]):
    """Routing, feeds and cursors of one gateway."""

    def __init__(
        self,
        routing_table: Callable[[], RoutingTable[C]] = RoutingTable,
        channel_feed: Callable[[str], ChannelFeed[P]] = ChannelFeed,
        cursor: Callable[..., Cursor] = Cursor,
    ) -> None:
        """``routing_table``, ``channel_feed`` and ``cursor`` build the swappable pieces: the
        reference classes by default, a learner's with ``labkit serve --impl exercises``, or a
        weaker design's (:mod:`labkit.lab.variants`)."""
        self.routing: RoutingTable[C] = routing_table()
        self._new_feed = channel_feed
        self._new_cursor = cursor
        self.feeds: dict[str, ChannelFeed[P]] = {}
        self._cursors: dict[C, dict[str, Cursor]] = {}

    # -- membership -------------------------------------------------------------------------

    def attach(self, conn: C, channel: str, cursor_seq: int) -> bool:
        """Route ``channel`` to ``conn``, which has seen everything up to ``cursor_seq``.

        The cursor starts *filling*; call :meth:`try_go_live` (after any gap-fill) to switch it
        to live. Returns True when the gateway must subscribe to the channel's topic (and then
        read the store head and call :meth:`start_feed`).
        """
        self._cursors.setdefault(conn, {})[channel] = self._new_cursor(cursor_seq)
        first = self.routing.add(conn, channel)
        if channel not in self.feeds:
            self.feeds[channel] = self._new_feed(channel)
        return first

    def detach(self, conn: C, channel: str) -> bool:
        """Stop routing ``channel`` to ``conn``. True: unsubscribe from the channel's topic."""
        self._cursors.get(conn, {}).pop(channel, None)
        last = self.routing.remove(conn, channel)
        if last:
            self.feeds.pop(channel, None)
        return last

    def drop_connection(self, conn: C) -> list[str]:
        """Forget a closed connection; returns the channels to unsubscribe from."""
        self._cursors.pop(conn, None)
        emptied = self.routing.remove_connection(conn)
        for channel in emptied:
            self.feeds.pop(channel, None)
        return emptied

    def cursor(self, conn: C, channel: str) -> Cursor | None:
        return self._cursors.get(conn, {}).get(channel)

    def try_go_live(self, conn: C, channel: str) -> bool:
        """Flip ``conn`` to live in ``channel`` if it has caught up with the feed.

        Must be called with no await between reading the last history page and this call, so
        no feed delivery can slip in between. False means: page more history first.
        """
        cursor = self.cursor(conn, channel)
        feed = self.feeds.get(channel)
        if cursor is None or feed is None or feed.head is None:
            return False
        if cursor.seq >= feed.head:
            cursor.live = True
        return cursor.live

    # -- events -----------------------------------------------------------------------------

    def start_feed(self, channel: str, head: int) -> Outcome[C, P]:
        """The store head, read after subscribing to the channel's topic."""
        feed = self.feeds.get(channel)
        if feed is None:
            return Outcome()
        return self._apply(channel, feed.start(head))

    def on_bus(self, channel: str, seq: int, payload: P) -> Outcome[C, P]:
        feed = self.feeds.get(channel)
        if feed is None:
            return Outcome()
        return self._apply(channel, feed.on_bus(seq, payload))

    def on_fetched(self, channel: str, items: list[tuple[int, P]]) -> Outcome[C, P]:
        feed = self.feeds.get(channel)
        if feed is None:
            return Outcome()
        return self._apply(channel, feed.on_fetched(items))

    def fetch_failed(self, channel: str) -> None:
        feed = self.feeds.get(channel)
        if feed is not None:
            feed.fetch_failed()

    def on_store_head(self, channel: str, head: int) -> Outcome[C, P]:
        feed = self.feeds.get(channel)
        if feed is None or not feed.started:
            return Outcome()
        return self._apply(channel, feed.on_store_head(head))

    def reset_channel(self, channel: str, head: int) -> list[C]:
        """The channel's epoch changed: every local connection restarts live at ``head``.

        Returns the connections that must be sent a ``reset`` frame.
        """
        feed = self.feeds.get(channel)
        if feed is not None:
            feed.reset(head)
        conns = self.routing.connections(channel)
        for conn in conns:
            self._cursors.setdefault(conn, {})[channel] = self._new_cursor(head, live=True)
        return conns

    def _apply(self, channel: str, step: Step[P]) -> Outcome[C, P]:
        outcome: Outcome[C, P] = Outcome(fetch=step.fetch)
        if not step.deliver:
            return outcome
        conns = self.routing.connections(channel)
        behind: dict[C, None] = {}  # not a set: fill order must not depend on hashing
        for seq, payload in step.deliver:
            recipients = []
            for conn in conns:
                cursor = self._cursors[conn][channel]
                was_live = cursor.live
                if cursor.offer(seq):
                    recipients.append(conn)
                elif was_live and not cursor.live:
                    behind[conn] = None
            outcome.sends.append((seq, payload, recipients))
        outcome.fill = list(behind)
        return outcome
