"""The labkit wire protocol, version 1: frame dataclasses, parsing, validation and encoding.

Theory of operation
-------------------
Every WebSocket text frame holds one JSON object with a string ``type``. This module is the only
place that turns those objects into typed frames and back; past the parser nothing handles loose
dicts. It is pure: no I/O, no clock, no globals that change.

* ``parse_client_frame`` is the gateway's front door. It trusts nothing. It classifies every
  failure with the error code the contract asks for, checked in this order:

  1. a binary frame, text that is not JSON (NaN and Infinity included), a JSON value that is not
     an object, or an object without a string ``type`` -> ``bad_frame``;
  2. a ``type`` this server does not know -> ``unknown_type``;
  3. any field missing, of the wrong type or out of range -> ``invalid``.

  The ``ProtocolError`` carries the frame's ``id`` whenever that id is itself valid, so the error
  reply can echo it. Unknown extra fields are ignored, so newer clients keep working.
* ``encode`` writes server frames as compact JSON with ``type`` first. It is the one encoder the
  gateway, the store and the recorders share, so a message frame has exactly one spelling.
  ``encode_history_reply`` and ``encode_message_parts`` produce that same spelling for two hot
  paths: splicing stored frames into a history reply without re-encoding them, and letting the
  Redis Lua script fill in ``seq`` and ``ts``, which only Redis knows.
* ``parse_server_frame`` and ``encode_client`` are the mirror images for clients and tests. For
  every frame ``f``, ``parse_server_frame(encode(f)) == f`` and
  ``parse_client_frame(encode_client(f)) == f``.

Strings that hold lone surrogates (``"\\ud800"`` is legal JSON) are refused: they cannot be sent
back out as UTF-8, so accepting one would only move the failure into the gateway's writer.
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeGuard

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

# --------------------------------------------------------------------------- decoding helpers


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _load_object(data: str | bytes, what: str) -> dict[str, Any]:
    """Decode one frame to a JSON object, or raise ``bad_frame``.

    ``RecursionError`` is caught too: ``[[[[…]]]]`` deeper than Python's stack is valid JSON.
    """
    if not isinstance(data, str):
        raise ProtocolError(ErrorCode.BAD_FRAME, f"{what} frames must be text frames, not binary")
    try:
        obj = json.loads(data, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        raise ProtocolError(ErrorCode.BAD_FRAME, "the frame is not valid JSON") from None
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.BAD_FRAME, "the frame must be a JSON object")
    return obj


def _is_scalar_text(value: str) -> bool:
    """Whether ``value`` can be encoded as UTF-8, that is, holds no lone surrogate."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_valid_id(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and 1 <= len(value) <= MAX_ID_CHARS and _is_scalar_text(value)


def _is_int(value: object) -> TypeGuard[int]:
    """A JSON integer: ``True`` is an ``int`` in Python but a boolean on the wire."""
    return isinstance(value, int) and not isinstance(value, bool)


def _as_number(value: object) -> float | None:
    """The JSON number as a finite float, or ``None`` for anything else.

    Integers beyond float range (``1e999`` written out) count as not a number rather than
    raising ``OverflowError`` later.
    """
    if _is_int(value):
        try:
            return float(value)
        except OverflowError:
            return None
    if isinstance(value, float) and math.isfinite(value):
        return value
    return None


