"""Shared presence in Redis: the rules of :mod:`labkit.core.presence`, for many gateways at once.

Why Redis: a user's laptop may be connected to gateway 1 and their phone to gateway 2, and a
subscriber watching them may sit on gateway 3. Each gateway only sees its own connections, so
the heartbeats must meet in one shared place, and each status change must be announced by
exactly one process, however many are watching the same clock run out.

Keys (``{U}`` is a hash tag, as in ``docs/architecture.md``):

=================================  ===========  ==============================================
key                                type         holds
=================================  ===========  ==============================================
``labkit:presence:conns:{U}``      sorted set   member = connection id, score = its latest
                                                heartbeat; entries older than the expiry are
                                                pruned on each heartbeat, and the key expires
                                                by itself ``2 * expiry_s`` after the latest one
``labkit:presence:online``         sorted set   member = user *announced* online, score =
                                                their ``last_active`` (newest heartbeat on
                                                any connection); membership is the "online"
                                                mark, the score orders users by deadline
``labkit:presence:last_active``    hash         user -> latest heartbeat, kept after they go
                                                offline ("last seen"); one field per user
=================================  ===========  ==============================================

Exactly once: :meth:`PresenceStore.heartbeat` is one Lua script that adds the connection, reads
the mark and sets it, so of two gateways heartbeating the same user at once only the one that
found no mark announces ``online``. :meth:`PresenceStore.expire` reads the users whose score is
past the deadline (``ZRANGEBYSCORE``, O(log n + expired), never a scan of everyone) and flips
each with a second script that re-checks the score and removes the mark; only the caller whose
script removed it gets the ``offline`` transition. Every gateway calls ``expire`` about once a
second, so a crashed gateway's users are expired by the survivors.

The online mark is one key for all users, so these scripts touch keys of more than one hash
slot: fine on the single Redis labkit runs; a Redis Cluster deployment would put every presence
key under one hash tag.

Floats cross into Lua as ``repr`` strings (exact) and are stored from those strings, never
re-formatted by Lua (which would keep only 14 digits). Comparisons are the same IEEE double
arithmetic as in :class:`~labkit.core.presence.PresenceTracker`: offline exactly when
``last_active + expiry_s <= now``.

The gateway publishes what ``heartbeat`` and ``expire`` return on :data:`PRESENCE_TOPIC`
(:func:`encode_transition`), separate from channel messages, so presence never delays them.
It may coalesce heartbeats (call ``heartbeat`` at most once a second per connection, say): the
status only needs one heartbeat per ``expiry_s``, at the price of a coarser ``last_active``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from labkit.core.gateway.bus_payloads import (  # the payload codec lives with the others
    PRESENCE_TOPIC as PRESENCE_TOPIC,
)
from labkit.core.gateway.bus_payloads import decode_transition as decode_transition
from labkit.core.gateway.bus_payloads import encode_transition as encode_transition
from labkit.core.presence import OFFLINE, ONLINE, Transition
from labkit.server.redis.store import reaching

ONLINE_KEY = "labkit:presence:online"
LAST_ACTIVE_KEY = "labkit:presence:last_active"

EXPIRE_BATCH = 1000
"""Users flipped per round trip in :meth:`PresenceStore.expire`."""

_CANDIDATE_SLACK_S = 1e-3
"""``expire`` reads candidates a little past the deadline and lets the script decide exactly,
so that ``now - expiry`` rounding differently from ``score + expiry`` can never miss a user."""


def conns_key(user: str) -> str:
    return f"labkit:presence:conns:{{{user}}}"


HEARTBEAT_SCRIPT = """
-- KEYS: conns:{U}, online, last_active   ARGV: user, conn, now, expiry_s, conns_ttl_ms
-- Returns the new last_active (a string) when this call announces the user online, else nil.
local user, conn = ARGV[1], ARGV[2]
local now, expiry = tonumber(ARGV[3]), tonumber(ARGV[4])
local old = redis.call('ZSCORE', KEYS[1], conn)
if (not old) or tonumber(old) < now then
  redis.call('ZADD', KEYS[1], ARGV[3], conn)
end
-- Connections that stopped heartbeating (closed, or lost with a crashed gateway).
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.17g', now - expiry))
redis.call('PEXPIRE', KEYS[1], ARGV[5])
local prev = redis.call('ZSCORE', KEYS[2], user)
local last = ARGV[3]
if prev and tonumber(prev) > now then
  last = prev  -- another gateway's clock is ahead: last_active never goes back
end
redis.call('ZADD', KEYS[2], last, user)
redis.call('HSET', KEYS[3], user, last)
-- Announce when nobody was told this user is online, or when their deadline passed but no
-- expire() has announced the offline yet (a repeat of "online", never an offline/online pair).
if (not prev) or tonumber(prev) + expiry <= now then
  return last
end
return false
"""

EXPIRE_SCRIPT = """
-- KEYS: online, conns:{U}   ARGV: user, now, expiry_s
-- Returns the user's last_active (a string) if this call flipped them offline, else nil.
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then
  return false  -- not online, or another gateway flipped them first
