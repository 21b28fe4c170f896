"""Encoding of labkit frames: typed frames in, the one JSON spelling of each out.

Theory of operation
-------------------
* ``encode`` writes server frames as compact JSON with ``type`` first and ``id`` omitted when it
  is ``None``. It is the one encoder the gateway, the store and the recorders share, so a
  ``message`` frame has exactly one spelling (PROTOCOL.md "Messages": the frame every member
  gets is the same frame).
* ``encode_history_reply`` and ``encode_message_parts`` produce that same spelling for two hot
  paths: splicing stored frames into a history reply without re-encoding them, and letting the
  Redis Lua script fill in ``seq`` and ``ts``, which only Redis knows.
* ``encode_client`` is the client's encoder, and ``frame_to_dict`` the plain data of either kind
  of frame, exactly as it travels (recorders and widgets read it).

The parser (:mod:`.parsing`) is the inverse: for every frame ``f``,
``parse_server_frame(encode(f)) == f`` and ``parse_client_frame(encode_client(f)) == f``.
Numbers that JSON cannot hold (NaN, infinities) raise ``ValueError`` rather than leave the
process: a browser would choke on them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from labkit.core.protocol.frames import (
    Ack,
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
    Reconnect,
    Reset,
    ServerFrame,
    Typing,
    TypingEvent,
    Welcome,
)


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


def _welcome_dict(frame: Welcome) -> dict[str, Any]:
    hb = frame.heartbeat_s
    return {
        "type": "welcome",
        "protocol": frame.protocol,
        "user": frame.user,
        "gateway": frame.gateway,
        "heartbeat_s": int(hb) if float(hb).is_integer() else hb,
        "channels": {
            name: {"head": info.head, "epoch": info.epoch} for name, info in frame.channels.items()
        },
    }


def _server_dict(frame: ServerFrame) -> dict[str, Any]:
    match frame:
        case Message():
            return _message_dict(frame)
        case Welcome():
            return _welcome_dict(frame)
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
