"""Feed and repair: a channel's messages from the bus to its local members, gap-free.

Rules (PROTOCOL.md, "Guarantees" 1–3, and docs/architecture.md, "Repair"):

* **Subscribe, then read the head.** A channel's feed starts from the store head read *after*
  the gateway subscribed to its topic, so nothing published in between is lost.
* **Bus loss.** The feed orders each message by seq; a hole is fetched from the store
  (:class:`~labkit.core.gateway.events.ReadRange`) and merged. A fetch answered after the channel
  was reset or re-created is stale and dropped.
* **Lost tail.** Every ``head_check_s`` the store heads of all subscribed channels are read; a
  head above the feed is fetched. A feed whose first head read failed starts here.
* **Epoch.** A head check that sees a new epoch resets the channel: every local member gets
  ``reset`` (``epoch_changed``) and continues live from the new head. Every history read
  carries the epoch it was read in; a read from a newer epoch is never delivered as the old
  one's and starts a head check at once.
* **Encode once.** Each message is written once, as stored, to all its live recipients.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from labkit.core import protocol as p
from labkit.core.fanout import Outcome
from labkit.core.gateway.bus_payloads import ChannelMessage
from labkit.core.gateway.events import Broadcast, ConnId, ReadRange, ReadStates
from labkit.core.gateway.state import ConnState, GatewayState

Fill = Callable[[ConnState, str], None]


class Channels:
    """The feed-and-repair part of the gateway machine."""

    def __init__(self, st: GatewayState, fill: Fill) -> None:
        self.st = st
        self.fill = fill
        self.next_head_check = 0.0

    # -- channel lifecycle --------------------------------------------------------------------

    def ensure(self, channel: str) -> None:
        """Subscribe to the channel's topic (if not yet), *then* read its head."""
        st = self.st
        st.subscribe(channel)
        feed = st.core.feeds.get(channel)
        if feed is None or feed.started or st.starting.get(channel) is feed:
            return
        st.starting[channel] = feed

        def started(states: Any, error: str | None) -> None:
            if st.starting.get(channel) is feed:
                del st.starting[channel]
            if error is not None or st.core.feeds.get(channel) is not feed or feed.started:
                return  # a failed read is retried by the next head check
            head, epoch = states[channel]
            st.epochs[channel] = epoch
            self.apply(channel, st.core.start_feed(channel, head))

        st.request(ReadStates((channel,)), started)

    def start_at(self, channel: str, head: int, epoch: str) -> None:
        """Start a feed from a head read *before* subscribing (the weaker design only)."""
        st = self.st
        st.subscribe(channel)
        st.epochs[channel] = epoch
        self.apply(channel, st.core.start_feed(channel, head))

    def detach(self, conn: ConnState, channel: str) -> None:
        if self.st.core.detach(conn.id, channel):
            self.st.unsubscribe(channel)

    def drop(self, conn: ConnState) -> None:
        for channel in self.st.core.drop_connection(conn.id):
            self.st.unsubscribe(channel)

    # -- the bus ------------------------------------------------------------------------------

    def on_message(self, msg: ChannelMessage) -> None:
        self.apply(msg.channel, self.st.core.on_bus(msg.channel, msg.seq, msg.raw))

    def apply(self, channel: str, outcome: Outcome[ConnId, str]) -> None:
        """Carry out the fanout core's decision: write, then fetch, then fill (in that order,
        so a connection that fell behind is paged only after the live write it missed)."""
        st = self.st
        for _seq, raw, recipients in outcome.sends:
            if recipients:  # routed connections are all live: a closing one left the table
                st.stats["deliveries"] += len(recipients)
                st.out.add(Broadcast(tuple(recipients), raw))
        if outcome.fetch is not None:
            self._fetch(channel, *outcome.fetch)
        for conn_id in outcome.fill:
            conn = st.conns.get(conn_id)
            if conn is not None:
                self.fill(conn, channel)

    def _fetch(self, channel: str, first: int, last: int) -> None:
        st = self.st
        feed = st.core.feeds.get(channel)
        epoch = st.epochs.get(channel)
        st.stats["fetches"] += 1

        def fetched(result: Any, error: str | None) -> None:
            if st.core.feeds.get(channel) is not feed or st.epochs.get(channel) != epoch:
                return  # reset or re-created meanwhile: these seqs belong to another history
            if error is not None:
                st.core.fetch_failed(channel)  # the head check looks again
                return
            read_epoch, items = result
            if read_epoch != epoch:
                # The history was lost and restarted since this gateway last looked: these
                # seqs are the new epoch's. Never deliver them as the old one's; look now.
                st.core.fetch_failed(channel)
                self.check_heads()
                return
            if not items:
                st.core.fetch_failed(channel)
                return
            self.apply(channel, st.core.on_fetched(channel, list(items)))

        st.request(ReadRange(channel, first, last), fetched)

    # -- head checks --------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        if now >= self.next_head_check:
            self.next_head_check = now + self.st.config.head_check_s
            self.check_heads()

    def check_heads(self) -> None:
        """Read every subscribed channel's head and epoch (lost tails, late starts, epochs)."""
        channels = tuple(self.st.core.feeds)
        if channels:
            self.st.request(ReadStates(channels), self._on_heads)

    def _on_heads(self, states: Any, error: str | None) -> None:
        if error is not None:
            return
        st = self.st
        for channel, (head, epoch) in states.items():
            feed = st.core.feeds.get(channel)
            if feed is None:
                continue
            if not feed.started:
                st.epochs[channel] = epoch
                self.apply(channel, st.core.start_feed(channel, head))
            elif channel not in st.epochs:
                st.epochs[channel] = epoch  # a feed started without one adopts the first read
                self.apply(channel, st.core.on_store_head(channel, head))
            elif st.epochs[channel] != epoch:
                self._reset(channel, head, epoch)
            else:
                self.apply(channel, st.core.on_store_head(channel, head))

    def _reset(self, channel: str, head: int, epoch: str) -> None:
        """The channel's history was lost (new epoch): everyone here restarts at ``head``."""
        st = self.st
        st.epochs[channel] = epoch
        frame = p.encode(p.Reset(channel, head, epoch, "epoch_changed"))
        conns = st.live_conns(st.core.reset_channel(channel, head))
        st.stats["resets"] += len(conns)
        st.broadcast(conns, frame)