end
if tonumber(score) + tonumber(ARGV[3]) > tonumber(ARGV[2]) then
  return false  -- heartbeated since it was read as a candidate
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
return score
"""


class PresenceStore:
    """Presence shared by every gateway through Redis (redis-py asyncio; fakeredis or real).

    ``redis`` must be a client with ``decode_responses=True``. Connection failures raise
    :class:`labkit.server.redis.store.StoreUnavailable`; the gateway logs them and tries again on
    its next
    timer tick (presence must never hold up messages).
    """

    def __init__(self, redis: aioredis.Redis, *, heartbeat_s: float = 10.0) -> None:
        if heartbeat_s <= 0:
            raise ValueError(f"heartbeat_s must be positive, got {heartbeat_s!r}")
        self.redis = redis
        self.heartbeat_s = heartbeat_s
        self.expiry_s = 3 * heartbeat_s
        self._conns_ttl_ms = math.ceil(2 * self.expiry_s * 1000)
        self._heartbeat = redis.register_script(HEARTBEAT_SCRIPT)
        self._expire_one = redis.register_script(EXPIRE_SCRIPT)

    async def heartbeat(self, user: str, conn_id: str, now: float) -> Transition | None:
        """Record a heartbeat of ``conn_id``; the ``online`` transition if this call announces
        the user online (exactly one caller does), else ``None``. Also use it at ``welcome``.
        """
        with reaching(self.redis, "record a heartbeat"):
            last = await self._heartbeat(
                keys=[conns_key(user), ONLINE_KEY, LAST_ACTIVE_KEY],
                args=[user, conn_id, repr(float(now)), repr(self.expiry_s), self._conns_ttl_ms],
            )
        if last is None:
            return None
        return Transition(user, ONLINE, float(last), now)

    async def disconnect(self, user: str, conn_id: str, now: float) -> list[Transition]:
        """A connection closed: deliberately does nothing, and so announces nothing.

        The entry keeps the time of its last heartbeat and expires like that of a connection
        whose gateway crashed, so a user who reconnects within ``expiry_s`` (a phone switching
        networks, a gateway draining with ``reconnect``) never appears offline: announcing
        offline at close would flap their status for everyone watching. See
        :meth:`labkit.core.presence.PresenceTracker.disconnect`.
        """
        del user, conn_id, now
        return []

    async def expire(self, now: float) -> list[Transition]:
        """Flip to offline every user whose newest heartbeat is ``expiry_s`` old at ``now``.

        Safe to call from every gateway at once: each offline transition is returned to exactly
        one caller. Its ``at`` is the deadline (``last_active + expiry_s``), not ``now``.
        Cost: O(log n + expired) Redis work, one round trip per :data:`EXPIRE_BATCH` users.
        """
        out: list[Transition] = []
        bound = now - self.expiry_s + _CANDIDATE_SLACK_S
        with reaching(self.redis, "expire presence"):
            while True:
                candidates = [
                    str(u)
                    for u in await self.redis.zrangebyscore(
                        ONLINE_KEY, "-inf", repr(bound), start=0, num=EXPIRE_BATCH
                    )
                ]
                if not candidates:
                    break
                pipe = self.redis.pipeline(transaction=False)
                for user in candidates:
                    await self._expire_one(
                        keys=[ONLINE_KEY, conns_key(user)],
                        args=[user, repr(float(now)), repr(self.expiry_s)],
                        client=pipe,
                    )
                results: list[Any] = await pipe.execute()
                flipped = 0
                for user, last in zip(candidates, results, strict=True):
                    if last is not None:
                        flipped += 1
                        last_active = float(last)
                        at = last_active + self.expiry_s
                        out.append(Transition(user, OFFLINE, last_active, at))
                # A short batch was the last; a batch in which nothing flipped means the rest
                # are being flipped by another gateway or are within the slack (not yet due).
                if len(candidates) < EXPIRE_BATCH or flipped == 0:
                    break
        out.sort(key=lambda t: (t.at, t.user))
        return out

    async def status(self, users: Sequence[str], now: float) -> dict[str, tuple[str, float | None]]:
        """``{user: (status, last_active)}`` at ``now``; ``(OFFLINE, None)`` if never seen.

        Online means announced online and not past the deadline at ``now``, the same rule as
        :meth:`labkit.core.presence.PresenceTracker.status`. Call ``expire(now)`` first (and publish
        what it returns) so that the snapshot sent for ``presence_sub`` is never ahead of the
        published transitions. One round trip.
        """
        if not users:
            return {}
        with reaching(self.redis, "read presence"):
            pipe = self.redis.pipeline(transaction=False)
            for user in users:
                pipe.zscore(ONLINE_KEY, user)
                pipe.hget(LAST_ACTIVE_KEY, user)
            replies: list[Any] = await pipe.execute()
        out: dict[str, tuple[str, float | None]] = {}
        for i, user in enumerate(users):
            mark, last = replies[2 * i], replies[2 * i + 1]
            if mark is not None:
                last_active = float(mark)
                status = ONLINE if last_active + self.expiry_s > now else OFFLINE
                out[user] = (status, last_active)
            elif last is not None:
                out[user] = (OFFLINE, float(last))
            else:
                out[user] = (OFFLINE, None)
        return out

    async def online_users(self, now: float) -> set[str]:
        """Everyone online at ``now`` (O(online users); for tools and notebooks, not per frame)."""
        with reaching(self.redis, "read presence"):
            users = await self.redis.zrangebyscore(ONLINE_KEY, f"({now - self.expiry_s!r}", "+inf")
        return {str(u) for u in users}
