"""The whole gateway as one state machine with no I/O.

Theory of operation
-------------------
A gateway is a node with many peers (its connections), a store and a bus: the situation etcd's
raft library is built for (../shared/STYLE.md). :class:`GatewayMachine` takes one
:mod:`event <labkit.core.gateway.events>` at a time and returns the actions it decided, in
order; a driver carries them out and feeds back what happened. Two drivers run the same machine:
``labkit.server.gateway`` over websockets and Redis, and ``labkit.lab.sim`` in virtual time. A
rule therefore lives here once, and the simulator cannot drift from the real gateway.

========================  =================================================================
event                     what the machine does
========================  =================================================================
``Opened``                remembers the connection; ``hello`` is due within the timeout
``Received``              first frame: :mod:`.handshake`; later: a heartbeat, then
                          :mod:`.requests` (post, history, join/leave, typing, presence_sub)
``Closed``                forgets the connection, unsubscribes emptied channels, tells
                          shared presence
``BusMessage``            :mod:`.channels` (messages), :mod:`.presence_typing` (typing,
                          presence), :mod:`.membership` (joined/left of a user's connection)
``Reply``                 continues whatever was waiting for that request; a stale reply
                          is recognised by what it carries and dropped
``Tick``                  hello timeouts, silence (4002), head checks, paused gap-fills,
                          presence expiry, digests
``BufferLevel``           slow consumers (4008)
``Writable``              the next gap-fill page
``Resync``                an immediate head check (the bus may have lost messages)
``Drain``                 ``reconnect`` and 1012 to everyone
========================  =================================================================

The machine is built from per-concern parts that share one
:class:`~labkit.core.gateway.state.GatewayState`. Swappable pieces (the fanout core, the resume
plan, the typing throttle, the rate limiter, the token check) come in through the constructor:
that is how a learner's implementation or a weaker design runs in both drivers.
"""

from __future__ import annotations

from collections.abc import Callable

from labkit.core.auth import verify_token
from labkit.core.fanout import FanoutCore
from labkit.core.gateway import bus_payloads as bus
from labkit.core.gateway.channels import Channels
from labkit.core.gateway.events import (
    Action,
    BufferLevel,
    BusMessage,
    Closed,
    ConnId,
    Drain,
    Event,
    Opened,
    Outbox,
    Received,
    Reply,
    Resync,
    Tick,
    Writable,
)
from labkit.core.gateway.flow import Flow
from labkit.core.gateway.handshake import Authenticate, Handshake
from labkit.core.gateway.membership import Membership
from labkit.core.gateway.presence_typing import PresenceAndTyping
from labkit.core.gateway.requests import Requests
from labkit.core.gateway.state import ConnState, GatewayState, MachineConfig, Phase
from labkit.core.presence import Transition
from labkit.core.ratelimit import RateLimiter
from labkit.core.resume import ResumePlan, plan_resume
from labkit.core.typing_throttle import TypingThrottle

Observer = Callable[[Event, list[Action]], None]
"""Called after every event with the actions decided (notebook taps, logs, tests)."""


def token_checker(secret: str) -> Authenticate:
    """The real token check: an HMAC-signed token naming the user (labkit.core.auth)."""
    return lambda token, now: verify_token(token, secret, now=now)


