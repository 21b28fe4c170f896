"""The message server: the one place a post becomes a message.

Theory of operation
-------------------
A post is accepted in three steps, in this order, and the order is the design:

1. **Check** that the poster is a member of the channel (``not_member`` otherwise).
2. **Sequence and store** in one atomic step inside Redis (``Store.append`` runs a Lua script
   that increments the channel's seq and writes the message and the idempotency key together).
   Two message servers can never hand out the same seq, and a crash cannot leave a hole.
3. **Publish** the encoded frame on the channel's bus topic, then **ack**.

Storing before publishing is what makes bus loss harmless: every gateway can re-read from the
store whatever the bus dropped. A publish that fails after the store succeeded still acks: the
message exists, and the gateways' head check delivers it within a second.

Retrying a post with the same ``id`` returns the original seq and stores nothing new; the bus
publish is repeated (harmless: gateways drop duplicates by seq), which also covers a server
that crashed between storing and publishing.

Every gateway process calls this in-process; the atomic step runs inside Redis, so any number
of them form one correct message server.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from redis.exceptions import RedisError

from labkit.core.gateway.events import Appended
from labkit.core.protocol import Ack, ErrorCode, Post, ProtocolError
from labkit.server.redis.bus import Bus, channel_topic
from labkit.server.redis.directory import Directory
from labkit.server.redis.store import IdConflict, Store, StoreUnavailable

log = logging.getLogger(__name__)


class MessageServer:
    """Validates, sequences, stores and publishes posts."""

    def __init__(
        self,
        store: Store,
        directory: Directory,
        bus: Bus,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.directory = directory
        self.bus = bus
        self.clock = clock
        self.posts = 0
        self.publish_failures = 0

    async def append(
        self, user: str, channel: str, post_id: str, text: str, now: float
    ) -> Appended:
        """Check membership, then sequence and store the post in one atomic step; publishing
        is the gateway machine's next action. Raises ``StoreUnavailable``."""
        if not await self.directory.is_member(user, channel):
            return Appended("not_member")
        try:
            appended = await self.store.append(channel, user, post_id, text, now=now)
        except IdConflict:
            return Appended("conflict")
        self.posts += 1
        verdict = "dup" if appended.duplicate else "new"
        return Appended(verdict, appended.seq, appended.ts, appended.raw)

    async def post(self, user: str, frame: Post) -> Ack:
        """Accept ``frame`` from ``user``: :meth:`append`, then publish, then the ack (what the
        gateway machine does for a post, for callers with no gateway: a benchmark's driver, a
        test). Raises :class:`ProtocolError` with the error a gateway would answer."""
        try:
            appended = await self.append(user, frame.channel, frame.id, frame.text, self.clock())
        except StoreUnavailable as exc:
            raise ProtocolError(ErrorCode.UNAVAILABLE, f"{exc}; retry later", frame.id) from exc
        if appended.verdict == "not_member":
            message = f"{user} is not a member of #{frame.channel}; join it first"
            raise ProtocolError(ErrorCode.NOT_MEMBER, message, frame.id)
        if appended.verdict == "conflict":
            message = f"post id {frame.id!r} was already used for a different channel or text"
            raise ProtocolError(ErrorCode.INVALID, message, frame.id)
        try:
            await self.bus.publish(channel_topic(frame.channel), appended.raw)
        except (RedisError, OSError) as exc:
            # Stored but not published: the gateways' head check repairs the tail.
            self.publish_failures += 1
            log.warning("publish of #%s seq %d failed: %s", frame.channel, appended.seq, exc)
        return Ack(frame.id, frame.channel, appended.seq, appended.ts)
