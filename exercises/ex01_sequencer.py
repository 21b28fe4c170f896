"""Exercise 1: the per-channel sequencer, in memory and then atomic over Redis.

Task
----
Part 1. Implement :class:`Sequencer` (same interface as
:class:`labkit.core.sequencer.MemorySequencer`):
``next(channel)`` assigns and returns the channel's next seq (the first is 1) and
``head(channel)`` returns the highest seq assigned so far (0 for a channel never used), without
assigning anything. Channels are numbered independently.

Part 2. Implement :func:`append_atomic`, the same idea shared by every message server through
Redis. ``redis`` is a ``redis.asyncio`` client built with ``decode_responses=True``. For the
post ``post_id`` of ``user`` it must, as one atomic step:

- give the post the next seq of ``channel``, kept as an integer string at
  ``labkit.server.redis.store.head_key(channel)`` (a missing key means 0);
- store the encoded ``message`` frame in the sorted set
``labkit.server.redis.store.log_key(channel)``, with
  the seq as score: ``labkit.core.protocol.encode(Message(channel, seq, user, text, now))``, or the
  same text built from ``labkit.core.protocol.encode_message_parts`` plus ``repr(float(now))`` as
  ts;
- remember the post id (under ``labkit.server.redis.store.idem_key(user, post_id)``, expiring after
  ``labkit.server.redis.store.IDEM_TTL_S``) so that a retry of the same ``(user, post_id)`` stores
  nothing
  and returns what the first call got, with ``duplicate=True``.

Return ``labkit.server.redis.store.Appended(seq, ts, raw, duplicate)``, where ``raw`` is the stored
frame and
``ts`` its ts. The checks run 200 concurrent calls from several clients, retries racing their
originals, and connections that drop in the middle of a call (before a command reaches Redis,
or after Redis ran it and the reply was lost); the log must stay gap-free and duplicate-free.
Hint: Redis runs a Lua script (``redis.eval`` or ``redis.register_script``) without
interleaving any other client's command. (Optimistic WATCH/MULTI with retries is correct too,
but slow under the checks' 200 concurrent writers: try both and compare.)

Why
---
Protocol guarantee 1: per channel, seq runs 1, 2, 3, … with no gaps and no duplicates, whichever
server handled the post. Gap-fill (exercises 4 and 5) trusts it completely: a duplicate seq
means two different messages claim the same place, and a burned seq is a hole every reader
waits for forever.

Interview angle
---------------
"How do you generate ordered IDs across many servers?" A single sequencer per partition (here a
Redis key per channel), why read-then-write races and INCR does not, why INCR alone is not
enough when the seq and the stored message must change together (a crash in between burns a
seq), transactions versus Lua scripts versus WATCH/MULTI, and idempotency keys for retries after
an ambiguous failure (the request may or may not have run).

Grade it: ``labkit grade ex01``.
"""

from __future__ import annotations

from typing import Any

from labkit.server.redis.store import Appended


class Sequencer:
    """Per-channel counters in memory: gap-free within one process."""

    def __init__(self) -> None:
        raise NotImplementedError("Sequencer.__init__")

    def next(self, channel: str) -> int:
        """Assign and return the next seq of ``channel`` (the first is 1)."""
        raise NotImplementedError("Sequencer.next")

    def head(self, channel: str) -> int:
        """The highest seq assigned in ``channel`` so far, 0 when none."""
        raise NotImplementedError("Sequencer.head")


async def append_atomic(
    redis: Any, channel: str, user: str, post_id: str, text: str, now: float
) -> Appended:
    """Sequence and store one post atomically and idempotently; see the module docstring."""
    raise NotImplementedError("append_atomic")
