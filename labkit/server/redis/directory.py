"""Who is in which channel: memberships in Redis, shared by every gateway.

Why both directions are stored: a gateway needs "the channels of this user" at ``hello`` (one
SMEMBERS) and the message server needs "is this user a member of this channel" at every post
(one SISMEMBER). Keeping two sets means each question costs one command, and :meth:`join` and
:meth:`leave` change both sets in one MULTI so nobody ever sees them disagree.

Channels are created by their first join and never deleted: an empty channel keeps its
history and its seq numbering. Keys follow ``docs/architecture.md``. Failures to reach Redis
raise :class:`labkit.server.redis.store.StoreUnavailable`, like the store.
"""

from __future__ import annotations

from typing import cast

import redis.asyncio as aioredis
import redis.exceptions

from labkit.server.redis.store import reaching

DEMO_USERS = ("alice", "bob", "carol", "dave", "erin")
DEMO_CHANNELS = {"general": DEMO_USERS, "random": DEMO_USERS, "eng": ("alice", "bob", "carol")}
"""The demo workspace every fresh lab starts with: two open channels and a smaller team one."""

CHANNELS_KEY = "labkit:channels"


def members_key(channel: str) -> str:
    return f"labkit:ch:{{{channel}}}:members"


def user_channels_key(user: str) -> str:
    return f"labkit:user:{{{user}}}:channels"


class Directory:
    """Users, channels and memberships, on the same Redis as the store."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis

    async def seed_demo(self) -> bool:
        """Create the demo workspace unless some channel exists; return whether it did.

        WATCH makes this safe when several gateways start at once: exactly one seeds, and a
        workspace that already has channels (the demo's or anyone's) is left alone.
        """
        with reaching(self.redis, "seed the demo workspace"):
            async with self.redis.pipeline(transaction=True) as pipe:
                await pipe.watch(CHANNELS_KEY)
                if await pipe.scard(CHANNELS_KEY):
                    return False
                pipe.multi()  # type: ignore[no-untyped-call]
                for channel, users in DEMO_CHANNELS.items():
                    pipe.sadd(CHANNELS_KEY, channel)
                    pipe.sadd(members_key(channel), *users)
                    for user in users:
                        pipe.sadd(user_channels_key(user), channel)
                try:
                    await pipe.execute()
                except redis.exceptions.WatchError:
                    return False  # another process seeded (or created a channel) meanwhile
        return True

    async def channels_of(self, user: str) -> set[str]:
        with reaching(self.redis, f"read the channels of {user!r}"):
            channels = await self.redis.smembers(user_channels_key(user))
        return cast(set[str], channels)

    async def is_member(self, user: str, channel: str) -> bool:
        with reaching(self.redis, f"check membership of {user!r} in {channel!r}"):
            return bool(await self.redis.sismember(members_key(channel), user))

    async def members(self, channel: str) -> set[str]:
        with reaching(self.redis, f"read the members of {channel!r}"):
            users = await self.redis.smembers(members_key(channel))
        return cast(set[str], users)

    async def join(self, user: str, channel: str) -> bool:
        """Make ``user`` a member, creating the channel if needed; True if newly joined."""
        with reaching(self.redis, f"add {user!r} to {channel!r}"):
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.sadd(members_key(channel), user)
                pipe.sadd(user_channels_key(user), channel)
                pipe.sadd(CHANNELS_KEY, channel)
                added, _, _ = await pipe.execute()
        return bool(added)

    async def leave(self, user: str, channel: str) -> bool:
        """End the membership; True if ``user`` was a member. The channel itself stays."""
        with reaching(self.redis, f"remove {user!r} from {channel!r}"):
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.srem(members_key(channel), user)
                pipe.srem(user_channels_key(user), channel)
                removed, _ = await pipe.execute()
        return bool(removed)

    async def all_channels(self) -> set[str]:
        with reaching(self.redis, "list the channels"):
            channels = await self.redis.smembers(CHANNELS_KEY)
        return cast(set[str], channels)
