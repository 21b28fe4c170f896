"""Handing out seq numbers: 1, 2, 3, … per channel, with no gaps and no duplicates.

Two versions of one idea. :class:`MemorySequencer` is the teaching version: a counter per
channel in a dict. It is obviously gap-free, and obviously wrong the moment two processes
(two message servers) each keep their own dict.

:data:`POST_SCRIPT` is the real one. It runs *inside* Redis, and Redis runs a script without
interleaving any other command, so "take the next seq, store the message under it, remember the
post id" is one atomic step however many message servers call it at once. Doing the same with
separate commands would leave windows where a crash between INCR and ZADD burns a seq (a gap
that gap-fill would wait for forever) or where a retried post gets a second seq (a duplicate).
"""

from __future__ import annotations


class MemorySequencer:
    """Per-channel counters in memory: gap-free within one process, and only there."""

    def __init__(self) -> None:
        self._heads: dict[str, int] = {}

    def next(self, channel: str) -> int:
        """Assign and return the next seq of ``channel`` (the first is 1)."""
        seq = self._heads.get(channel, 0) + 1
        self._heads[channel] = seq
        return seq

    def head(self, channel: str) -> int:
        """The highest seq assigned in ``channel`` so far, 0 when none."""
        return self._heads.get(channel, 0)


POST_SCRIPT: str = r"""
-- Sequence and store one post atomically.  Returns one of
--   {"new", seq, ts, raw}    the post got a fresh seq and is stored
--   {"dup", seq, ts, raw}    this (user, post id) was stored before: same answer, nothing new
--   {"conflict"}             this (user, post id) was stored before with another channel/text
--
-- KEYS[1] labkit:ch:{C}:head   KEYS[2] labkit:ch:{C}:log   KEYS[3] labkit:ch:{C}:epoch
-- KEYS[4] labkit:ch:{C}:ts     KEYS[5] labkit:idem:{U}:{ID}
-- ARGV[1] prefix  ARGV[2] middle  ARGV[3] suffix   (frame = prefix..seq..middle..ts..suffix)
-- ARGV[4] ts_text (the server's clock now, as text that parses back to the same float)
-- ARGV[5] epoch candidate  ARGV[6] idempotency TTL in seconds
-- ARGV[7] fingerprint = channel .. "\t" .. sha256(text)

-- A channel whose keys were lost starts a new life: name it, unless it already has a name.
redis.call('SET', KEYS[3], ARGV[5], 'NX')

-- Seen this post id before?  The stored value is "channel \t sha256 \t seq \t ts".
local seen = redis.call('GET', KEYS[5])
if seen then
  local ch, digest, seq, ts = string.match(seen, '^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)$')
  -- Same id, different channel or text: a client bug, refused without storing anything.
  if ch == nil or ch .. '\t' .. digest ~= ARGV[7] then
    return {'conflict'}
  end
  -- A retry: hand back the stored frame so the ack and the message are byte-identical.
  local raw = redis.call('ZRANGEBYSCORE', KEYS[2], seq, seq)[1]
  -- (Should the log entry be gone, the same inputs rebuild the same frame.)
  if not raw then
    raw = ARGV[1] .. seq .. ARGV[2] .. ts .. ARGV[3]
  end
  return {'dup', tonumber(seq), ts, raw}
end

-- The next seq: INCR is 1 on a missing key, so a channel starts at 1.
local seq = redis.call('INCR', KEYS[1])

-- ts never decreases along the seqs: keep the larger of now and the last ts, as the *text*
-- it arrived in, so the float prints the same in every frame and ack that carries it.
local ts = ARGV[4]
local last = redis.call('GET', KEYS[4])
if last and tonumber(last) > tonumber(ts) then
  ts = last
end
redis.call('SET', KEYS[4], ts)

-- The encoded message frame, built once here and stored as the log member under score seq.
local raw = ARGV[1] .. seq .. ARGV[2] .. ts .. ARGV[3]
redis.call('ZADD', KEYS[2], seq, raw)

-- Remember the post id, so a retry gets this same seq instead of a new one.
redis.call('SET', KEYS[5], ARGV[7] .. '\t' .. seq .. '\t' .. ts, 'EX', ARGV[6])

return {'new', seq, ts, raw}
"""
"""The Lua source of the atomic post step; ``labkit.server.redis.store.Store.append`` is its only
caller.

All five keys are declared in KEYS, as Redis requires. The idempotency key is hashed on the
user, not the channel, so on a Redis *Cluster* the keys would span slots; labkit targets one
Redis primary.
"""
