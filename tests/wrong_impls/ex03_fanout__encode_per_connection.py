"""Encodes the frame inside the loop, once per connection."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from labkit.core.protocol import CloseCode, Message, encode

SLOW_CONSUMER = CloseCode.SLOW_CONSUMER

EXERCISE = "ex03_fanout"
MISTAKE = "serializes the same message once per member: CPU grows with channel size"
CAUGHT_BY = ("encode_once",)


class Conn(Protocol):
    def write(self, text: str) -> None: ...

    def buffered_bytes(self) -> int: ...

    def close(self, code: int) -> None: ...


@dataclass(slots=True)
class FanoutResult:
    sent: list[Conn] = field(default_factory=list)
    closed: list[Conn] = field(default_factory=list)


def fanout(frame: Message, conns: Sequence[Conn], max_buffer: int) -> FanoutResult:
    result = FanoutResult()
    if not conns:
        return result
    for conn in conns:
        text = encode(frame)
        size = len(text.encode("utf-8"))
        if conn.buffered_bytes() + size > max_buffer:
            conn.close(SLOW_CONSUMER)
            result.closed.append(conn)
            continue
        try:
            conn.write(text)
        except (ConnectionError, OSError):
            continue  # the peer is gone; its reader task will clean up
        result.sent.append(conn)
    return result
