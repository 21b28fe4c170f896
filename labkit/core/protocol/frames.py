"""The vocabulary of the labkit wire protocol, version 1: limits, codes and frame dataclasses.

Theory of operation
-------------------
Every frame of PROTOCOL.md is a frozen, slotted dataclass here, documented field by field, and
the two unions name what may travel each way: ``ClientFrame`` (client -> server) and
``ServerFrame`` (server -> client). Past the parser (:mod:`.parsing`) nothing handles loose dicts,
and only the encoder (:mod:`.encoding`) turns a frame back into JSON.

The numbers the contract fixes live here too, so the parser, the gateway and the tests read the
same ones: the field limits (``MAX_TEXT_CHARS`` and friends), the ``code`` of an ``error`` frame
(:class:`ErrorCode`) and the WebSocket close codes (:class:`CloseCode`). A frame the protocol
refuses is a :class:`ProtocolError`, which knows the ``error`` frame that answers it.

Nothing in this module does I/O or reads a clock.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import TypeGuard

PROTOCOL_VERSION = 1
MAX_TEXT_CHARS = 4000
MAX_HISTORY_LIMIT = 1000
DEFAULT_HISTORY_LIMIT = 100
MAX_PRESENCE_USERS = 500
MAX_ID_CHARS = 64
MIN_DIGEST_S = 1.0
MAX_DIGEST_S = 3600.0

CHANNEL_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,79}")
"""A valid channel name, to be used with ``fullmatch`` (``match`` would accept a trailing newline
with ``$``-style anchors, and a prefix without them)."""


def is_valid_channel(name: object) -> TypeGuard[str]:
    """Whether ``name`` is a string that is a channel name as a whole (no trailing newline)."""
    return isinstance(name, str) and CHANNEL_NAME.fullmatch(name) is not None


class ErrorCode(enum.StrEnum):
    """The ``code`` of an ``error`` frame; the contract's table says what each one means."""

    BAD_FRAME = "bad_frame"
    UNKNOWN_TYPE = "unknown_type"
    INVALID = "invalid"
    NOT_MEMBER = "not_member"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"
    UNAUTHORIZED = "unauthorized"


class CloseCode(enum.IntEnum):
    """The WebSocket close codes of the contract, and what the client should do after each.

    PROTOCOL.md ("Starting a session", "Heartbeats and presence", "Errors and limits") and the
    "Close codes" table of docs/protocol.md name them. An ``IntEnum``, so a member is what a
    WebSocket library sends and compares equal to the number it reports:
    ``ws.close_code == CloseCode.SLOW_CONSUMER``. Codes below 4000 are RFC 6455 section 7.4's;
    4000 to 4999 are reserved for applications, and those are labkit's own.
    """

    # RFC 6455 7.4.1: the peer closed on purpose (``Client.close()``); nothing to resume.
    NORMAL_CLOSURE = 1000
    # RFC 6455 7.4.1: the connection ended without a close frame (a cut, a crashed gateway).
    # Never sent, only reported; the client reconnects and resumes with ``last_seen``.
    ABNORMAL_CLOSURE = 1006
    # PROTOCOL.md "Errors and limits": a frame larger than the server's maximum (64 KiB by
    # default). The client must not send that frame again.
    MESSAGE_TOO_BIG = 1009
    # PROTOCOL.md "Errors and limits": a gateway shutting down gracefully sends
    # ``{"type": "reconnect", "reason": "draining"}``, then closes with 1012. The client
    # reconnects, to another gateway if it has one, with ``last_seen``.
    SERVICE_RESTART = 1012
    # docs/protocol.md "Starting a session" (labkit): the store could not be reached while the
    # gateway prepared ``welcome`` (after an ``error`` with code ``unavailable``). The client
    # retries later, with backoff.
    TRY_AGAIN_LATER = 1013
    # PROTOCOL.md "Starting a session", rule 5: anything but a valid ``hello`` before
    # ``welcome``, or none in time (after an ``error`` with code ``unauthorized``). Final: the
    # client does not retry with the same token.
    UNAUTHORIZED = 4001
    # PROTOCOL.md "Heartbeats and presence": no text frame for 3 x ``heartbeat_s``. The client
    # reconnects and resumes.
    SILENT = 4002
    # PROTOCOL.md "Errors and limits": the connection's outgoing queue grew past its bound (it
    # reads too slowly). The client reconnects and resumes through ``last_seen``.
    SLOW_CONSUMER = 4008


