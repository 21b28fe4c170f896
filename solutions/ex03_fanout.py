"""Exercise 3, solved: fanout of one message to every local member.

Encode once, outside the loop: the JSON text is the same for every member, so building it per
connection multiplies the CPU cost of a busy channel by its member count. Measure it once in
UTF-8 bytes, since buffers count bytes.

Then one pass over the connections, none of which can hold up the others: a connection whose
queue would go past the bound is closed with 4008 and skipped (it will reconnect and resume from
``last_seen``, which costs it a gap-fill and nobody else anything); a connection whose write
raises is already gone and is skipped too. Nothing in the loop waits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from labkit.core.protocol import CloseCode, Message, encode

SLOW_CONSUMER = CloseCode.SLOW_CONSUMER


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
            conn.close(SLOW_CONSUMER)
            result.closed.append(conn)
            continue
        try:
            conn.write(text)
        except (ConnectionError, OSError):
            continue  # the peer is gone; its reader task will clean up
        result.sent.append(conn)
    return result
