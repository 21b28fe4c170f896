"""A simulated gateway: the real fanout core, driven by virtual time instead of asyncio.

Theory of operation
-------------------
:class:`SimGateway` is a third adapter around the same pure pieces the real gateway
(``labkit.server.gateway``) wraps: :class:`~labkit.core.fanout.FanoutCore` (routing, feeds,
cursors),
:func:`~labkit.core.resume.plan_resume` and the shared presence tracker. It follows the real
gateway's steps in the same order; each ``await`` there is a store round trip here
(:meth:`SimGateway.store_call`), so the same races exist and the same decisions close them:

- **hello**: read the user's channels; attach the connection to each (not live), subscribe to
  each new channel's topic *then* read its head (``start_feed``); read heads and epochs; send
  ``welcome``; plan each channel's resume; page history until the cursor reaches the feed, then
  go live in the same step.
- **bus message**: the feed orders and repairs; each delivery is written once to its live
  recipients (one timer for the whole batch).
- **every 0.5 s**: read the store heads of subscribed channels (lost tails).
- **crash**: everything in memory is gone; connections drop without a close frame; a restart
  comes back empty.

Every callback that crosses virtual time carries the gateway's *incarnation* and is ignored if
the gateway crashed meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from labkit.core.fanout import FanoutCore, Outcome
from labkit.core.feed import ChannelFeed
from labkit.core.protocol import (
    ChannelInfo,
    Error,
    ErrorCode,
    Joined,
    Left,
    Reset,
    Welcome,
    frame_to_dict,
)
from labkit.lab.sim.network import Link
from labkit.lab.sim.store import CONFLICT, NEW, NOT_MEMBER

if TYPE_CHECKING:
    from labkit.lab.sim.client import SimClient
    from labkit.lab.sim.run import World

R = TypeVar("R")
Frame = dict[str, Any]


class SimConn:
    """One client connection, as both ends see it."""

    __slots__ = (
        "client",
        "client_open",
        "filling",
        "gateway",
        "gw_open",
        "id",
        "last_beat",
        "user",
        "welcomed",
    )

    def __init__(self, conn_id: str, client: SimClient, gateway: SimGateway) -> None:
        self.id = conn_id
        self.client = client
        self.gateway = gateway
        self.user = client.user
        self.gw_open = True
        """The gateway has not seen it close."""
        self.client_open = True
        """The client has not seen it close; frames arriving after that are lost."""
        self.welcomed = False
        self.last_beat = float("-inf")
        self.filling: dict[str, None] = {}

    def __repr__(self) -> str:
        return f"SimConn({self.id}, {self.user})"


def deliver_batch(conns: list[SimConn], frame: Frame) -> None:
    """One fanout write reaching its recipients (the hot path of the whole simulation)."""
    for conn in conns:
        if conn.client_open:
            conn.client.on_message(conn, frame)


class SimGateway:
    """One gateway in virtual time."""

    def __init__(self, world: World, name: str) -> None:
        self.world = world
        self.name = name
        self.alive = True
        self.incarnation = 0
        self.core: FanoutCore[SimConn, Frame] = world.design.make_core()
        self.conns: dict[SimConn, None] = {}
        """Connections accepted and not yet known to be closed."""
        self.epochs: dict[str, str] = {}
        self._starting: dict[str, ChannelFeed[Frame]] = {}
        self._ids = 0
        self.down = Link(world.net_latency, world.rng_net)
        self.stats = {"deliveries": 0, "fills": 0, "fetches": 0, "resets": 0}

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self.later(self.world.config.head_check_s, self._head_check)

    def crash(self) -> None:
        """Die at once: connections dropped without a close frame, memory lost."""
        world = self.world
        self.alive = False
        self.incarnation += 1
        world.bus.drop_subscriber(self)
        for conn in list(self.conns):
            conn.gw_open = False
            conn.client_open = False  # what was in flight is lost with the TCP connection
            world.sched.after(
                world.net_latency.sample(world.rng_net), conn.client.on_closed, conn, 1006, ""
            )
        self.conns.clear()
        self.core = world.design.make_core()
        self.epochs.clear()
        self._starting.clear()
        world.say(self.name, "crashed")

    def restart(self) -> None:
        self.alive = True
        self.world.say(self.name, "restarted (empty)")
        self.start()

    def heal(self) -> None:
        """Back on the bus: look at the store heads at once (the bus client's resync)."""
        if self.alive:
            self._head_check_once()

    # -- plumbing ---------------------------------------------------------------------------

    def later(self, delay: float, fn: Callable[..., object], *args: Any) -> None:
        """A timer that is dropped if the gateway crashes before it fires."""
        self.world.sched.after(delay, self._guard, self.incarnation, fn, args)

    def _guard(self, incarnation: int, fn: Callable[..., object], args: tuple[Any, ...]) -> None:
        if incarnation == self.incarnation and self.alive:
            fn(*args)

    def store_call(self, op: Callable[[], R], then: Callable[[R], object]) -> None:
        """Run ``op`` at the store one latency from now; ``then(result)`` one latency later."""
        world = self.world
        world.sched.after(
            world.store_latency.sample(world.rng_net), self._at_store, self.incarnation, op, then
        )

    def _at_store(self, incarnation: int, op: Callable[[], R], then: Callable[[R], object]) -> None:
        result = op()  # the request reached the store: it happens even if we crash now
        world = self.world
        world.sched.after(
            world.store_latency.sample(world.rng_net), self._guard, incarnation, then, (result,)
        )

    def send(self, conn: SimConn, frame: Frame) -> None:
        self.world.sched.at(
            self.down.arrival(self.world.sched.now), conn.client.on_frame, conn, frame
        )

    def broadcast(self, conns: list[SimConn], frame: Frame) -> None:
        self.stats["deliveries"] += len(conns)
        self.world.sched.at(self.down.arrival(self.world.sched.now), deliver_batch, conns, frame)

    # -- connections ------------------------------------------------------------------------

    def accept(self, client: SimClient) -> SimConn:
        self._ids += 1
        conn = SimConn(f"{self.name}:{self._ids}", client, self)
        self.conns[conn] = None
        return conn

    def receive(self, conn: SimConn, frame: Frame) -> None:
        """A frame from a client arrived."""
        if not self.alive or not conn.gw_open:
            return
        kind = frame["type"]
        if not conn.welcomed:
            if kind == "hello":
                self._on_hello(conn, frame)
            return
        self.heartbeat(conn)
        if kind == "post":
            self._on_post(conn, frame)
        elif kind == "ping":
            pong: Frame = {"type": "pong"}
            if "id" in frame:
                pong["id"] = frame["id"]
            self.send(conn, pong)
        elif kind == "join":
            self._on_join(conn, frame)
        elif kind == "leave":
            self._on_leave(conn, frame)

    def closed_by_client(self, conn: SimConn) -> None:
        """The gateway notices that a connection was cut."""
        if not self.alive or not conn.gw_open:
            return
        conn.gw_open = False
        self.conns.pop(conn, None)
        for channel in self.core.drop_connection(conn):
            self._unsubscribe(channel)
        if conn.welcomed:
            world = self.world
            world.on_presence(world.presence.disconnect(conn.user, conn.id, world.sched.now))

    def heartbeat(self, conn: SimConn) -> None:
        """Any frame is a heartbeat; shared presence hears of it at most once a second."""
        world = self.world
        now = world.sched.now
        if now - conn.last_beat < 1.0:
            return
        conn.last_beat = now
        world.on_presence(world.presence.heartbeat(conn.user, conn.id, now))

    # -- hello ------------------------------------------------------------------------------

    def _on_hello(self, conn: SimConn, hello: Frame) -> None:
        store = self.world.store
        user = conn.user
        if self.world.design.history_first:

            def read() -> tuple[list[str], dict[str, tuple[int, str]]]:
                channels = store.channels_of(user)
                return channels, store.states(channels)  # before subscribing: the race

            self.store_call(read, lambda got: self._welcome(conn, hello, got[0], got[1]))
            return
        self.store_call(
            lambda: store.channels_of(user), lambda chans: self._attach_all(conn, hello, chans)
        )

    def _attach_all(self, conn: SimConn, hello: Frame, channels: list[str]) -> None:
        if not conn.gw_open:
            return
        for channel in channels:
            self.core.attach(conn, channel, 0)
        for channel in channels:
            self._ensure_channel(channel)
        store = self.world.store
        self.store_call(
            lambda: store.states(channels),
            lambda states: self._welcome(conn, hello, channels, states),
        )

    def _welcome(
        self,
        conn: SimConn,
        hello: Frame,
        channels: list[str],
        states: dict[str, tuple[int, str]],
    ) -> None:
        if not conn.gw_open:
            return
        world = self.world
        infos = {ch: ChannelInfo(head, epoch) for ch, (head, epoch) in states.items()}
        welcome = Welcome(conn.user, self.name, world.config.heartbeat_s, infos)
        self.send(conn, frame_to_dict(welcome))
        conn.welcomed = True
        self.heartbeat(conn)
        last_seen: dict[str, int] = hello.get("last_seen") or {}
        epochs: dict[str, str] = hello.get("epochs") or {}
        for channel in sorted(set(last_seen) - set(channels)):
            error = Error(ErrorCode.NOT_MEMBER, f"{conn.user} is not a member of #{channel}")
            self.send(conn, frame_to_dict(error))
        design = world.design
        for channel in channels:
            head, epoch = states[channel]
            plan = design.plan(channel, head, epoch, last_seen.get(channel), epochs.get(channel))
            if plan.reset_reason is not None:
                self.stats["resets"] += 1
                self.world.say(
                    self.name, f"resets {conn.client.name} #{channel} ({plan.reset_reason})"
                )
                self.send(conn, frame_to_dict(Reset(channel, head, epoch, plan.reset_reason)))
            if design.history_first:
                self._history_then_attach(conn, channel, plan.cursor, head)
                continue
            cursor = self.core.cursor(conn, channel)
            if cursor is None:
                continue
            cursor.seq = plan.cursor
            self.resume(conn, channel)

    # -- channels ---------------------------------------------------------------------------

    def _ensure_channel(self, channel: str) -> None:
        """Subscribe to the channel's topic (if not yet), *then* read its head."""
        bus = self.world.bus
        if not bus.is_subscribed(self, channel):
            bus.subscribe(self, channel)
        feed = self.core.feeds.get(channel)
        if feed is None or feed.started or self._starting.get(channel) is feed:
            return
        self._starting[channel] = feed
        store = self.world.store
        self.store_call(
            lambda: store.states([channel])[channel],
            lambda st: self._on_start_head(channel, feed, st),
        )

    def _on_start_head(self, channel: str, feed: ChannelFeed[Frame], st: tuple[int, str]) -> None:
        if self._starting.get(channel) is feed:
            del self._starting[channel]
        if self.core.feeds.get(channel) is not feed or feed.started:
            return
        self.epochs[channel] = st[1]
        self.apply(channel, self.core.start_feed(channel, st[0]))

    def _unsubscribe(self, channel: str) -> None:
        self.world.bus.unsubscribe(self, channel)
        self._starting.pop(channel, None)
        self.epochs.pop(channel, None)

    def resume(self, conn: SimConn, channel: str) -> None:
        """Page history to ``conn`` until its cursor reaches the feed, then go live."""
        if channel in conn.filling:
            return
        conn.filling[channel] = None
        self._resume_step(conn, channel)

    def _resume_step(self, conn: SimConn, channel: str) -> None:
        core = self.core
        cursor = core.cursor(conn, channel)
        if not conn.gw_open or cursor is None or core.try_go_live(conn, channel):
            conn.filling.pop(channel, None)
            return
        feed = core.feeds.get(channel)
        if feed is None or not feed.started:
            self.later(self.world.config.head_check_s, self._resume_step, conn, channel)
            return
        store = self.world.store
        after, limit = cursor.seq, self.world.config.fill_page
        self.store_call(
            lambda: store.history(channel, after, limit),
            lambda page: self._on_page(conn, channel, page),
        )

    def _on_page(self, conn: SimConn, channel: str, page: list[Frame]) -> None:
        cursor = self.core.cursor(conn, channel)
        if not conn.gw_open or cursor is None:
            conn.filling.pop(channel, None)
            return
        if not page:
            self.later(self.world.config.head_check_s, self._resume_step, conn, channel)
            return
        fresh = [frame for frame in page if cursor.filled(frame["seq"])]
        if fresh:
            self.stats["fills"] += len(fresh)
            self.world.say(
                self.name,
                f"gap-fills {conn.client.name} #{channel} {fresh[0]['seq']}..{fresh[-1]['seq']}",
            )
            self._send_many(conn, fresh)
        # No store round trip between the last page and this: nothing can slip in between.
        self._resume_step(conn, channel)

    def _send_many(self, conn: SimConn, frames: list[Frame]) -> None:
        self.world.sched.at(self.down.arrival(self.world.sched.now), _deliver_many, conn, frames)

    def _history_then_attach(self, conn: SimConn, channel: str, seq: int, upto: int) -> None:
        """The ``history_before_subscribe`` variant: history up to ``upto`` first, then attach."""
        if not conn.gw_open:
            return
        if seq >= upto:
            self._attach_live(conn, channel, seq, upto)
            return
        store = self.world.store
        limit = self.world.config.fill_page

        def on_page(page: list[Frame]) -> None:
            if not conn.gw_open:
                return
            sent = [f for f in page if seq < f["seq"] <= upto]
            if sent:
                self._send_many(conn, sent)
            if not sent or sent[-1]["seq"] >= upto:
                self._attach_live(conn, channel, sent[-1]["seq"] if sent else upto, upto)
            else:
                self._history_then_attach(conn, channel, sent[-1]["seq"], upto)

        self.store_call(lambda: store.history(channel, seq, limit), on_page)

    def _attach_live(self, conn: SimConn, channel: str, seq: int, head: int) -> None:
        if not conn.gw_open or self.core.cursor(conn, channel) is not None:
            return
        if self.core.attach(conn, channel, seq):
            self.world.bus.subscribe(self, channel)  # after the head was read: the race
            self.epochs[channel] = self.world.store.epoch
            self.apply(channel, self.core.start_feed(channel, head))
        self.resume(conn, channel)

    # -- requests ---------------------------------------------------------------------------

    def _on_post(self, conn: SimConn, frame: Frame) -> None:
        world = self.world
        store = world.store
        sched = world.sched
        channel, user, post_id, text = frame["channel"], conn.user, frame["id"], frame["text"]
        if not world.design.read_then_write:
            self.store_call(
                lambda: store.append(channel, user, post_id, text, sched.now),
                lambda got: self._posted(conn, post_id, channel, got),
            )
            return

        def step1() -> tuple[str, Frame | None, int]:
            verdict, stored = store.check_post(channel, user, post_id, text)
            return verdict, stored, store.read_head(channel)

        def step2(got: tuple[str, Frame | None, int]) -> None:
            verdict, stored, head = got
            if verdict != NEW:
                self._posted(conn, post_id, channel, (verdict, stored))
                return
            gap = world.rw_gap.sample(world.rng_net)
            self.later(
                gap,
                self.store_call,
                lambda: store.write_at(channel, head + 1, user, post_id, text, sched.now),
                lambda got2: self._posted(conn, post_id, channel, got2),
            )

        self.store_call(step1, step2)

    def _posted(
        self, conn: SimConn, post_id: str, channel: str, got: tuple[str, Frame | None]
    ) -> None:
        verdict, stored = got
        if stored is not None:
            seq = stored["seq"]
            if verdict == NEW:
                self.world.say(
                    self.name, f"stored {conn.user}'s post {post_id} as #{channel} seq {seq}"
                )
            self.world.bus.publish(channel, seq, stored)
            if conn.gw_open:
                self.send(
                    conn,
                    {
                        "type": "ack",
                        "id": post_id,
                        "channel": channel,
                        "seq": seq,
                        "ts": stored["ts"],
                    },
                )
            return
        if not conn.gw_open:
            return
        if verdict == NOT_MEMBER:
            error = Error(
                ErrorCode.NOT_MEMBER,
                f"{conn.user} is not a member of #{channel}; join it first",
                post_id,
            )
        else:
            assert verdict == CONFLICT
            error = Error(
                ErrorCode.INVALID,
                f"post id {post_id!r} was already used for a different channel or text",
                post_id,
            )
        self.send(conn, frame_to_dict(error))

    def _on_join(self, conn: SimConn, frame: Frame) -> None:
        store = self.world.store
        user, channel, request_id = conn.user, frame["channel"], frame["id"]
        self.store_call(
            lambda: (store.join(user, channel), store.states([channel])[channel]),
            lambda got: self._joined(conn, channel, request_id, got[1]),
        )

    def _joined(self, conn: SimConn, channel: str, request_id: str, st: tuple[int, str]) -> None:
        if not conn.gw_open:
            return
        head, epoch = st
        self.world.say(self.name, f"{conn.client.name} joined #{channel} at head {head}")
        self.send(conn, frame_to_dict(Joined(channel, head, epoch, request_id)))
        if self.core.cursor(conn, channel) is not None:
            return
        if self.world.design.history_first:
            self._attach_live(conn, channel, head, head)
            return
        self.core.attach(conn, channel, head)
        self._ensure_channel(channel)
        self.resume(conn, channel)

    def _on_leave(self, conn: SimConn, frame: Frame) -> None:
        store = self.world.store
        user, channel, request_id = conn.user, frame["channel"], frame["id"]

        def left(_: bool) -> None:
            if not conn.gw_open:
                return
            self.world.say(self.name, f"{conn.client.name} left #{channel}")
            if self.core.detach(conn, channel):
                self._unsubscribe(channel)
            self.send(conn, frame_to_dict(Left(channel, request_id)))

        self.store_call(lambda: store.leave(user, channel), left)

    # -- the bus and the store heads --------------------------------------------------------

    def on_bus(self, channel: str, seq: int, frame: Frame) -> None:
        if self.alive:
            self.apply(channel, self.core.on_bus(channel, seq, frame))

    def apply(self, channel: str, outcome: Outcome[SimConn, Frame]) -> None:
        """Carry out the fanout core's decision: write, then fetch, then fill."""
        for _seq, frame, recipients in outcome.sends:
            if recipients:
                self.broadcast(recipients, frame)
        if outcome.fetch is not None:
            first, last = outcome.fetch
            feed = self.core.feeds.get(channel)
            store = self.world.store
            self.stats["fetches"] += 1
            self.world.say(self.name, f"fetches #{channel} {first}..{last} from the store")
            self.store_call(
                lambda: store.history_range(channel, first, last),
                lambda items: self._on_fetched(channel, feed, items),
            )
        for conn in outcome.fill:
            self.resume(conn, channel)

    def _on_fetched(
        self, channel: str, feed: ChannelFeed[Frame] | None, items: list[Frame]
    ) -> None:
        if feed is None or self.core.feeds.get(channel) is not feed:
            return
        if not items:
            self.core.fetch_failed(channel)
            return
        self.apply(channel, self.core.on_fetched(channel, [(f["seq"], f) for f in items]))

    def _head_check(self) -> None:
        self.later(self.world.config.head_check_s, self._head_check)
        self._head_check_once()

    def _head_check_once(self) -> None:
        channels = list(self.core.feeds)
        if not channels:
            return
        store = self.world.store
        self.store_call(lambda: store.states(channels), self._on_heads)

    def _on_heads(self, states: dict[str, tuple[int, str]]) -> None:
        core = self.core
        for channel, (head, epoch) in states.items():
            feed = core.feeds.get(channel)
            if feed is None:
                continue
            if not feed.started:
                self.epochs[channel] = epoch
                self.apply(channel, core.start_feed(channel, head))
            elif self.epochs.get(channel, epoch) != epoch:
                self.epochs[channel] = epoch
                frame = frame_to_dict(Reset(channel, head, epoch, "epoch_changed"))
                for conn in core.reset_channel(channel, head):
                    if conn.welcomed:
                        self.stats["resets"] += 1
                        self.send(conn, frame)
            else:
                self.apply(channel, core.on_store_head(channel, head))


def _deliver_many(conn: SimConn, frames: list[Frame]) -> None:
    """A page of gap-fill reaching one connection, in order."""
    client = conn.client
    for frame in frames:
        if not conn.client_open:
            return
        client.on_message(conn, frame)
