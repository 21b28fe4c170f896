"""A connection gateway: the websockets adapter around the pure fanout core.

Theory of operation
-------------------
A gateway terminates WebSocket connections at ``/ws`` and holds no business state of its own
beyond what is in memory: every decision about who gets which message is made by
:class:`~labkit.core.fanout.FanoutCore`; this module moves bytes and time in and out of it.

* **Connect.** The first frame must be a valid ``hello`` within ``hello_timeout_s``; otherwise
  ``error unauthorized`` and close 4001. After the token is verified, the connection is attached
  to each of its user's channels (subscribing the gateway to a channel's bus topic on its first
  local member), ``welcome`` is sent, and each channel is resumed as
  :func:`~labkit.core.resume.plan_resume` decides: ``reset``, or gap-fill paged from the store at
  the
  pace the connection reads, then live.
* **Fanout.** A bus message is parsed once per gateway, ordered and repaired by the channel's
  feed, and its already-encoded text is written once to every live local recipient with
  ``websockets.broadcast`` (no per-recipient encoding, no awaiting a slow reader). A recipient
  whose write buffer passes ``max_buffer_bytes`` is closed with 4008.
* **Repair.** Every ``head_check_s`` the gateway reads the store heads of its channels: a lost
  tail is fetched, a changed epoch resets the channel for every local member.
* **Time.** ``clock`` gives the time stamps; the periodic loops are the only timers.

Client frames after ``welcome`` are handled by :mod:`labkit.server.session`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from labkit.core import protocol as p
from labkit.core.auth import TokenError, verify_token
from labkit.core.fanout import FanoutCore, Outcome
from labkit.core.ratelimit import RateLimiter
from labkit.core.resume import ResumePlan, plan_resume
from labkit.core.typing_throttle import TypingThrottle
from labkit.server.message_server import MessageServer
from labkit.server.redis.bus import CONTROL_TOPIC, PRESENCE_TOPIC, Bus, channel_topic, topic_channel
from labkit.server.redis.directory import Directory
from labkit.server.redis.presence_store import PresenceStore, decode_transition, encode_transition
from labkit.server.redis.store import ChannelState, Store, StoreUnavailable

log = logging.getLogger(__name__)

CLOSE_UNAUTHORIZED = 4001
CLOSE_SILENT = 4002
CLOSE_SLOW_CONSUMER = 4008
CLOSE_SERVICE_RESTART = 1012
CLOSE_TRY_AGAIN_LATER = 1013


@dataclass(slots=True)
class GatewayConfig:
    """Everything a gateway can be tuned with; the defaults follow PROTOCOL.md."""

    name: str = "gw-1"
    host: str = "127.0.0.1"
    port: int = 0
    """0 picks a free port; read the chosen one from ``Gateway.port``."""
    heartbeat_s: float = 10.0
    hello_timeout_s: float = 5.0
    max_frame_bytes: int = 64 * 1024
    max_buffer_bytes: int = 1024 * 1024
    """Outgoing bytes a connection may have queued before it is a slow consumer (4008)."""
    head_check_s: float = 0.5
    fill_page: int = 200
    rate_per_s: float = 50.0
    rate_burst: float = 100.0
    typing_interval_s: float = 2.0
    backlog: int = 2048


@dataclass(eq=False, slots=True)
class Conn:
    """One client connection as the gateway sees it (hashed by identity)."""

    id: str
    ws: ServerConnection
    user: str = ""
    welcomed: bool = False
    closing: bool = False
    last_heard: float = 0.0
    last_presence_beat: float = float("-inf")
    presence_users: frozenset[str] = frozenset()
    digest: Any = None
    filling: set[str] = field(default_factory=set)
    held_control: list[dict[str, Any]] | None = field(default_factory=list)
    """Membership changes of the user that arrived while this connection was being welcomed,
    applied in order once it is; None from then on."""

    def buffered(self) -> int:
        transport = self.ws.transport
        return transport.get_write_buffer_size() if transport is not None else 0


class Gateway:
    """One gateway: a websockets server, a bus subscription set and a fanout core."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        store: Store,
        directory: Directory,
        bus: Bus,
        secret: str,
        presence: PresenceStore,
        clock: Callable[[], float] = time.time,
        core: FanoutCore[Conn, str] | None = None,
        typing_throttle: TypingThrottle | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.store = store
        self.directory = directory
        self.bus = bus
        self.secret = secret
        self.presence = presence
        self.clock = clock
        self.messages = MessageServer(store, directory, bus, clock=clock)
        self.core: FanoutCore[Conn, str] = core if core is not None else FanoutCore()
        self.limiter = RateLimiter(config.rate_per_s, config.rate_burst)
        self.typing = (  # not ``or``: an empty throttle has len() 0 and is falsy
            typing_throttle
            if typing_throttle is not None
            else TypingThrottle(config.typing_interval_s)
        )
        self.epochs: dict[str, str] = {}
        self.conns: set[Conn] = set()
        self.user_conns: dict[str, set[Conn]] = {}
        self.presence_watchers: dict[str, set[Conn]] = {}
        self.bus_filter: Callable[[str, str, Callable[[str, str], None]], None] | None = None
        """Fault injection hook: ``filter(topic, payload, deliver)`` decides what the bus did."""
        self._server: Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._stopping = False
        self._channel_locks: dict[str, asyncio.Lock] = {}
        self._ids = itertools.count(1)
        self.stats = {"deliveries": 0, "slow_closed": 0, "fills": 0, "resets": 0}
        self.port = config.port

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"ws://{self.config.host}:{self.port}/ws"

    async def start(self) -> None:
        await self.bus.start(self._on_bus_message, on_resync=self.check_heads)
        await self.bus.subscribe(PRESENCE_TOPIC)
        self._server = await serve(
            self._handle,
            self.config.host,
            self.config.port,
            process_request=_only_ws_path,
            compression=None,
            max_size=self.config.max_frame_bytes,
            ping_interval=None,
            close_timeout=2,
            backlog=self.config.backlog,
        )
        sock = next(iter(self._server.sockets))
        self.port = sock.getsockname()[1]
        self._loops = [
            asyncio.create_task(self._every(self.config.head_check_s, self.check_heads)),
            asyncio.create_task(self._every(min(1.0, self.config.heartbeat_s / 2), self._tick)),
        ]
        log.info("%s listening on %s", self.name, self.url)

    async def drain(self) -> None:
        """Graceful shutdown: ``reconnect`` to every connection, close 1012, then stop."""
        if self._server is not None:
            self._server.close(close_connections=False)
        reconnect = p.encode(p.Reconnect("draining"))
        for conn in list(self.conns):
            conn.closing = True
            with contextlib.suppress(ConnectionClosed):
                await conn.ws.send(reconnect)
        await asyncio.gather(
            *(c.ws.close(CLOSE_SERVICE_RESTART, "draining") for c in list(self.conns)),
            return_exceptions=True,
        )
        await self._stop()

    async def crash(self) -> None:
        """Abrupt death: connections are dropped without a close frame, nothing is tidied."""
        for conn in list(self.conns):
            if conn.ws.transport is not None:
                conn.ws.transport.abort()
        if self._server is not None:
            self._server.close(close_connections=False)
        await self._stop()

    async def _stop(self) -> None:
        self._stopping = True  # a loop whose cancel was swallowed (see _every) still ends
        for task in [*self._loops, *self._tasks]:
            task.cancel()
        await asyncio.gather(*self._loops, *self._tasks, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
        await self.bus.close()
        # The Redis clients of the store, directory and presence are the gateway's own, like
        # the bus (see ``build_gateway``): close them too, or their sockets leak.
        clients = {id(c): c for c in (self.store.redis, self.directory.redis, self.presence.redis)}
        for client in clients.values():
            with contextlib.suppress(Exception):
                await client.aclose()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _every(self, period: float, action: Callable[[], Any]) -> None:
        # Not ``while True``: on Python 3.11 a cancel can be swallowed by an ``asyncio.wait_for``
        # inside the action (fakeredis uses one), and the loop would then outlive ``_stop``.
        while not self._stopping:
            await asyncio.sleep(period)
            try:
                await action()
            except Exception:  # a periodic job must survive a bad round
                log.exception("%s: periodic job failed", self.name)

    # -- connections ------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        conn = Conn(id=f"{self.name}:{next(self._ids)}", ws=ws, last_heard=self.clock())
        try:
            hello = await self._receive_hello(conn)
            if hello is None:
                return
            if not await self._welcome(conn, hello):
                return
            from labkit.server.session import serve_session  # late import: session imports us

            await serve_session(self, conn)
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("%s: connection %s failed", self.name, conn.id)
        finally:
            await self._forget(conn)

    async def _receive_hello(self, conn: Conn) -> p.Hello | None:
        def refuse(message: str) -> p.Error:
            return p.Error(p.ErrorCode.UNAUTHORIZED, message)

        try:
            data = await asyncio.wait_for(conn.ws.recv(), self.config.hello_timeout_s)
        except TimeoutError:
            limit = self.config.hello_timeout_s
            await self._refuse(conn, refuse(f"no hello within {limit:g} seconds of connecting"))
            return None
        try:
            frame = p.parse_client_frame(data)
        except p.ProtocolError as exc:
            await self._refuse(conn, refuse(f"the first frame must be a valid hello: {exc}"))
            return None
        if not isinstance(frame, p.Hello):
            await self._refuse(conn, refuse("the first frame must be hello"))
            return None
        try:
            conn.user = verify_token(frame.token, self.secret, now=self.clock())
        except TokenError as exc:
            await self._refuse(conn, refuse(f"token refused ({exc.reason})"))
            return None
        return frame

    async def _refuse(self, conn: Conn, error: p.Error) -> None:
        with contextlib.suppress(ConnectionClosed):
            await conn.ws.send(p.encode(error))
            await conn.ws.close(CLOSE_UNAUTHORIZED, "unauthorized")

    async def _welcome(self, conn: Conn, hello: p.Hello) -> bool:
        try:
            # Registered for the user's membership changes *before* reading the channels, so
            # none falls between the read and the welcome (they wait in ``held_control``).
            self.user_conns.setdefault(conn.user, set()).add(conn)
            channels = sorted(await self.directory.channels_of(conn.user))
            self.conns.add(conn)
            for channel in channels:
                self.core.attach(conn, channel, 0)
            await asyncio.gather(*(self._ensure_channel(ch) for ch in channels))
            states = await self.store.states(channels)
        except StoreUnavailable as exc:
            await self._store_down(conn, exc)
            return False
        await self._greet(conn, hello, channels, states)
        for channel in channels:
            cursor = self.core.cursor(conn, channel)
            if cursor is None:
                continue
            cursor.seq = (await self._plan(conn, hello, channel, states[channel])).cursor
            # In the background, so the connection's frames are read while history is paged.
            self._spawn(self.resume(conn, channel))
        while conn.held_control:  # changes made while we were busy, in the order they came
            await self._control_one(conn, conn.held_control.pop(0))
        conn.held_control = None
        return True

    async def _store_down(self, conn: Conn, exc: StoreUnavailable) -> None:
        """The store cannot be reached to prepare ``welcome``: say so, close 1013."""
        with contextlib.suppress(ConnectionClosed):
            await conn.ws.send(p.encode(p.Error(p.ErrorCode.UNAVAILABLE, f"{exc}")))
            await conn.ws.close(CLOSE_TRY_AGAIN_LATER, "store unavailable")

    async def _greet(
        self, conn: Conn, hello: p.Hello, channels: list[str], states: dict[str, ChannelState]
    ) -> None:
        """Send ``welcome`` with every channel's head and epoch, count it as the first
        heartbeat, and answer ``not_member`` for ``last_seen`` channels the user is not in."""
        infos = {ch: p.ChannelInfo(st.head, st.epoch) for ch, st in states.items()}
        await conn.ws.send(
            p.encode(p.Welcome(conn.user, self.name, self.config.heartbeat_s, infos))
        )
        conn.welcomed = True
        await self.heartbeat(conn)
        for channel in sorted(set(hello.last_seen) - set(channels)):
            error = p.Error(p.ErrorCode.NOT_MEMBER, f"{conn.user} is not a member of #{channel}")
            await conn.ws.send(p.encode(error))

    async def _plan(
        self, conn: Conn, hello: p.Hello, channel: str, state: ChannelState
    ) -> ResumePlan:
        """Decide where ``conn`` resumes ``channel``, sending ``reset`` when it cannot gap-fill."""
        plan = plan_resume(
            channel,
            state.head,
            state.epoch,
            hello.last_seen.get(channel),
            hello.epochs.get(channel),
        )
        if plan.reset_reason is not None:
            self.stats["resets"] += 1
            await conn.ws.send(
                p.encode(p.Reset(channel, state.head, state.epoch, plan.reset_reason))
            )
        return plan

    async def _forget(self, conn: Conn) -> None:
        self.conns.discard(conn)
        self.user_conns.get(conn.user, set()).discard(conn)
        if not self.user_conns.get(conn.user):
            self.user_conns.pop(conn.user, None)
        self.watch_presence(conn, ())
        for channel in self.core.drop_connection(conn):
            self._spawn(self._maybe_unsubscribe(channel))
        if conn.welcomed:
            with contextlib.suppress(Exception):
                await self.presence.disconnect(conn.user, conn.id, self.clock())

    # -- channels ---------------------------------------------------------------------------

    def _lock(self, channel: str) -> asyncio.Lock:
        return self._channel_locks.setdefault(channel, asyncio.Lock())

    async def _ensure_channel(self, channel: str) -> None:
        """Subscribe to the channel's topic (if not yet), *then* read its head: the order that
        closes the subscribe-then-backfill race."""
        async with self._lock(channel):
            topic = channel_topic(channel)
            if topic not in self.bus.topics:
                await self.bus.subscribe(topic)
            feed = self.core.feeds.get(channel)
            if feed is None or feed.started:
                return
            state = await self.store.state(channel)
            self.epochs[channel] = state.epoch
            self.apply(channel, self.core.start_feed(channel, state.head))

    async def _maybe_unsubscribe(self, channel: str) -> None:
        async with self._lock(channel):
            if channel not in self.core.feeds:
                with contextlib.suppress(Exception):
                    await self.bus.unsubscribe(channel_topic(channel))
                self.epochs.pop(channel, None)

    async def attach(self, conn: Conn, channel: str, head: int) -> None:
        """Route a channel newly joined by ``conn``'s user, live from ``head``."""
        if self.core.cursor(conn, channel) is not None:
            return
        self.core.attach(conn, channel, head)
        try:
            await self._ensure_channel(channel)
        except StoreUnavailable:
            # Subscribed, but the head could not be read: the head check starts the feed once
            # the store answers, and ``resume`` waits for that. Without the resume below the
            # connection would stay "filling" for good and never see the channel again.
            log.warning("%s: #%s attached before its head could be read", self.name, channel)
        self._spawn(self.resume(conn, channel))

    def detach(self, conn: Conn, channel: str) -> None:
        if self.core.detach(conn, channel):
            self._spawn(self._maybe_unsubscribe(channel))

    async def resume(self, conn: Conn, channel: str) -> None:
        """Bring ``conn`` up to the feed in ``channel`` by paging history, then go live.

        The history is sent with ``await send``, which waits while the connection's buffer is
        full: gap-fill runs at the reader's pace and never trips the slow-consumer bound.
        """
        if channel in conn.filling:
            return
        conn.filling.add(channel)
        try:
            while not conn.closing:
                cursor = self.core.cursor(conn, channel)
                if cursor is None or self.core.try_go_live(conn, channel):
                    return
                feed = self.core.feeds.get(channel)
                if feed is None or not feed.started:
                    await asyncio.sleep(self.config.head_check_s)
                    continue
                page = await self.store.history(channel, cursor.seq, self.config.fill_page)
                if not page:
                    await asyncio.sleep(self.config.head_check_s)  # epoch reset under way
                    continue
                for raw in page:
                    if self.core.cursor(conn, channel) is not cursor:
                        break
                    if cursor.filled(_seq_of(raw)):
                        self.stats["fills"] += 1
                        await conn.ws.send(raw)
        except StoreUnavailable:
            log.warning("%s: gap-fill of #%s for %s postponed", self.name, channel, conn.id)
            self._spawn(self._retry_resume(conn, channel))
        finally:
            conn.filling.discard(channel)

    async def _retry_resume(self, conn: Conn, channel: str) -> None:
        await asyncio.sleep(self.config.head_check_s)
        if conn in self.conns:
            await self.resume(conn, channel)

    # -- the bus ----------------------------------------------------------------------------

    def _on_bus_message(self, topic: str, payload: str) -> None:
        if self.bus_filter is not None:
            self.bus_filter(topic, payload, self.deliver_bus_message)
        else:
            self.deliver_bus_message(topic, payload)

    def deliver_bus_message(self, topic: str, payload: str) -> None:
        """Handle one bus message (after any fault injection decided it arrived)."""
        if topic == PRESENCE_TOPIC:
            self._relay_presence(payload)
            return
        try:
            frame = json.loads(payload)
            kind = frame["type"]
        except (ValueError, KeyError, TypeError):
            log.warning("%s: dropped a malformed bus payload on %s", self.name, topic)
            return
        channel = topic_channel(topic)
        if channel is not None and kind == "message":
            self.apply(channel, self.core.on_bus(channel, int(frame["seq"]), payload))
        elif channel is not None and kind == "typing":
            self._relay_typing(channel, frame["user"], payload)
        elif topic == CONTROL_TOPIC:
            self._spawn(self._on_control(frame))

    def apply(self, channel: str, outcome: Outcome[Conn, str]) -> None:
        """Carry out the fanout core's decision: write, then fetch, then fill."""
        for _seq, raw, recipients in outcome.sends:
            live = [c for c in recipients if c.welcomed and not c.closing]
            broadcast([c.ws for c in live], raw)
            self.stats["deliveries"] += len(live)
            for conn in live:
                if conn.buffered() > self.config.max_buffer_bytes:
                    self._close_slow(conn)
        if outcome.fetch is not None:
            self._spawn(self._fetch(channel, *outcome.fetch))
        for conn in outcome.fill:
            self._spawn(self.resume(conn, channel))

    async def _fetch(self, channel: str, first: int, last: int) -> None:
        epoch = self.epochs.get(channel)
        feed = self.core.feeds.get(channel)
        try:
            raws = await self.store.history_range(channel, first, last)
        except StoreUnavailable:
            self.core.fetch_failed(channel)
            return
        if self.epochs.get(channel) != epoch or self.core.feeds.get(channel) is not feed:
            return  # the channel was reset (or re-created) meanwhile: these seqs are stale
        if not raws:
            self.core.fetch_failed(channel)  # the head check will look again
            return
        self.apply(channel, self.core.on_fetched(channel, [(_seq_of(r), r) for r in raws]))

    async def check_heads(self) -> None:
        """Repair lost tails, start feeds whose first head read failed, notice new epochs."""
        channels = list(self.core.feeds)
        if not channels:
            return
        try:
            states = await self.store.states(channels)
        except StoreUnavailable:
            return
        for channel, st in states.items():
            feed = self.core.feeds.get(channel)
            if feed is None:
                continue
            if not feed.started:
                self.epochs[channel] = st.epoch
                self.apply(channel, self.core.start_feed(channel, st.head))
            elif self.epochs.get(channel) != st.epoch:
                self._reset_channel(channel, st.head, st.epoch)
            else:
                self.apply(channel, self.core.on_store_head(channel, st.head))

    def _reset_channel(self, channel: str, head: int, epoch: str) -> None:
        log.warning("%s: #%s has a new epoch %s; resetting", self.name, channel, epoch)
        self.epochs[channel] = epoch
        frame = p.encode(p.Reset(channel, head, epoch, "epoch_changed"))
        conns = [c for c in self.core.reset_channel(channel, head) if c.welcomed]
        self.stats["resets"] += len(conns)
        broadcast([c.ws for c in conns], frame)

    def _close_slow(self, conn: Conn) -> None:
        if conn.closing:
            return
        conn.closing = True
        self.stats["slow_closed"] += 1
        log.info(
            "%s: closing slow consumer %s (%d bytes queued)", self.name, conn.id, conn.buffered()
        )
        self._spawn(_close_soon(conn.ws, CLOSE_SLOW_CONSUMER, "slow consumer"))

    # -- membership, typing, presence relays ----------------------------------------------

    async def _on_control(self, frame: dict[str, Any]) -> None:
        user, channel, origin = frame.get("user"), frame.get("channel"), frame.get("origin")
        if not isinstance(user, str) or not isinstance(channel, str):
            return
        for conn in list(self.user_conns.get(user, ())):
            if conn.id == origin:
                continue
            if conn.held_control is not None:  # still being welcomed: apply it afterwards
                conn.held_control.append(frame)
                continue
            await self._control_one(conn, frame)

    async def _control_one(self, conn: Conn, frame: dict[str, Any]) -> None:
        """Apply one membership change of ``conn``'s user to ``conn``."""
        channel = str(frame["channel"])
        if frame.get("type") == "joined" and self.core.cursor(conn, channel) is None:
            head, epoch = int(frame["head"]), str(frame["epoch"])
            with contextlib.suppress(ConnectionClosed):
                await conn.ws.send(p.encode(p.Joined(channel, head, epoch)))
                await self.attach(conn, channel, head)
        elif frame.get("type") == "left" and self.core.cursor(conn, channel) is not None:
            self.detach(conn, channel)
            with contextlib.suppress(ConnectionClosed):
                await conn.ws.send(p.encode(p.Left(channel)))

    async def announce_membership(self, kind: str, conn: Conn, channel: str, **extra: Any) -> None:
        payload = {"type": kind, "user": conn.user, "channel": channel, "origin": conn.id}
        payload.update(extra)
        with contextlib.suppress(Exception):
            await self.bus.publish(CONTROL_TOPIC, json.dumps(payload))

    def _relay_typing(self, channel: str, typist: str, payload: str) -> None:
        # Typing is the first thing dropped for a connection whose buffer is filling.
        bound = self.config.max_buffer_bytes // 4
        targets = [
            c.ws
            for c in self.core.routing.connections(channel)
            if c.welcomed and not c.closing and c.user != typist and c.buffered() <= bound
        ]
        broadcast(targets, payload)

    def _relay_presence(self, payload: str) -> None:
        try:
            transition = decode_transition(payload)
        except ValueError:
            log.warning("%s: dropped a malformed presence payload", self.name)
            return
        watchers = [c for c in self.presence_watchers.get(transition.user, ()) if c.welcomed]
        if not watchers:
            return
        frame = p.encode(p.Presence(transition.user, transition.status, transition.last_active))
        plain = [c.ws for c in watchers if c.digest is None]
        broadcast(plain, frame)
        for conn in watchers:
            if conn.digest is not None:
                conn.digest.add(transition)

    async def heartbeat(self, conn: Conn) -> None:
        """A frame arrived: the connection is alive.

        Shared presence hears of it at most every ``min(1 s, heartbeat_s / 2)``, in the
        background: presence is decoupled from messaging, so a slow Redis write here never
        holds up the frame (a post, say) that carried the heartbeat.
        """
        now = self.clock()
        conn.last_heard = now
        if now - conn.last_presence_beat < min(1.0, self.config.heartbeat_s / 2):
            return
        conn.last_presence_beat = now
        self._spawn(self._announce_heartbeat(conn.user, conn.id, now))

    async def _announce_heartbeat(self, user: str, conn_id: str, now: float) -> None:
        try:
            transition = await self.presence.heartbeat(user, conn_id, now)
        except StoreUnavailable:
            return
        if transition is not None:
            with contextlib.suppress(Exception):
                await self.bus.publish(PRESENCE_TOPIC, encode_transition(transition))

    async def _tick(self) -> None:
        """Once a second or so: close silent connections, expire presence, flush digests."""
        now = self.clock()
        silent_after = 3 * self.config.heartbeat_s
        for conn in list(self.conns):
            if conn.welcomed and not conn.closing and now - conn.last_heard > silent_after:
                conn.closing = True
                self._spawn(_close_soon(conn.ws, CLOSE_SILENT, "no heartbeat"))
            if conn.digest is not None and conn.digest.due(now):
                changes, since, until = conn.digest.flush(now)
                if changes:
                    digest = p.PresenceDigest(
                        tuple(p.Presence(t.user, t.status, t.last_active) for t in changes),
                        since,
                        until,
                    )
                    with contextlib.suppress(ConnectionClosed):
                        await conn.ws.send(p.encode(digest))
        try:
            transitions = await self.presence.expire(now)
        except StoreUnavailable:
            return
        for transition in transitions:
            with contextlib.suppress(Exception):
                await self.bus.publish(PRESENCE_TOPIC, encode_transition(transition))

    def watch_presence(self, conn: Conn, users: Iterable[str]) -> None:
        for user in conn.presence_users:
            self.presence_watchers.get(user, set()).discard(conn)
        conn.presence_users = frozenset(users)
        for user in conn.presence_users:
            self.presence_watchers.setdefault(user, set()).add(conn)


def _seq_of(raw: str) -> int:
    return int(json.loads(raw)["seq"])


CLOSE_GRACE_S = 1.5
"""How long a connection being closed (slow or silent) gets to read what is queued and the
close frame, so it learns *why* (4008, 4002); after that it is cut off. Nothing more is queued
for a closing connection, so its memory stays bounded. Kept under the protocol's 2 s delivery
bound: a connection that is still open 2 s after a post's ack must have received it, so a
connection the gateway has stopped feeding must be gone by then."""


async def _close_soon(ws: ServerConnection, code: int, reason: str) -> None:
    """Close with ``code``; a peer that has not answered within ``CLOSE_GRACE_S`` is cut off."""
    try:
        await asyncio.wait_for(ws.close(code, reason), CLOSE_GRACE_S)
    except (TimeoutError, ConnectionClosed, OSError):
        if ws.transport is not None:
            ws.transport.abort()


def _only_ws_path(connection: ServerConnection, request: Request) -> Response | None:
    if urlsplit(request.path).path == "/ws":
        return None
    return connection.respond(HTTPStatus.NOT_FOUND, "labkit gateways serve WebSockets at /ws\n")
