"""What goes into the gateway machine (events) and what comes out of it (actions).

A driver turns everything that happens to a gateway into one of the *events* below and hands it
to :meth:`~labkit.core.gateway.machine.GatewayMachine.handle`, which returns a list of
*actions*. The driver carries the actions out **in order** and never reorders them: "store this,
then send that" (etcd's raft ``Ready`` batch, ../shared/STYLE.md).

Connections are named by a string id the driver chooses (``"gw-1:7"``), so the machine holds no
socket and an event log can be replayed into a fresh machine.

Store and presence work goes out as :class:`Request` actions, each with a number; the driver
answers with a :class:`Reply` carrying the same request, so the machine recognises a stale
answer (a fetch started before a channel's epoch changed, a page for a connection that has gone)
by itself, the way raft's responses carry their term.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from labkit.core.protocol import CloseCode

ConnId = str


# -- store and presence operations (the payload of a Request) ------------------------------


@dataclass(frozen=True, slots=True)
class ReadChannels:
    """The channels ``user`` is a member of. Reply: ``list[str]``."""

    user: str


@dataclass(frozen=True, slots=True)
class ReadStates:
    """Head and epoch of each channel. Reply: ``dict[str, tuple[int, str]]``."""

    channels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ReadHistory:
    """Stored messages with ``seq > after``, ascending, at most ``limit``.
    Reply: ``(epoch, [(seq, encoded message frame), ...])``, the epoch read in the same instant
    as the messages, so a page of a newer history is never taken for the old one."""

    channel: str
    after: int
    limit: int


@dataclass(frozen=True, slots=True)
class ReadRange:
    """Stored messages with ``first <= seq <= last``. Reply: ``(epoch, [(seq, frame), ...])``,
    as for :class:`ReadHistory`."""

    channel: str
    first: int
    last: int


@dataclass(frozen=True, slots=True)
class Append:
    """Check membership, sequence and store a post in one atomic step (the Lua script).
    Reply: :class:`Appended`."""

    user: str
    channel: str
    post_id: str
    text: str
    now: float


@dataclass(frozen=True, slots=True)
class Appended:
    """What :class:`Append` did: ``verdict`` is ``new``, ``dup`` (a retry of a stored post:
    the same seq again), ``conflict`` (the id was used for another post) or ``not_member``."""

    verdict: str
    seq: int = 0
    ts: float = 0.0
    raw: str = ""


@dataclass(frozen=True, slots=True)
class JoinChannel:
    """Add ``user`` to ``channel``. Reply: ``(newly_joined, head, epoch)``."""

    user: str
    channel: str


@dataclass(frozen=True, slots=True)
class LeaveChannel:
    """Remove ``user`` from ``channel``. Reply: ``bool`` (was a member)."""

    user: str
    channel: str


@dataclass(frozen=True, slots=True)
class IsMember:
    """Reply: ``bool``."""

    user: str
    channel: str


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Shared presence hears that a connection is alive. Reply: ``list[Transition]``."""

    user: str
    conn: ConnId
    now: float


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Shared presence hears that a connection closed. Reply: ``list[Transition]``."""

    user: str
    conn: ConnId
    now: float


@dataclass(frozen=True, slots=True)
class ExpirePresence:
    """Shared presence expires silent connections. Reply: ``list[Transition]``."""

    now: float


@dataclass(frozen=True, slots=True)
class ReadPresence:
    """Status of each user. Reply: ``dict[str, tuple[str, float | None]]``."""

    users: tuple[str, ...]
    now: float


StoreOp = (
    ReadChannels
    | ReadStates
    | ReadHistory
    | ReadRange
    | Append
    | JoinChannel
    | LeaveChannel
    | IsMember
    | Heartbeat
    | Disconnect
    | ExpirePresence
    | ReadPresence
)


# -- events ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Opened:
    """A WebSocket connection was accepted; its ``hello`` is due within ``hello_timeout_s``."""

    conn: ConnId
    now: float


@dataclass(frozen=True, slots=True)
class Received:
    """A frame arrived from a client (the machine parses it)."""

    conn: ConnId
    data: str | bytes
    now: float


@dataclass(frozen=True, slots=True)
class Closed:
    """The connection is gone (closed by either side, or cut)."""

    conn: ConnId
    now: float


@dataclass(frozen=True, slots=True)
class BusMessage:
    """A payload arrived on a bus topic this gateway subscribes to."""

    topic: str
    payload: str
    now: float


@dataclass(frozen=True, slots=True)
class Reply:
    """The answer to a :class:`Request`; ``error`` is set (and ``result`` None) when the store
    could not be reached."""

    request: Request
    result: object = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed: the machine runs what is due (head checks, silence, digests, expiry)."""

    now: float


@dataclass(frozen=True, slots=True)
class BufferLevel:
    """How many bytes wait to be written to ``conn``: reported after a live write
    (``live_write``) and on every tick."""

    conn: ConnId
    queued: int
    now: float
    live_write: bool = False


@dataclass(frozen=True, slots=True)
class Writable:
    """``conn`` has read what was queued: the answer to :class:`WatchWritable`."""

    conn: ConnId
    now: float


@dataclass(frozen=True, slots=True)
class Resync:
    """The bus connection was re-established: anything published meanwhile may be lost."""

    now: float


@dataclass(frozen=True, slots=True)
class Drain:
    """Graceful shutdown begins: every connection is told to reconnect elsewhere."""

    now: float


Event = (
    Opened | Received | Closed | BusMessage | Reply | Tick | BufferLevel | Writable | Resync | Drain
)


# -- actions --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Write ``payload`` to one connection, without waiting."""

    conn: ConnId
    payload: str


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Write one encoded ``payload`` to every connection in ``conns`` (encode once), without
    waiting. With ``droppable_above`` set, skip a connection with more bytes queued than that
    (typing is dropped first for a reader that is falling behind: PROTOCOL.md, typing)."""

    conns: tuple[ConnId, ...]
    payload: str
    droppable_above: int | None = None


@dataclass(frozen=True, slots=True)
class Close:
    """Close ``conn`` with ``code``; the driver bounds the wait for the peer."""

    conn: ConnId
    code: CloseCode
    reason: str


@dataclass(frozen=True, slots=True)
class Subscribe:
    topic: str


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    topic: str


@dataclass(frozen=True, slots=True)
class Publish:
    """Publish ``payload`` on a bus topic (``seq`` is informational, for fault injection)."""

    topic: str
    payload: str
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class Request:
    """Ask the store (or shared presence) for ``op``; answer with ``Reply(this request, …)``."""

    id: int
    op: StoreOp


@dataclass(frozen=True, slots=True)
class WatchWritable:
    """Tell the machine (with :class:`Writable`) once ``conn`` has read what is queued: gap-fill
    pages go at the reader's pace and never trip the slow-consumer bound."""

    conn: ConnId


Action = Send | Broadcast | Close | Subscribe | Unsubscribe | Publish | Request | WatchWritable


@dataclass(slots=True)
class Outbox:
    """The actions of one event, in the order they were decided."""

    actions: list[Action] = field(default_factory=list)

    def add(self, action: Action) -> None:
        self.actions.append(action)
