"""The state every part of the gateway machine shares, and the few helpers they all use.

:class:`GatewayState` is one gateway's memory: its connections (:class:`ConnState`), the fanout
core (routing, feeds, cursors), each channel's epoch, the subscribed topics and the requests
waiting for a reply. The sub-machines (handshake, channels, membership, presence, flow) each
own one concern and write their actions to the same :class:`~labkit.core.gateway.events.Outbox`.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from labkit.core import protocol as p
from labkit.core.fanout import FanoutCore
from labkit.core.gateway.bus_payloads import channel_topic
from labkit.core.gateway.events import (
    Broadcast,
    Close,
    ConnId,
    Outbox,
    Request,
    Send,
    StoreOp,
    Subscribe,
    Unsubscribe,
)
from labkit.core.presence import DigestBuffer
from labkit.core.ratelimit import RateLimiter
from labkit.core.resume import ResumePlan, plan_resume
from labkit.core.typing_throttle import TypingThrottle


@dataclass(frozen=True, slots=True)
class MachineConfig:
    """What a gateway machine is tuned with; the defaults follow PROTOCOL.md."""

    name: str = "gw-1"
    heartbeat_s: float = 10.0
    """Announced in ``welcome``; a connection silent for 3 × this is closed 4002."""
    hello_timeout_s: float = 5.0
    max_buffer_bytes: int = 1024 * 1024
    """Bytes a connection may have queued before it is a slow consumer (4008)."""
    head_check_s: float = 0.5
    """How often the store heads are read, to repair a lost tail and notice a new epoch."""
    fill_page: int = 200
    rate_per_s: float = 50.0
    rate_burst: float = 100.0
    typing_interval_s: float = 2.0
    presence_expire_s: float = 1.0
    subscribe_first: bool = True
    """Subscribe to a channel's topic *before* reading its head. False is the weaker
    ``history_before_subscribe`` design, kept to show the race it has."""

    @property
    def presence_beat_s(self) -> float:
        """Shared presence hears of a live connection at most this often: twice per heartbeat
        period, and at least once a second, so ``last_active`` lags by under a second."""
        return min(1.0, self.heartbeat_s / 2)


class Phase(enum.Enum):
    """Where one connection is in its life (the table in ``handshake``)."""

    AWAITING_HELLO = "awaiting_hello"
    WELCOMING = "welcoming"
    OPEN = "open"
    CLOSING = "closing"


@dataclass(eq=False, slots=True)
class ConnState:
    """One client connection as the machine sees it."""

    id: ConnId
    opened_at: float
    phase: Phase = Phase.AWAITING_HELLO
    user: str = ""
    hello: p.Hello | None = None
    last_heard: float = 0.0
    last_presence_beat: float = float("-inf")
    filling: set[str] = field(default_factory=set)
    """Channels being paged to this connection."""
    fill_waiting: set[str] = field(default_factory=set)
    """Channels whose next page waits for a tick (store down, feed not started)."""
    writable_waiting: set[str] = field(default_factory=set)
    """Channels whose next page waits for the connection to read what is queued."""
    pacing: bool = False
    """Gap-fill frames are queued and the reader has not taken them yet (``Writable``)."""
    held: list[Any] | None = field(default_factory=list)
    """Membership changes that arrived while being welcomed; None once welcomed."""
    early: list[str | bytes] = field(default_factory=list)
    """Frames that arrived before ``welcome`` was sent, handled right after it."""
    in_flight: int = 0
    """Store requests of the frame being answered; the next frame waits until none is left."""
    backlog: list[tuple[str | bytes, float]] = field(default_factory=list)
    """Frames that arrived while an earlier one was being answered, in order."""
    presence_users: frozenset[str] = frozenset()
    digest: DigestBuffer | None = None

    @property
    def welcomed(self) -> bool:
        return self.phase is Phase.OPEN

    @property
    def writable(self) -> bool:
        """Frames may still be queued for it (welcomed and not being closed)."""
        return self.phase is Phase.OPEN


Continuation = Callable[[Any, str | None], None]
"""What to do with a reply: ``(result, error)``."""


class GatewayState:
    """One gateway's memory, shared by its sub-machines."""

    def __init__(
        self,
        config: MachineConfig,
        core: FanoutCore[ConnId, str],
        *,
        plan: Callable[..., ResumePlan] = plan_resume,
        typing_throttle: TypingThrottle | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.config = config
        self.core = core
        self.plan = plan
        self.typing = (
            typing_throttle
            if typing_throttle is not None
            else TypingThrottle(config.typing_interval_s)
        )
        self.limiter = (
            limiter if limiter is not None else RateLimiter(config.rate_per_s, config.rate_burst)
        )
        self.conns: dict[ConnId, ConnState] = {}
        self.user_conns: dict[str, dict[ConnId, None]] = {}
        self.watchers: dict[str, dict[ConnId, None]] = {}
        self.epochs: dict[str, str] = {}
        self.topics: set[str] = set()
        self.starting: dict[str, object] = {}
        """Channel → the feed whose first head read is under way (one read per feed)."""
        self.pending: dict[int, tuple[Continuation, ConnState | None]] = {}
        self._request_ids = itertools.count(1)
        self.out = Outbox()
        self.stats: dict[str, int] = {
            "deliveries": 0,
            "fills": 0,
            "fetches": 0,
            "resets": 0,
            "slow_closed": 0,
            "silent_closed": 0,
        }

    # -- output -------------------------------------------------------------------------------

    def send(self, conn: ConnState, frame: p.ServerFrame) -> None:
        self.out.add(Send(conn.id, p.encode(frame)))

    def send_raw(self, conn: ConnState, payload: str) -> None:
        self.out.add(Send(conn.id, payload))

    def broadcast(
        self, conns: list[ConnState], payload: str, droppable_above: int | None = None
    ) -> None:
        if conns:
            self.out.add(Broadcast(tuple(c.id for c in conns), payload, droppable_above))

    def close(self, conn: ConnState, code: p.CloseCode, reason: str) -> None:
        """Close once; nothing more is queued for a closing connection (bounded memory), so it
        leaves the routing table at once: every fanout recipient is then a live connection."""
        if conn.phase is Phase.CLOSING:
            return
        conn.phase = Phase.CLOSING
        self.out.add(Close(conn.id, code, reason))
        for channel in self.core.drop_connection(conn.id):
            self.unsubscribe(channel)

    def request(self, op: StoreOp, then: Continuation, owner: ConnState | None = None) -> None:
        """Ask for ``op``; ``then(result, error)`` runs on the reply. With ``owner``, the request
        answers that connection's current frame, which holds its later frames back until it is
        done: a connection's requests are answered one at a time, in the order sent (a ``post``
        right after a ``join`` finds the user a member)."""
        request_id = next(self._request_ids)
        self.pending[request_id] = (then, owner)
        if owner is not None:
            owner.in_flight += 1
        self.out.add(Request(request_id, op))

    # -- channels -----------------------------------------------------------------------------

    def subscribe(self, channel: str) -> None:
        topic = channel_topic(channel)
        if topic not in self.topics:
            self.topics.add(topic)
            self.out.add(Subscribe(topic))

    def unsubscribe(self, channel: str) -> None:
        topic = channel_topic(channel)
        if topic in self.topics:
            self.topics.discard(topic)
            self.out.add(Unsubscribe(topic))
        self.epochs.pop(channel, None)
        self.starting.pop(channel, None)

    def live_conns(self, ids: list[ConnId]) -> list[ConnState]:
        conns = self.conns
        return [c for c in (conns.get(i) for i in ids) if c is not None and c.writable]
