"""Exercise 3: fanout, one bus message to every local member of a channel.

Task
----
Implement :func:`fanout`. Given one ``message`` frame (a :class:`labkit.core.protocol.Message`), the
gateway's local connections that should receive it, and the per-connection bound on queued
outgoing bytes, write the frame to each connection and return who got it:

- encode the frame **once** with :func:`labkit.core.protocol.encode`, and hand that same string to
  every connection's ``write``;
- a connection is too slow when writing the frame would take its queue past the bound:
  ``conn.buffered_bytes() + size > max_buffer``, where ``size`` is the encoded frame's length in
  **UTF-8 bytes**. (Exactly reaching the bound is fine.) Close it with code 4008 and do not
  write to it;
- a ``write`` that raises ``ConnectionError`` (the peer is gone) is skipped: that connection is
  not counted as sent;
- nothing about one connection may delay or prevent delivery to the others.

Return a :class:`FanoutResult`: ``sent`` (written to, in the given order) and ``closed`` (closed
with 4008, in order).

Why
---
A message in a busy channel is one bus event for the gateway but thousands of writes. Encoding per
connection multiplies CPU by the member count; letting one phone on a bad network back up its
queue without bound grows the gateway's memory until it falls over, and waiting for it stalls
everyone else (head-of-line blocking). Slack-style systems bound each connection's queue and
disconnect the slow consumer; it reconnects and catches up through gap-fill, at its own cost.

Interview angle
---------------
"One user on a slow connection: what happens to the others?" Bounded per-connection queues,
dropping or disconnecting the slow consumer rather than blocking the fanout loop, and doing the
shared work (serialization) once. Follow-ups: why close rather than drop messages silently
(protocol guarantee 2: no holes), and where backpressure belongs (per connection, never global).

Grade it: ``labkit grade ex03``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from labkit.core.protocol import CloseCode, Message

SLOW_CONSUMER = CloseCode.SLOW_CONSUMER
"""4008: the close code for a connection whose outgoing queue went past its bound (PROTOCOL.md,
"Errors and limits"). An ``IntEnum`` member, so it is the number 4008 wherever one is expected."""


class Conn(Protocol):
    """What fanout needs from a connection."""

    def write(self, text: str) -> None:
        """Queue one text frame (never blocks; raises ConnectionError if the peer is gone)."""
        ...

    def buffered_bytes(self) -> int:
        """Bytes queued for this connection and not yet sent."""
        ...

    def close(self, code: int) -> None:
        """Close the connection with a WebSocket close code."""
        ...


@dataclass(slots=True)
class FanoutResult:
    sent: list[Conn] = field(default_factory=list)
    """Connections the frame was written to, in order."""
    closed: list[Conn] = field(default_factory=list)
    """Connections closed with 4008 as slow consumers, in order."""


def fanout(frame: Message, conns: Sequence[Conn], max_buffer: int) -> FanoutResult:
    """Write ``frame`` to every connection in ``conns``; close the slow ones with 4008."""
    raise NotImplementedError("fanout")
