"""The labkit wire protocol, version 1: frame dataclasses, parsing, validation and encoding.

Theory of operation
-------------------
Every WebSocket text frame holds one JSON object with a string ``type``. This package is the only
place that turns those objects into typed frames and back; past the parser nothing handles loose
dicts. It is pure: no I/O, no clock, no globals that change. Three modules, one job each:

* :mod:`.frames`, the vocabulary: the limits the contract fixes, ``ErrorCode`` (the ``code`` of
  an ``error`` frame), ``CloseCode`` (the WebSocket close codes), ``ProtocolError``, one frozen
  dataclass per frame type, and the unions ``ClientFrame`` and ``ServerFrame``.
* :mod:`.parsing`, the front door: ``parse_client_frame`` trusts nothing and classifies every
  failure as ``bad_frame``, ``unknown_type`` or ``invalid``, in that order, echoing the frame's
  ``id`` when it is valid; ``parse_server_frame`` is its mirror image for clients and tests.
* :mod:`.encoding`, the one spelling of each frame: ``encode`` (server frames, ``type`` first),
  ``encode_client``, ``frame_to_dict``, and the two hot paths that produce the same text without
  a full encode, ``encode_history_reply`` and ``encode_message_parts``.

For every frame ``f``, ``parse_server_frame(encode(f)) == f`` and
``parse_client_frame(encode_client(f)) == f``.

Import the names from here (``from labkit.core import protocol as p``, or
``from labkit.core.protocol import Message``); ``__all__`` lists them, so the old path's
``from labkit.core.protocol import *`` (``labkit.protocol``) exports exactly these.
"""

from __future__ import annotations

from labkit.core.protocol.encoding import (
    encode,
    encode_client,
    encode_history_reply,
    encode_message_parts,
    frame_to_dict,
)
from labkit.core.protocol.frames import (
    CHANNEL_NAME,
    DEFAULT_HISTORY_LIMIT,
    MAX_DIGEST_S,
    MAX_HISTORY_LIMIT,
    MAX_ID_CHARS,
    MAX_PRESENCE_USERS,
    MAX_TEXT_CHARS,
    MIN_DIGEST_S,
    PROTOCOL_VERSION,
    Ack,
    ChannelInfo,
    ClientFrame,
    CloseCode,
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
from labkit.core.protocol.parsing import parse_client_frame, parse_server_frame

__all__ = [
    "CHANNEL_NAME",
    "DEFAULT_HISTORY_LIMIT",
    "MAX_DIGEST_S",
    "MAX_HISTORY_LIMIT",
    "MAX_ID_CHARS",
    "MAX_PRESENCE_USERS",
    "MAX_TEXT_CHARS",
    "MIN_DIGEST_S",
    "PROTOCOL_VERSION",
    "Ack",
    "ChannelInfo",
    "ClientFrame",
    "CloseCode",
    "Error",
    "ErrorCode",
    "Hello",
    "History",
    "HistoryReply",
    "Join",
    "Joined",
    "Leave",
    "Left",
    "Message",
    "Ping",
    "Pong",
    "Post",
    "Presence",
    "PresenceDigest",
    "PresenceSub",
    "ProtocolError",
    "Reconnect",
    "Reset",
    "ServerFrame",
    "Typing",
    "TypingEvent",
    "Welcome",
    "encode",
    "encode_client",
    "encode_history_reply",
    "encode_message_parts",
    "frame_to_dict",
    "is_valid_channel",
    "parse_client_frame",
    "parse_server_frame",
]
