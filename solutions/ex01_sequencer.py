"""Exercise 1, solved: seq numbers per channel, in memory and atomically over Redis.

In memory a dict of counters is all it takes, and it is obviously right in one process. It is
also obviously wrong with two message servers: each has its own dict.

Over Redis the counter, the log and the memory of post ids must change together, and Redis runs
a Lua script without interleaving any other command. So one script does the whole post:

1. the post id was seen before → answer with the seq it got (idempotency: a retry after a lost
   reply must not become a second message);
2. otherwise ``INCR`` the head (a missing key counts as 0, so a channel starts at 1), ``ZADD``
   the frame to the log under that seq, and remember the post id.

A crash before the script runs leaves nothing; a crash after it leaves a complete post that the
retry finds. There is no moment in between for a crash or another client to see.

The frame is built inside the script from three pieces made by
:func:`labkit.core.protocol.encode_message_parts`, because only Redis knows the seq.
"""

from __future__ import annotations

import json
from typing import Any

from labkit.core.protocol import encode_message_parts
from labkit.server.redis.store import IDEM_TTL_S, Appended, head_key, idem_key, log_key


class Sequencer:
    def __init__(self) -> None:
        self._heads: dict[str, int] = {}

    def next(self, channel: str) -> int:
        seq = self._heads.get(channel, 0) + 1
        self._heads[channel] = seq
        return seq

    def head(self, channel: str) -> int:
        return self._heads.get(channel, 0)


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