def _show(value: object) -> str:
    """A short, escaped rendering of client data for an error message."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class _Fields:
    """Typed access to one frame's fields; every failure names the field and the requirement.

    ``code`` is ``invalid`` for client frames and ``bad_frame`` for server frames (a client has
    no finer way to say that a server misbehaved).
    """

    __slots__ = ("code", "id", "obj")

    def __init__(self, obj: dict[str, Any], code: ErrorCode, id: str | None) -> None:
        self.obj = obj
        self.code = code
        self.id = id

    def fail(self, key: str, requirement: str) -> NoReturn:
        raise ProtocolError(self.code, f"'{key}' must be {requirement}", self.id)

    def get(self, key: str, requirement: str) -> object:
        if key not in self.obj:
            raise ProtocolError(self.code, f"'{key}' is missing; it must be {requirement}", self.id)
        return self.obj[key]

    def string(self, key: str, max_len: int | None = None, *, min_len: int = 1) -> str:
        if max_len is None:
            req = "a non-empty string" if min_len else "a string"
        else:
            req = f"a string of {min_len} to {max_len} characters"
        value = self.get(key, req)
        if not isinstance(value, str) or not _is_scalar_text(value):
            self.fail(key, req)
        if len(value) < min_len or (max_len is not None and len(value) > max_len):
            self.fail(key, req)
        return value

    def integer(self, key: str, lo: int, hi: int | None = None) -> int:
        req = f"an integer from {lo} to {hi}" if hi is not None else f"an integer >= {lo}"
        value = self.get(key, req)
        if not _is_int(value) or value < lo or (hi is not None and value > hi):
            self.fail(key, req)
        return value

    def number(self, key: str, lo: float | None = None, hi: float | None = None) -> float:
        if lo is not None and hi is not None:
            req = f"a number from {lo:g} to {hi:g}"
        elif lo is not None:
            req = f"a number greater than {lo:g}"
        else:
            req = "a finite number"
        number = _as_number(self.get(key, req))
        if number is None:
            self.fail(key, req)
        if lo is not None and hi is None and not number > lo:
            self.fail(key, req)
        if lo is not None and hi is not None and not lo <= number <= hi:
            self.fail(key, req)
        return number

    def channel(self, key: str = "channel") -> str:
        value = self.get(key, "a channel name")
        if not is_valid_channel(value):
            self.fail(key, f"a channel name matching {CHANNEL_NAME.pattern}, not {_show(value)}")
        return value

    def required_id(self) -> str:
        """The frame's id, which the caller has already checked is valid when present."""
        if self.id is None:
            raise ProtocolError(self.code, f"'id' is missing; it must be {_ID_RULE}", None)
        return self.id

    def mapping(self, key: str) -> dict[str, Any]:
        value = self.obj.get(key, {})
        if not isinstance(value, dict):
            self.fail(key, "an object keyed by channel name")
        for name in value:
            if not is_valid_channel(name):
                self.fail(key, f"an object keyed by channel name, not by {_show(name)}")
        return value


_ID_RULE = f"a string of 1 to {MAX_ID_CHARS} characters"


def _frame_id(obj: dict[str, Any], code: ErrorCode) -> str | None:
    """The frame's ``id``, or raise if one is present but not a string of 1..64 characters."""
    value = obj.get("id")
    if "id" in obj and not _is_valid_id(value):
        raise ProtocolError(code, f"'id' must be {_ID_RULE}, not {_show(value)}")
    return value if isinstance(value, str) else None


# --------------------------------------------------------------------------- client frames


def _parse_hello(f: _Fields) -> Hello:
    token = f.string("token")
    last_seen: dict[str, int] = {}
    for name, seq in f.mapping("last_seen").items():
        if not _is_int(seq) or seq < 0:
            f.fail(f"last_seen.{name}", "an integer >= 0")
        last_seen[name] = seq
    epochs: dict[str, str] = {}
    for name, epoch in f.mapping("epochs").items():
        if not isinstance(epoch, str) or not epoch or not _is_scalar_text(epoch):
            f.fail(f"epochs.{name}", "a non-empty string")
        epochs[name] = epoch
    return Hello(token, last_seen, epochs)


def _parse_history(f: _Fields) -> History:
    channel = f.channel()
    after = f.integer("after", 0) if "after" in f.obj else 0
    limit = f.integer("limit", 1, MAX_HISTORY_LIMIT) if "limit" in f.obj else DEFAULT_HISTORY_LIMIT
    return History(f.id, channel, after, limit)


