"""The message bus: MemoryBus in one process, RedisBus on fakeredis and on a real redis-server.

Nothing here sleeps for a fixed time: waits poll a condition and fail after a timeout. A
negative ("this was not delivered") is checked behind a fence: Redis delivers one
subscriber's messages in order, so once a later message has arrived, an earlier one that was
going to arrive has arrived too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis
from conftest import RedisFactory, open_backend

from labkit.server.redis.bus import (
    CONTROL_TOPIC,
    MemoryBus,
    MemoryHub,
    RedisBus,
    channel_topic,
    topic_channel,
)
from labkit.server.redis_server import RedisServer

TOPIC = channel_topic("test-bus")
OTHER = channel_topic("test-bus-other")
FENCE = channel_topic("test-bus-fence")

Got = list[tuple[str, str]]


async def eventually(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.005)


async def subscribers(client: aioredis.Redis, topic: str) -> int:
    [(_, count)] = await client.pubsub_numsub(topic)
    return int(count)


async def until_subscribers(client: aioredis.Redis, topic: str, count: int) -> None:
    """Wait until the server itself counts ``count`` subscribers of ``topic``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5.0
    while (now := await subscribers(client, topic)) != count:
        if loop.time() > deadline:
            raise AssertionError(f"{topic} has {now} subscribers, expected {count}")
        await asyncio.sleep(0.005)


def test_channel_topics_round_trip() -> None:
    assert channel_topic("general") == "labkit:bus:ch:general"
    assert topic_channel(channel_topic("eng-2")) == "eng-2"
    assert topic_channel(CONTROL_TOPIC) is None


# -- MemoryBus ------------------------------------------------------------------------------


async def memory_buses(count: int) -> tuple[list[MemoryBus], list[Got]]:
    hub = MemoryHub()
    buses, gots = [], []
    for _ in range(count):
        bus, got = hub.bus(), []
        await bus.start(lambda topic, payload, got=got: got.append((topic, payload)))
        buses.append(bus)
        gots.append(got)
    return buses, gots


async def test_memory_bus_delivers_only_to_subscribers_of_the_topic() -> None:
    (a, b, c), (got_a, got_b, got_c) = await memory_buses(3)
    await a.subscribe(TOPIC)
    await b.subscribe(TOPIC)
    await c.subscribe(OTHER)
    await c.publish(TOPIC, "m1")
    await c.publish(TOPIC, "m2")
    await asyncio.sleep(0)  # one turn of the loop
    assert got_a == got_b == [(TOPIC, "m1"), (TOPIC, "m2")]
    assert got_c == []
    assert (a.received, c.received, c.published) == (2, 0, 2)
    assert TOPIC in a.topics and TOPIC not in c.topics


async def test_memory_bus_delivers_asynchronously() -> None:
    (a,), (got,) = await memory_buses(1)
    await a.subscribe(TOPIC)
    await a.publish(TOPIC, "m1")
    assert got == [], "never inside publish: a handler may publish in turn"
    await asyncio.sleep(0)
    assert got == [(TOPIC, "m1")]


async def test_memory_bus_unsubscribe_stops_delivery_even_of_one_in_flight() -> None:
    (a, b), (got_a, _) = await memory_buses(2)
    await a.subscribe(TOPIC)
    await b.publish(TOPIC, "in flight")
    await a.unsubscribe(TOPIC)
    await b.publish(TOPIC, "after")
    await asyncio.sleep(0)
    assert got_a == []
    assert TOPIC not in a.topics
    await a.subscribe(TOPIC)
    await b.publish(TOPIC, "again")
    await asyncio.sleep(0)
    assert got_a == [(TOPIC, "again")]


async def test_memory_bus_carries_the_control_topic_and_close_stops_everything() -> None:
    (a, b), (got_a, _) = await memory_buses(2)
    await a.subscribe(TOPIC)
    await b.publish(CONTROL_TOPIC, "ctl")
    await asyncio.sleep(0)
    assert got_a == [(CONTROL_TOPIC, "ctl")]
    await a.close()
    assert a.topics == set()
    await b.publish(CONTROL_TOPIC, "ctl2")
    await b.publish(TOPIC, "m")
    await asyncio.sleep(0)
    assert got_a == [(CONTROL_TOPIC, "ctl")]


# -- RedisBus on both backends --------------------------------------------------------------


async def started_bus(
    make_client: Callable[[], aioredis.Redis], handler: Callable[[str, str], None] | None = None
) -> tuple[RedisBus, Got, list[int]]:
    got: Got = []
    resyncs: list[int] = []

    async def on_resync() -> None:
        resyncs.append(len(resyncs) + 1)

    bus = RedisBus(make_client, poll_s=0.02, retry_s=0.02)
    await bus.start(handler or (lambda t, p: got.append((t, p))), on_resync)
    assert bus.connected.is_set()
    return bus, got, resyncs