class ProtocolError(Exception):
    """A frame the protocol refuses; ``as_frame()`` is the ``error`` reply to send back.

    ``message`` is a human sentence naming the offending field, because students read these
    replies in a notebook while they write their own clients.
    """

    def __init__(self, code: ErrorCode, message: str, id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.id = id

    def as_frame(self) -> Error:
        """The ``error`` frame that answers the refused frame (echoing its id, if valid)."""
        return Error(self.code, self.message, self.id)

    def __repr__(self) -> str:
        return f"ProtocolError({self.code.value!r}, {self.message!r}, id={self.id!r})"


# --------------------------------------------------------------------------- client -> server


@dataclass(frozen=True, slots=True)
class Hello:
    """First frame of a session. ``token`` proves the user; ``last_seen`` maps a channel to the
    highest seq the client has seen (for gap-fill); ``epochs`` maps a channel to the epoch the
    client saw in its last ``welcome`` (a mismatch means the numbering restarted)."""

    token: str
    last_seen: dict[str, int] = field(default_factory=dict)
    epochs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Post:
    """A new message. ``id`` is required: it makes retries idempotent."""

    id: str
    channel: str
    text: str


@dataclass(frozen=True, slots=True)
class History:
    """A page of stored messages with ``seq > after``, ascending, at most ``limit`` of them."""

    id: str | None
    channel: str
    after: int = 0
    limit: int = DEFAULT_HISTORY_LIMIT


@dataclass(frozen=True, slots=True)
class Join:
    """Become a member of ``channel`` (creating it if needed)."""

    id: str | None
    channel: str


@dataclass(frozen=True, slots=True)
class Leave:
    """Stop being a member of ``channel``, on every connection of the user."""

    id: str | None
    channel: str


@dataclass(frozen=True, slots=True)
class Typing:
    """An ephemeral "user is typing" hint; never stored, may be dropped."""

    channel: str
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Ping:
    """A heartbeat that asks for a ``pong``."""

    id: str | None = None


@dataclass(frozen=True, slots=True)
class PresenceSub:
    """Replace the presence subscription with ``users`` (deduplicated, in order). ``digest_s``
    (a labkit addition) asks for batched ``presence_digest`` frames every that many seconds."""

    users: tuple[str, ...]
    digest_s: float | None = None
    id: str | None = None


ClientFrame = Hello | Post | History | Join | Leave | Typing | Ping | PresenceSub

# --------------------------------------------------------------------------- server -> client


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    """One channel in a ``welcome``: its current ``head`` seq (0 when empty) and ``epoch``."""

    head: int
    epoch: str


@dataclass(frozen=True, slots=True)
class Welcome:
    """Reply to a valid ``hello``: who the user is, which gateway, and every channel they are a
    member of."""

    user: str
    gateway: str
    heartbeat_s: float
    channels: dict[str, ChannelInfo]
    protocol: int = PROTOCOL_VERSION


@dataclass(frozen=True, slots=True)
class Message:
    """A stored message. ``ts`` is seconds since the Unix epoch when ``seq`` was assigned."""

    channel: str
    seq: int
    user: str
    text: str
    ts: float


@dataclass(frozen=True, slots=True)
class Ack:
    """The poster's confirmation: the post ``id`` is stored as ``seq`` of ``channel``."""

    id: str
    channel: str
    seq: int
    ts: float


@dataclass(frozen=True, slots=True)
class Reset:
    """Gap-fill is impossible; resume from ``head + 1`` in ``epoch``. ``reason`` is
    ``"epoch_changed"`` or ``"too_far_behind"``."""

    channel: str
    head: int
    epoch: str
    reason: str


@dataclass(frozen=True, slots=True)
class HistoryReply:
    """Reply to ``history`` (wire type ``"history"``): the channel ``head`` and a page of
    messages."""

    id: str | None
    channel: str
    head: int
    messages: tuple[Message, ...]


@dataclass(frozen=True, slots=True)
class Joined:
    """The user is now a member of ``channel``; messages with ``seq > head`` follow. Without an
    ``id`` it tells the user's other connections."""

    channel: str
    head: int
    epoch: str
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Left:
    """The user is no longer a member of ``channel``; nothing more of it follows."""

    channel: str
    id: str | None = None


@dataclass(frozen=True, slots=True)
class TypingEvent:
    """``user`` is typing in ``channel`` (wire type ``"typing"``)."""

    channel: str
    user: str


@dataclass(frozen=True, slots=True)
class Pong:
    """Reply to ``ping``."""

    id: str | None = None


@dataclass(frozen=True, slots=True)
class Presence:
    """``user`` is ``"online"`` or ``"offline"``; ``last_active`` is their latest heartbeat, or
    ``None`` if never seen."""

    user: str
    status: str
    last_active: float | None


@dataclass(frozen=True, slots=True)
class PresenceDigest:
    """A labkit addition: the presence ``changes`` between ``since`` and ``until``, batched."""

    changes: tuple[Presence, ...]
    since: float
    until: float


@dataclass(frozen=True, slots=True)
class Error:
    """A refused request; ``id`` echoes the request's id when it had a valid one."""

    code: ErrorCode
    message: str
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Reconnect:
    """The gateway is going away (``reason`` ``"draining"``); reconnect, perhaps elsewhere."""

    reason: str


ServerFrame = (
    Welcome
    | Message
    | Ack
    | Reset
    | HistoryReply
    | Joined
    | Left
    | TypingEvent
    | Pong
    | Presence
    | PresenceDigest
    | Error
    | Reconnect
)
