"""Writes first and checks the bound afterwards."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from labkit.core.protocol import CloseCode, Message, encode

SLOW_CONSUMER = CloseCode.SLOW_CONSUMER

EXERCISE = "ex03_fanout"
MISTAKE = "a full queue is written past its bound before the slow connection is closed"
CAUGHT_BY = ("slow_closed", "no_stall")


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
    for conn in conns:
        try:
            conn.write(text)
        except (ConnectionError, OSError):
            continue
        if conn.buffered_bytes() > max_buffer:
            conn.close(SLOW_CONSUMER)
            result.closed.append(conn)
            continue
        result.sent.append(conn)
    return result
