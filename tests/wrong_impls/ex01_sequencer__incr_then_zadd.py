"""Uses INCR (atomic on its own), then ZADD and SET as separate commands."""

from __future__ import annotations

import json
from typing import Any

from labkit.core.protocol import encode_message_parts
from labkit.server.redis.store import IDEM_TTL_S, Appended, head_key, idem_key, log_key

EXERCISE = "ex01_sequencer"
MISTAKE = (
    "a crash between INCR and ZADD burns a seq, and a retry racing its original stores the "
    "post twice"
)
CAUGHT_BY = ("redis_crash_safe", "redis_concurrent_retries")


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
    seq = await redis.incr(head_key(channel))  # "INCR is atomic, so this is safe"
    prefix, middle, suffix = encode_message_parts(channel, user, text)
    raw = f"{prefix}{seq}{middle}{float(now)!r}{suffix}"
    await redis.zadd(log_key(channel), {raw: seq})
    await redis.set(idem_key(user, post_id), seq, ex=IDEM_TTL_S)
    return Appended(seq, float(now), raw, False)
