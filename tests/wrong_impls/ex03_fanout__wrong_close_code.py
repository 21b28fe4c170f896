"""Closes slow consumers with 1008 (policy violation) instead of 4008."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from labkit.core.protocol import CloseCode, Message, encode

SLOW_CONSUMER = CloseCode.SLOW_CONSUMER

EXERCISE = "ex03_fanout"
MISTAKE = (
    "clients cannot tell a slow-consumer close from an error: they do not resume as the "
    "protocol says"
)
CAUGHT_BY = ("slow_closed",)


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
    text = encode(frame)
    size = len(text.encode("utf-8"))
    for conn in conns:
        if conn.buffered_bytes() + size > max_buffer:
            conn.close(1008)
            result.closed.append(conn)
            continue
        try:
            conn.write(text)
        except (ConnectionError, OSError):
            continue  # the peer is gone; its reader task will clean up
        result.sent.append(conn)
    return result