def _parse_presence_sub(f: _Fields) -> PresenceSub:
    req = f"a list of at most {MAX_PRESENCE_USERS} non-empty strings"
    users = f.get("users", req)
    if not isinstance(users, list) or len(users) > MAX_PRESENCE_USERS:
        f.fail("users", req)
    for user in users:
        if not isinstance(user, str) or not user or not _is_scalar_text(user):
            f.fail("users", f"{req}, and {_show(user)} is not one")
    digest_s = f.number("digest_s", MIN_DIGEST_S, MAX_DIGEST_S) if "digest_s" in f.obj else None
    return PresenceSub(tuple(dict.fromkeys(users)), digest_s, f.id)


_CLIENT_PARSERS: dict[str, Callable[[_Fields], ClientFrame]] = {
    "hello": _parse_hello,
    "post": lambda f: Post(f.required_id(), f.channel(), f.string("text", MAX_TEXT_CHARS)),
    "history": _parse_history,
    "join": lambda f: Join(f.id, f.channel()),
    "leave": lambda f: Leave(f.id, f.channel()),
    "typing": lambda f: Typing(f.channel(), f.id),
    "ping": lambda f: Ping(f.id),
    "presence_sub": _parse_presence_sub,
}


def parse_client_frame(data: str | bytes) -> ClientFrame:
    """Parse and validate one frame from a client, or raise ``ProtocolError``.

    Never raises anything else, whatever ``data`` holds. The error carries the frame's ``id``
    when that id is valid, so the gateway can send ``error.as_frame()`` as the reply.
    """
    obj = _load_object(data, "client")
    raw_id = obj.get("id")
    id = raw_id if _is_valid_id(raw_id) else None  # what an error reply may echo
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(ErrorCode.BAD_FRAME, "the frame needs a string field 'type'", id)
    parser = _CLIENT_PARSERS.get(kind)
    if parser is None:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown frame type {_show(kind)}", id)
    return parser(_Fields(obj, ErrorCode.INVALID, _frame_id(obj, ErrorCode.INVALID)))


# --------------------------------------------------------------------------- encoding


def _dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _with_id(d: dict[str, Any], id: str | None) -> dict[str, Any]:
    if id is not None:
        d["id"] = id
    return d


def _message_dict(m: Message) -> dict[str, Any]:
    return {
        "type": "message",
        "channel": m.channel,
        "seq": m.seq,
        "user": m.user,
        "text": m.text,
        "ts": float(m.ts),
    }


def _presence_dict(p: Presence) -> dict[str, Any]:
    last_active = None if p.last_active is None else float(p.last_active)
    return {"type": "presence", "user": p.user, "status": p.status, "last_active": last_active}


def _server_dict(frame: ServerFrame) -> dict[str, Any]:
    match frame:
        case Message():
            return _message_dict(frame)
        case Welcome():
            hb = frame.heartbeat_s
            return {
                "type": "welcome",
                "protocol": frame.protocol,
                "user": frame.user,
                "gateway": frame.gateway,
                "heartbeat_s": int(hb) if float(hb).is_integer() else hb,
                "channels": {
                    name: {"head": info.head, "epoch": info.epoch}
                    for name, info in frame.channels.items()
                },
            }
        case Ack():
            return {
                "type": "ack",
                "id": frame.id,
                "channel": frame.channel,
                "seq": frame.seq,
                "ts": float(frame.ts),
            }
        case Reset():
            return {
                "type": "reset",
                "channel": frame.channel,
                "head": frame.head,
                "epoch": frame.epoch,
                "reason": frame.reason,
            }
        case HistoryReply():
            d = _with_id({"type": "history"}, frame.id)
            d.update(channel=frame.channel, head=frame.head)
            d["messages"] = [_message_dict(m) for m in frame.messages]
            return d
        case Joined():
            d = _with_id({"type": "joined"}, frame.id)
            d.update(channel=frame.channel, head=frame.head, epoch=frame.epoch)
            return d
        case Left():
            return _with_id({"type": "left"}, frame.id) | {"channel": frame.channel}
        case TypingEvent():
            return {"type": "typing", "channel": frame.channel, "user": frame.user}
        case Pong():
            return _with_id({"type": "pong"}, frame.id)
        case Presence():
            return _presence_dict(frame)
        case PresenceDigest():
            return {
                "type": "presence_digest",
                "changes": [_presence_dict(p) for p in frame.changes],
                "since": float(frame.since),
                "until": float(frame.until),
            }
        case Error():
            d = {"type": "error", "code": ErrorCode(frame.code).value, "message": frame.message}
            return _with_id(d, frame.id)
        case Reconnect():
            return {"type": "reconnect", "reason": frame.reason}
    raise TypeError(f"not a server frame: {frame!r}")