async def test_redis_bus_subscribe_publish_receive(redis_backend: RedisFactory) -> None:
    bus, got, resyncs = await started_bus(redis_backend)
    other, other_got, _ = await started_bus(redis_backend)
    admin = redis_backend()
    try:
        await bus.subscribe(TOPIC)
        await until_subscribers(admin, TOPIC, 1)
        await other.publish(TOPIC, "m1")
        await other.publish(TOPIC, "m2")
        await other.publish(CONTROL_TOPIC, "ctl")  # every bus hears the control topic
        await eventually(lambda: len(got) == 3, "three messages")
        assert got == [(TOPIC, "m1"), (TOPIC, "m2"), (CONTROL_TOPIC, "ctl")]
        await eventually(lambda: len(other_got) == 1, "the control message at the publisher")
        assert other_got == [(CONTROL_TOPIC, "ctl")], "not subscribed to TOPIC"
        assert (bus.received, other.published, bus.published) == (3, 3, 0)
        assert resyncs == [] and bus.reconnects == 0
    finally:
        await bus.close()
        await other.close()


async def test_redis_bus_topics_follow_subscribe_and_unsubscribe(
    redis_backend: RedisFactory,
) -> None:
    bus, _, _ = await started_bus(redis_backend)
    try:
        assert bus.topics == set()
        await bus.subscribe(TOPIC)
        await bus.subscribe(OTHER)
        await bus.subscribe(TOPIC)
        topics = bus.topics
        assert topics == {TOPIC, OTHER}
        topics.clear()
        assert bus.topics == {TOPIC, OTHER}, "a copy"
        await bus.unsubscribe(OTHER)
        await bus.unsubscribe(OTHER)
        assert bus.topics == {TOPIC}
    finally:
        await bus.close()


async def test_redis_bus_unsubscribe_stops_delivery(redis_backend: RedisFactory) -> None:
    bus, got, _ = await started_bus(redis_backend)
    admin = redis_backend()
    try:
        await bus.subscribe(TOPIC)
        await bus.subscribe(FENCE)
        await until_subscribers(admin, TOPIC, 1)
        await until_subscribers(admin, FENCE, 1)
        await bus.unsubscribe(TOPIC)
        await until_subscribers(admin, TOPIC, 0)
        await bus.publish(TOPIC, "after unsubscribe")
        await bus.publish(FENCE, "fence")
        await eventually(lambda: (FENCE, "fence") in got, "the fence")
        assert got == [(FENCE, "fence")]
    finally:
        await bus.close()


async def test_a_failing_handler_does_not_stop_the_reader(
    redis_backend: RedisFactory, caplog: pytest.LogCaptureFixture
) -> None:
    got: Got = []

    def handler(topic: str, payload: str) -> None:
        if payload == "boom":
            raise ValueError("a bad payload")
        got.append((topic, payload))

    bus, _, _ = await started_bus(redis_backend, handler)
    admin = redis_backend()
    try:
        await bus.subscribe(TOPIC)
        await until_subscribers(admin, TOPIC, 1)
        with caplog.at_level(logging.ERROR, logger="labkit.server.redis.bus"):
            await bus.publish(TOPIC, "boom")
            await bus.publish(TOPIC, "ok")
            await eventually(lambda: got == [(TOPIC, "ok")], "the message after the failure")
        assert bus.received == 2
        assert any("handler failed" in r.getMessage() for r in caplog.records)
    finally:
        await bus.close()


async def test_redis_bus_reconnects_resyncs_and_resubscribes_on_fakeredis() -> None:
    async with open_backend("fake") as factory:
        server = factory.fake_server
        assert server is not None
        bus, got, resyncs = await started_bus(factory)
        try:
            await bus.subscribe(TOPIC)
            server.connected = False
            await eventually(lambda: not bus.connected.is_set(), "the reader to notice the loss")
            await bus.subscribe(OTHER)  # while down: remembered, subscribed on reconnect
            assert resyncs == []
            server.connected = True
            await eventually(lambda: resyncs == [1], "on_resync after the reconnect")
            assert bus.connected.is_set() and bus.reconnects == 1
            # Not checked with NUMSUB: fakeredis keeps counting a closed connection's topics.
            await bus.publish(TOPIC, "m1")
            await bus.publish(OTHER, "m2")
            await eventually(lambda: len(got) == 2, "messages after the reconnect")
            assert got == [(TOPIC, "m1"), (OTHER, "m2")]
        finally:
            await bus.close()


@pytest.mark.real_redis
async def test_redis_bus_reconnects_after_a_real_redis_restart(redis_server_binary: str) -> None:
    with RedisServer(binary=redis_server_binary) as server:
        async with open_backend("real", server) as factory:
            bus, got, resyncs = await started_bus(factory)
            try:
                await bus.subscribe(TOPIC)
                await asyncio.to_thread(server.stop)
                await eventually(lambda: not bus.connected.is_set(), "the reader to notice")
                await asyncio.to_thread(server.start)  # same port
                await eventually(lambda: resyncs == [1], "on_resync after the restart", 10.0)
                assert bus.reconnects == 1
                admin = factory()
                await until_subscribers(admin, TOPIC, 1)
                await admin.publish(TOPIC, "m1")
                await eventually(lambda: got == [(TOPIC, "m1")], "a message after the restart")
            finally:
                await bus.close()