class GatewayMachine:
    """One gateway's decisions: events in, ordered actions out."""

    def __init__(
        self,
        config: MachineConfig,
        *,
        authenticate: Authenticate,
        core: FanoutCore[ConnId, str] | None = None,
        plan: Callable[..., ResumePlan] = plan_resume,
        typing_throttle: TypingThrottle | None = None,
        limiter: RateLimiter | None = None,
        observer: Observer | None = None,
    ) -> None:
        self.config = config
        self.st = GatewayState(
            config,
            core if core is not None else FanoutCore(),
            plan=plan,
            typing_throttle=typing_throttle,
            limiter=limiter,
        )
        self.observer = observer
        self.channels = Channels(self.st, self._fill)
        self.handshake = Handshake(self.st, self.channels, authenticate, self._welcomed)
        self.presence = PresenceAndTyping(self.st)
        self.membership = Membership(self.st, self.channels, self.handshake)
        self.requests = Requests(self.st, self.membership, self.presence)
        self.flow = Flow(self.st)

    # -- the one entry point ------------------------------------------------------------------

    def handle(self, event: Event) -> list[Action]:
        """Take one event; return the actions to carry out, in order."""
        st = self.st
        st.out = Outbox()
        self._dispatch(event)
        actions = st.out.actions
        if self.observer is not None:
            self.observer(event, actions)
        return actions

    def _dispatch(self, event: Event) -> None:
        st = self.st
        if isinstance(event, BusMessage):
            self._on_bus(event)
        elif isinstance(event, Reply):
            waiting = st.pending.pop(event.request.id, None)
            if waiting is not None:
                then, owner = waiting
                then(event.result, event.error)
                if owner is not None:
                    owner.in_flight -= 1
                    self._next_frames(owner)
        elif isinstance(event, Received):
            self._on_received(event)
        elif isinstance(event, Opened):
            st.conns[event.conn] = ConnState(event.conn, event.now, last_heard=event.now)
        elif isinstance(event, Closed):
            self._on_closed(event)
        elif isinstance(event, Tick):
            self._on_tick(event.now)
        elif isinstance(event, BufferLevel):
            conn = st.conns.get(event.conn)
            if conn is not None:
                self.flow.on_buffer_level(conn, event.queued, event.live_write)
        elif isinstance(event, Writable):
            conn = st.conns.get(event.conn)
            if conn is not None:
                self.handshake.on_writable(conn)
        elif isinstance(event, Resync):
            self.channels.check_heads()
        elif isinstance(event, Drain):
            self.flow.drain()

    # -- events -------------------------------------------------------------------------------

    def _on_received(self, event: Received) -> None:
        conn = self.st.conns.get(event.conn)
        if conn is None or conn.phase is Phase.CLOSING:
            return
        if conn.phase is Phase.AWAITING_HELLO:
            self.handshake.on_first_frame(conn, event.data, event.now)
        elif conn.phase is Phase.WELCOMING:
            conn.early.append(event.data)
        else:
            if isinstance(event.data, str):
                self.presence.heartbeat(conn, event.now)
            self.requests.on_frame(conn, event.data, event.now)

    def _next_frames(self, conn: ConnState) -> None:
        """The connection's last request is answered: handle the frames that waited, in order,
        until one of them issues a request again."""
        while conn.backlog and conn.in_flight == 0 and conn.writable:
            data, now = conn.backlog.pop(0)
            self.requests.on_frame(conn, data, now)

    def _welcomed(self, conn: ConnState) -> None:
        """Right after ``welcome``: the first heartbeat, held membership changes, early frames."""
        self.presence.heartbeat(conn, conn.last_heard)
        self.membership.release_held(conn)
        early, conn.early = conn.early, []
        for data in early:
            self._on_received(Received(conn.id, data, conn.last_heard))

    def _on_closed(self, event: Closed) -> None:
        st = self.st
        conn = st.conns.pop(event.conn, None)
        if conn is None:
            return
        if conn.user:
            user_conns = st.user_conns.get(conn.user, {})
            user_conns.pop(conn.id, None)
            if not user_conns:
                st.user_conns.pop(conn.user, None)
        self.presence.watch(conn, frozenset())
        self.channels.drop(conn)
        if conn.hello is not None and conn.held is None:  # it was welcomed
            self.presence.disconnected(conn, event.now)

    def _on_bus(self, event: BusMessage) -> None:
        payload = bus.decode(event.topic, event.payload)
        if isinstance(payload, bus.ChannelMessage):
            self.channels.on_message(payload)
        elif isinstance(payload, bus.ChannelTyping):
            self.presence.relay_typing(payload)
        elif isinstance(payload, bus.MembershipChange):
            self.membership.on_change(payload)
        elif isinstance(payload, Transition):
            self.presence.on_transition(payload)

    def _on_tick(self, now: float) -> None:
        st = self.st
        for conn in list(st.conns.values()):
            self.handshake.hello_timeout(conn, now)
            self.flow.check_silence(conn, now)
            if conn.fill_waiting and conn.writable:
                self.handshake.retry_waiting(conn)
        self.channels.tick(now)
        self.presence.tick(now)

    def _fill(self, conn: ConnState, channel: str) -> None:
        self.handshake.fill(conn, channel)

    # -- read-only views for drivers, widgets and tests -------------------------------------

    @property
    def stats(self) -> dict[str, int]:
        return self.st.stats

    @property
    def core(self) -> FanoutCore[ConnId, str]:
        return self.st.core

    def conn(self, conn_id: ConnId) -> ConnState | None:
        return self.st.conns.get(conn_id)

    def connections(self) -> list[ConnState]:
        return list(self.st.conns.values())

    @property
    def subscribed_topics(self) -> frozenset[str]:
        return frozenset(self.st.topics)