def _client_dict(frame: ClientFrame) -> dict[str, Any]:
    match frame:
        case Hello():
            return {
                "type": "hello",
                "token": frame.token,
                "last_seen": dict(frame.last_seen),
                "epochs": dict(frame.epochs),
            }
        case Post():
            return {"type": "post", "id": frame.id, "channel": frame.channel, "text": frame.text}
        case History():
            d = _with_id({"type": "history"}, frame.id)
            d.update(channel=frame.channel, after=frame.after, limit=frame.limit)
            return d
        case Join() | Leave():
            kind = "join" if isinstance(frame, Join) else "leave"
            return _with_id({"type": kind}, frame.id) | {"channel": frame.channel}
        case Typing():
            return _with_id({"type": "typing"}, frame.id) | {"channel": frame.channel}
        case Ping():
            return _with_id({"type": "ping"}, frame.id)
        case PresenceSub():
            d = _with_id({"type": "presence_sub"}, frame.id)
            d["users"] = list(frame.users)
            if frame.digest_s is not None:
                d["digest_s"] = frame.digest_s
            return d
    raise TypeError(f"not a client frame: {frame!r}")


def encode(frame: ServerFrame) -> str:
    """Encode a server frame as compact JSON, ``type`` first, ``id`` omitted when ``None``.

    Raises ``ValueError`` for a non-finite number: JSON has no NaN, and a browser would choke.
    """
    return _dumps(_server_dict(frame))


def encode_client(frame: ClientFrame) -> str:
    """Encode a client frame; the inverse of ``parse_client_frame`` (used by the Python client)."""
    return _dumps(_client_dict(frame))


def frame_to_dict(frame: ServerFrame | ClientFrame) -> dict[str, Any]:
    """The frame as fresh plain data, exactly as it travels on the wire (recorders, widgets)."""
    if isinstance(frame, Hello | Post | History | Join | Leave | Typing | Ping | PresenceSub):
        return _client_dict(frame)
    return _server_dict(frame)


def encode_history_reply(
    id: str | None, channel: str, head: int, raw_messages: Sequence[str]
) -> str:
    """A ``history`` reply around message frames that are already encoded (as the store holds
    them), spliced in verbatim: re-encoding a thousand frames per page would be wasted work.

    ``json.loads`` of the result equals ``json.loads(encode(HistoryReply(...)))``.
    """
    empty = encode(HistoryReply(id, channel, head, ()))
    assert empty.endswith('"messages":[]}')
    return empty[:-2] + ",".join(raw_messages) + "]}"


def encode_message_parts(channel: str, user: str, text: str) -> tuple[str, str, str]:
    """Split a ``message`` frame around the two values only Redis knows, ``seq`` and ``ts``.

    ``prefix + str(seq) + middle + ts_text + suffix`` is the frame that
    ``encode(Message(channel, seq, user, text, float(ts_text)))`` writes (character for character
    when ``ts_text == repr(float(ts_text))``), so the sequencer's Lua script can store and
    publish it without a JSON library.
    """
    prefix = '{"type":"message","channel":' + _dumps(channel) + ',"seq":'
    middle = ',"user":' + _dumps(user) + ',"text":' + _dumps(text) + ',"ts":'
    return prefix, middle, "}"


# --------------------------------------------------------------------------- server frames


def _parse_message(f: _Fields) -> Message:
    channel, seq, user = f.channel(), f.integer("seq", 1), f.string("user")
    return Message(channel, seq, user, f.string("text", min_len=0), f.number("ts"))


