"""Reads the head, adds one in Python, and writes it back: a non-atomic increment."""

from __future__ import annotations

import json
from typing import Any

from labkit.core.protocol import encode_message_parts
from labkit.server.redis.store import IDEM_TTL_S, Appended, head_key, idem_key, log_key

EXERCISE = "ex01_sequencer"
MISTAKE = "two servers read the same head and hand out the same seq (lost update)"
CAUGHT_BY = ("redis_concurrent",)


class Sequencer:
    def __init__(self) -> None:
        self._heads: dict[str, int] = {}

    def next(self, channel: str) -> int:
        seq = self._heads.get(channel, 0) + 1
        self._heads[channel] = seq
        return seq

    def head(self, channel: str) -> int:
        return self._heads.get(channel, 0)


async def append_atomic(
    redis: Any, channel: str, user: str, post_id: str, text: str, now: float
) -> Appended:
    seen = await redis.get(idem_key(user, post_id))
    if seen is not None:
        raw = (await redis.zrangebyscore(log_key(channel), seen, seen))[0]
        return Appended(int(seen), float(json.loads(raw)["ts"]), raw, True)
    seq = int(await redis.get(head_key(channel)) or 0) + 1
    await redis.set(head_key(channel), seq)
    prefix, middle, suffix = encode_message_parts(channel, user, text)
    raw = f"{prefix}{seq}{middle}{float(now)!r}{suffix}"
    await redis.zadd(log_key(channel), {raw: seq})
    await redis.set(idem_key(user, post_id), seq, ex=IDEM_TTL_S)
    return Appended(seq, float(now), raw, False)
