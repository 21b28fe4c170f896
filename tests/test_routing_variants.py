"""Targeted and broadcast routing: the bus wrapper alone, then both on a live cluster."""

from __future__ import annotations

import asyncio

import pytest

from labkit.lab.routing_variants import ALL_TOPIC, RoutedBus, bus_cost, routed_builder, use_routing
from labkit.server.cluster import Cluster
from labkit.server.redis.bus import CONTROL_TOPIC, MemoryHub, channel_topic


async def test_broadcast_bus_delivers_every_channel_to_every_gateway() -> None:
    hub = MemoryHub()
    got: dict[str, list[tuple[str, str]]] = {"a": [], "b": []}
    a, b = RoutedBus(hub.bus(), broadcast=True), RoutedBus(hub.bus(), broadcast=True)
    await a.start(lambda t, p: got["a"].append((t, p)))
    await b.start(lambda t, p: got["b"].append((t, p)))
    await a.subscribe(channel_topic("eng"))  # a has a member of #eng, b has none
    assert channel_topic("eng") in a.topics and ALL_TOPIC not in a.topics
    await a.publish(channel_topic("eng"), '{"type":"message","seq":1}')
    await a.publish(CONTROL_TOPIC, "ctl")
    await asyncio.sleep(0)
    expected = [(channel_topic("eng"), '{"type":"message","seq":1}'), (CONTROL_TOPIC, "ctl")]
    assert got["a"] == expected and got["b"] == expected  # unwrapped, to both
    assert (a.delivered, a.useful, a.wasted) == (1, 1, 0)
    assert (b.delivered, b.useful, b.wasted) == (1, 0, 1)
    await a.unsubscribe(channel_topic("eng"))
    assert ALL_TOPIC in a.inner.topics  # still hears everything
    assert a.published == 2


async def test_targeted_bus_is_the_plain_bus_counted() -> None:
    hub = MemoryHub()
    got: list[str] = []
    a, b = RoutedBus(hub.bus()), RoutedBus(hub.bus())
    await a.start(lambda t, p: None)
    await b.start(lambda t, p: got.append(t))
    await a.publish(channel_topic("eng"), "m1")  # b is not subscribed: nothing reaches it
    await b.subscribe(channel_topic("eng"))
    await a.publish(channel_topic("eng"), "m2")
    await asyncio.sleep(0)
    assert got == [channel_topic("eng")] and (b.delivered, b.useful) == (1, 1)
    await b.unsubscribe(channel_topic("eng"))
    assert channel_topic("eng") not in b.inner.topics


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="targeted, broadcast"):
        routed_builder("multicast")


@pytest.mark.parametrize(
    ("mode", "per_post", "wasted"), [("targeted", 2.0, 0), ("broadcast", 4.0, 8)]
)
async def test_a_dm_costs_two_gateways_targeted_and_all_of_them_broadcast(
    mode: str, per_post: float, wasted: int
) -> None:
    cluster = Cluster(gateways=4, seed=3)
    use_routing(cluster, mode)
    async with cluster:
        assert cluster.directory is not None
        for user in ("ann", "ben"):
            await cluster.directory.join(user, "dm-ann-ben")
        ann = await cluster.connect("ann", gateway=0)
        ben = await cluster.connect("ben", gateway=2)
        for n in range(4):
            await (ann if n % 2 else ben).post("dm-ann-ben", f"m{n}")
        await ann.wait_for_seq("dm-ann-ben", 4)
        await ben.wait_for_seq("dm-ann-ben", 4)

        async def counted() -> None:
            while bus_cost(cluster)["delivered"] < 4 * per_post:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(counted(), 5)
        cost = bus_cost(cluster)
        assert cost["posts"] == 4 and cost["per_post"] == per_post and cost["wasted"] == wasted
        assert cost["useful"] == 8
