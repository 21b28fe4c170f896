"""Parsing and validation of labkit frames: JSON text in, typed frames out.

Theory of operation
-------------------
Every WebSocket text frame holds one JSON object with a string ``type``. This module is the only
place that turns those objects into the dataclasses of :mod:`.frames`; past it nothing handles
loose dicts. It is pure: no I/O, no clock, no globals that change.

* ``parse_client_frame`` is the gateway's front door. It trusts nothing. It classifies every
  failure with the error code the contract asks for ("Errors and limits" in PROTOCOL.md),
  checked in this order:

  1. a binary frame, text that is not JSON (NaN and Infinity included), a JSON value that is not
     an object, or an object without a string ``type`` -> ``bad_frame``;
  2. a ``type`` this server does not know -> ``unknown_type``;
  3. any field missing, of the wrong type or out of range -> ``invalid``.

  The ``ProtocolError`` carries the frame's ``id`` whenever that id is itself valid, so the error
  reply can echo it. Unknown extra fields are ignored, so newer clients keep working.
* ``parse_server_frame`` is the mirror image for clients and black-box tests: anything malformed
  is ``bad_frame`` (a client has no finer way to say that a server misbehaved), and an unknown
  ``type`` is ``unknown_type`` so a client can skip frames a newer server adds.

Both go through ``_Fields``, which reads one field at a time and names the field and the
requirement in every failure, because students read these messages while they write clients.

Strings that hold lone surrogates (``"\\ud800"`` is legal JSON) are refused: they cannot be sent
back out as UTF-8, so accepting one would only move the failure into the gateway's writer.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any, NoReturn, TypeGuard

from labkit.core.protocol.frames import (
    CHANNEL_NAME,
    DEFAULT_HISTORY_LIMIT,
    MAX_DIGEST_S,
    MAX_HISTORY_LIMIT,
    MAX_ID_CHARS,
    MAX_PRESENCE_USERS,
    MAX_TEXT_CHARS,
    MIN_DIGEST_S,
    Ack,
    ChannelInfo,
    ClientFrame,
    Error,
    ErrorCode,
    Hello,
    History,
    HistoryReply,
    Join,
    Joined,
    Leave,
    Left,
    Message,
    Ping,
    Pong,
    Post,
    Presence,
    PresenceDigest,
    PresenceSub,
    ProtocolError,
    Reconnect,
    Reset,
    ServerFrame,
    Typing,
    TypingEvent,
    Welcome,
    is_valid_channel,
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
