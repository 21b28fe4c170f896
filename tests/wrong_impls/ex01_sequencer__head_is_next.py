"""head() answers the seq that next() would give, not the last one given."""

from __future__ import annotations

import json
from typing import Any

from labkit.core.protocol import encode_message_parts
from labkit.server.redis.store import IDEM_TTL_S, Appended, head_key, idem_key, log_key

EXERCISE = "ex01_sequencer"
MISTAKE = "off by one: head reports a seq nobody was given, so resuming clients wait for it forever"
CAUGHT_BY = ("memory_counts",)


class Sequencer:
    def __init__(self) -> None:
        self._heads: dict[str, int] = {}

    def next(self, channel: str) -> int:
        seq = self._heads.get(channel, 0) + 1
        self._heads[channel] = seq
        return seq

    def head(self, channel: str) -> int:
        return self._heads.get(channel, 0) + 1


APPEND_SCRIPT = r"""
-- KEYS[1] head  KEYS[2] log  KEYS[3] post id
-- ARGV[1..3] frame pieces around seq and ts   ARGV[4] ts text   ARGV[5] post id TTL (s)
local seen = redis.call('GET', KEYS[3])
if seen then
  local raw = redis.call('ZRANGEBYSCORE', KEYS[2], seen, seen)[1]
  return {tonumber(seen), raw or '', 1}
end
local seq = redis.call('INCR', KEYS[1])
local raw = ARGV[1] .. seq .. ARGV[2] .. ARGV[4] .. ARGV[3]
redis.call('ZADD', KEYS[2], seq, raw)
redis.call('SET', KEYS[3], seq, 'EX', ARGV[5])
return {seq, raw, 0}
"""


async def append_atomic(
    redis: Any, channel: str, user: str, post_id: str, text: str, now: float
) -> Appended:
    prefix, middle, suffix = encode_message_parts(channel, user, text)
    seq, raw, duplicate = await redis.eval(
        APPEND_SCRIPT,
        3,
        head_key(channel),
        log_key(channel),
        idem_key(user, post_id),
        prefix,
        middle,
        suffix,
        repr(float(now)),
        IDEM_TTL_S,
    )
    ts = float(json.loads(raw)["ts"]) if raw else float(now)
    return Appended(seq=int(seq), ts=ts, raw=raw, duplicate=bool(duplicate))