def _nested(f: _Fields, key: str, kind: str, item: object) -> _Fields:
    if not isinstance(item, dict) or item.get("type") != kind:
        f.fail(key, f"a list of {kind} objects")
    return _Fields(item, ErrorCode.BAD_FRAME, None)


def _parse_presence(f: _Fields) -> Presence:
    user, status = f.string("user"), f.string("status")
    f.get("last_active", "a number or null")
    last_active = None if f.obj["last_active"] is None else f.number("last_active")
    return Presence(user, status, last_active)


def _parse_welcome(f: _Fields) -> Welcome:
    channels: dict[str, ChannelInfo] = {}
    raw = f.get("channels", "an object keyed by channel name")
    if not isinstance(raw, dict):
        f.fail("channels", "an object keyed by channel name")
    for name in f.mapping("channels"):
        info = raw[name]
        if not isinstance(info, dict):
            f.fail(f"channels.{name}", "an object with 'head' and 'epoch'")
        g = _Fields(info, ErrorCode.BAD_FRAME, None)
        channels[name] = ChannelInfo(g.integer("head", 0), g.string("epoch"))
    user, gateway, heartbeat_s = f.string("user"), f.string("gateway"), f.number("heartbeat_s", 0)
    return Welcome(user, gateway, heartbeat_s, channels, f.integer("protocol", 1))


def _parse_history_reply(f: _Fields) -> HistoryReply:
    channel, head = f.channel(), f.integer("head", 0)
    raw = f.get("messages", "a list of message objects")
    if not isinstance(raw, list):
        f.fail("messages", "a list of message objects")
    messages = tuple(_parse_message(_nested(f, "messages", "message", m)) for m in raw)
    return HistoryReply(f.id, channel, head, messages)


def _parse_digest(f: _Fields) -> PresenceDigest:
    raw = f.get("changes", "a list of presence objects")
    if not isinstance(raw, list):
        f.fail("changes", "a list of presence objects")
    changes = tuple(_parse_presence(_nested(f, "changes", "presence", p)) for p in raw)
    return PresenceDigest(changes, f.number("since"), f.number("until"))


def _parse_error(f: _Fields) -> Error:
    code = f.string("code")
    if code not in {c.value for c in ErrorCode}:
        f.fail("code", "one of " + ", ".join(c.value for c in ErrorCode))
    return Error(ErrorCode(code), f.string("message", min_len=0), f.id)


def _parse_ack(f: _Fields) -> Ack:
    return Ack(f.required_id(), f.channel(), f.integer("seq", 1), f.number("ts"))


_SERVER_PARSERS: dict[str, Callable[[_Fields], ServerFrame]] = {
    "welcome": _parse_welcome,
    "message": _parse_message,
    "ack": _parse_ack,
    "reset": lambda f: Reset(
        f.channel(), f.integer("head", 0), f.string("epoch"), f.string("reason")
    ),
    "history": _parse_history_reply,
    "joined": lambda f: Joined(f.channel(), f.integer("head", 0), f.string("epoch"), f.id),
    "left": lambda f: Left(f.channel(), f.id),
    "typing": lambda f: TypingEvent(f.channel(), f.string("user")),
    "pong": lambda f: Pong(f.id),
    "presence": _parse_presence,
    "presence_digest": _parse_digest,
    "error": _parse_error,
    "reconnect": lambda f: Reconnect(f.string("reason")),
}


def parse_server_frame(data: str | bytes) -> ServerFrame:
    """Parse one frame from a server (for clients and black-box tests).

    Anything malformed raises ``ProtocolError(BAD_FRAME)``; a type this module does not know
    raises ``ProtocolError(UNKNOWN_TYPE)`` so a client can skip frames a newer server adds.
    """
    obj = _load_object(data, "server")
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(ErrorCode.BAD_FRAME, "the frame needs a string field 'type'")
    parser = _SERVER_PARSERS.get(kind)
    if parser is None:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown frame type {_show(kind)}")
    return parser(_Fields(obj, ErrorCode.BAD_FRAME, _frame_id(obj, ErrorCode.BAD_FRAME)))
