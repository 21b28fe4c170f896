"""The message bus: topic-based pub/sub between message servers and gateways.

Theory of operation
-------------------
A gateway subscribes to a channel's topic only while it holds at least one local member of
that channel, so a message reaches only the gateways that have someone to deliver it to (the
routing table in ``labkit.core.routing`` says when). Two implementations share one interface:

- :class:`RedisBus` uses Redis pub/sub through redis-py's asyncio client, on a real
  ``redis-server`` or on fakeredis (the same code either way). Redis pub/sub is at-most-once:
  a subscriber that is disconnected misses whatever was published meanwhile. The bus therefore
  reconnects by itself and then calls ``on_resync`` so the gateway re-reads every subscribed
  channel's head from the store, where nothing is ever lost.
- :class:`MemoryBus` is the same contract inside one process, for tests and teaching.

Past one machine, the same interface maps onto Redis Cluster's sharded pub/sub (SSUBSCRIBE /
SPUBLISH), which routes a topic to the shard that owns its hash slot.

Handlers are plain callables invoked on the event loop, one message at a time, in the order the
bus delivered them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from labkit.core.gateway.bus_payloads import (  # the topic names live with the payloads
    CONTROL_TOPIC as CONTROL_TOPIC,
)
from labkit.core.gateway.bus_payloads import PRESENCE_TOPIC as PRESENCE_TOPIC
from labkit.core.gateway.bus_payloads import channel_topic as channel_topic
from labkit.core.gateway.bus_payloads import topic_channel as topic_channel

log = logging.getLogger(__name__)

Handler = Callable[[str, str], None]
"""``handler(topic, payload)``, called for each message received on a subscribed topic."""
Resync = Callable[[], Awaitable[None]]


class Bus:
    """The interface both buses implement."""

    published = 0
    """Messages this bus instance published (the cost counters of the notebooks use it)."""
    received = 0

    async def start(self, handler: Handler, on_resync: Resync | None = None) -> None:
        raise NotImplementedError

    async def subscribe(self, topic: str) -> None:
        raise NotImplementedError

    async def unsubscribe(self, topic: str) -> None:
        raise NotImplementedError

    async def publish(self, topic: str, payload: str) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    @property
    def topics(self) -> set[str]:
        raise NotImplementedError


class RedisBus(Bus):
    """Redis pub/sub. ``make_client`` builds a new redis-py asyncio client on each call."""

    def __init__(
        self,
        make_client: Callable[[], aioredis.Redis],
        *,
        poll_s: float = 0.2,
        retry_s: float = 0.2,
    ) -> None:
        self._make_client = make_client
        self._publisher = make_client()
        self._client: aioredis.Redis | None = None
        self._pubsub: Any = None
        self._topics: set[str] = set()
        self._handler: Handler | None = None
        self._on_resync: Resync | None = None
        self._reader: asyncio.Task[None] | None = None
        self._poll_s = poll_s
        self._retry_s = retry_s
        self._closed = False
        self.connected = asyncio.Event()
        self.reconnects = 0
        self.published = 0
        self.received = 0

    @property
    def topics(self) -> set[str]:
        return set(self._topics)

    async def start(self, handler: Handler, on_resync: Resync | None = None) -> None:
        self._handler = handler
        self._on_resync = on_resync
        with contextlib.suppress(RedisError, OSError):
            await self._open()
        self._reader = asyncio.create_task(self._read_loop(), name="labkit-bus-reader")

    async def _open(self) -> None:
        self.connected.clear()
        self._client = self._make_client()
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        # Always subscribed to the control topic, so the reader has something to wait on.
        await self._pubsub.subscribe(CONTROL_TOPIC, *sorted(self._topics))
        self.connected.set()

    async def _close_pubsub(self) -> None:
        pubsub, client = self._pubsub, self._client
        self._pubsub = self._client = None
        self.connected.clear()
        with contextlib.suppress(Exception):
            if pubsub is not None:
                await pubsub.aclose()
        with contextlib.suppress(Exception):
            if client is not None:
                await client.aclose()

    async def _read_loop(self) -> None:
        while not self._closed:
            try:
                if self._pubsub is None:
                    await self._open()
                    self.reconnects += 1
                    log.info("bus reconnected; re-syncing %d topics", len(self._topics))
                    if self._on_resync is not None:
                        await self._on_resync()
                message = await self._pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=self._poll_s
                )
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("bus connection lost (%s); retrying in %.1fs", exc, self._retry_s)
                await self._close_pubsub()
                await asyncio.sleep(self._retry_s)
                continue
            if message is None or message.get("type") != "message":
                continue
            self.received += 1
            if self._handler is not None:
                try:
                    self._handler(str(message["channel"]), str(message["data"]))
                except Exception:  # a bad payload must never stop the bus
                    log.exception("bus handler failed on %s", message.get("channel"))

    async def subscribe(self, topic: str) -> None:
        self._topics.add(topic)
        if self._pubsub is not None:
            try:
                await self._pubsub.subscribe(topic)
            except (RedisError, OSError):
                await self._close_pubsub()  # the reader reconnects and subscribes everything

    async def unsubscribe(self, topic: str) -> None:
        self._topics.discard(topic)
        if self._pubsub is not None:
            try:
                await self._pubsub.unsubscribe(topic)
            except (RedisError, OSError):
                await self._close_pubsub()

    async def publish(self, topic: str, payload: str) -> None:
        await self._publisher.publish(topic, payload)
        self.published += 1

    async def close(self) -> None:
        self._closed = True
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        await self._close_pubsub()
        with contextlib.suppress(Exception):
            await self._publisher.aclose()


class MemoryHub:
    """The shared medium of :class:`MemoryBus` instances in one process."""

    def __init__(self) -> None:
        self.subscribers: dict[str, set[MemoryBus]] = {}

    def bus(self) -> MemoryBus:
        return MemoryBus(self)


class MemoryBus(Bus):
    """In-process pub/sub with the same contract as :class:`RedisBus` (delivery is async)."""

    def __init__(self, hub: MemoryHub) -> None:
        self._hub = hub
        self._topics: set[str] = set()
        self._handler: Handler | None = None
        self.published = 0
        self.received = 0

    @property
    def topics(self) -> set[str]:
        return set(self._topics)

    async def start(self, handler: Handler, on_resync: Resync | None = None) -> None:
        self._handler = handler
        await self.subscribe(CONTROL_TOPIC)

    async def subscribe(self, topic: str) -> None:
        self._topics.add(topic)
        self._hub.subscribers.setdefault(topic, set()).add(self)

    async def unsubscribe(self, topic: str) -> None:
        self._topics.discard(topic)
        self._hub.subscribers.get(topic, set()).discard(self)

    async def publish(self, topic: str, payload: str) -> None:
        self.published += 1
        loop = asyncio.get_running_loop()
        for bus in sorted(self._hub.subscribers.get(topic, set()), key=id):
            loop.call_soon(bus._deliver, topic, payload)

    def _deliver(self, topic: str, payload: str) -> None:
        if topic in self._topics and self._handler is not None:
            self.received += 1
            self._handler(topic, payload)

    async def close(self) -> None:
        for topic in list(self._topics):
            await self.unsubscribe(topic)
        self._handler = None
