"""Guarantee 3 with a bus that loses, duplicates and reorders messages.

Redis pub/sub is at-most-once. Each gateway's ``bus_filter`` stands between the bus and the
gateway here: ``filter(topic, payload, deliver)`` decides what the bus "did" with a message, by
a ``random.Random`` seeded from the test's seed, the gateway and the seq (the same seed drops
the same seqs every run). Whatever it does, every client must receive every seq of the channel
once and in order, and a lost tail within 2 seconds of the post's ack.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from random import Random

import pytest
from wire import ClusterFactory, Follower, cluster_factory_fixture, raw_user

from labkit.lab.checker import check
from labkit.server.client import Client
from labkit.server.cluster import Cluster
from labkit.server.gateway import GatewayConfig
from labkit.server.redis.bus import topic_channel

cluster_factory = cluster_factory_fixture()

FAST = GatewayConfig(rate_per_s=1e6, rate_burst=1e6)
Deliver = Callable[[str, str], None]


def message_seq(topic: str, payload: str) -> int | None:
    """The seq of a channel's ``message`` on the bus, None for anything else."""
    if topic_channel(topic) is None:
        return None
    frame = json.loads(payload)
    return int(frame["seq"]) if frame.get("type") == "message" else None


@dataclass
class FaultyBus:
    """The fault schedule for every gateway of a cluster, decided per (seed, gateway, seq)."""

    seed: int
    drop: float = 0.0
    duplicate: float = 0.0
    delay: float = 0.0
    tail: set[int] = field(default_factory=set)
    """Seqs lost on every gateway."""
    dropped: list[tuple[int, int]] = field(default_factory=list)
    duplicated: list[tuple[int, int]] = field(default_factory=list)
    delayed: list[tuple[int, int]] = field(default_factory=list)
    handles: list[asyncio.TimerHandle] = field(default_factory=list)

    def install(self, cluster: Cluster) -> None:
        for index, gateway in enumerate(cluster.gateways):
            assert gateway is not None
            gateway.bus_filter = self.filter_for(index)

    def filter_for(self, gateway: int) -> Callable[[str, str, Deliver], None]:
        loop = asyncio.get_running_loop()

        def bus_filter(topic: str, payload: str, deliver: Deliver) -> None:
            seq = message_seq(topic, payload)
            if seq is None:
                deliver(topic, payload)
                return
            rng = Random(f"{self.seed}:{gateway}:{seq}")
            roll = rng.random()
            if seq in self.tail or roll < self.drop:
                self.dropped.append((gateway, seq))
            elif roll < self.drop + self.duplicate:
                self.duplicated.append((gateway, seq))
                deliver(topic, payload)
                self.handles.append(loop.call_later(rng.uniform(0, 0.05), deliver, topic, payload))
            elif roll < self.drop + self.duplicate + self.delay:
                self.delayed.append((gateway, seq))
                self.handles.append(loop.call_later(rng.uniform(0, 0.05), deliver, topic, payload))
            else:
                deliver(topic, payload)

        return bus_filter

    def cancel(self) -> None:
        for handle in self.handles:
            handle.cancel()


def assert_all_in_order(clients: list[Client], channel: str, total: int, seed: int) -> None:
    for client in clients:
        assert client.seqs(channel) == list(range(1, total + 1)), f"seed {seed}: {client.name}"
        assert client.gaps == [] and client.duplicates == [], f"seed {seed}: {client.name}"


@pytest.mark.parametrize("seed", [11, 12])
async def test_lost_messages_are_repaired_in_order(
    cluster_factory: ClusterFactory, seed: int
) -> None:
    async with cluster_factory(gateways=2, config=FAST) as c:
        faults = FaultyBus(seed, drop=0.3)
        faults.install(c)
        clients = [
            await c.connect(user, gateway=gateway)
            for user, gateway in (("alice", 0), ("bob", 1), ("carol", 0), ("erin", 1))
        ]
        dave = Follower(await raw_user(c, "dave", 0), "general")
        per_poster = 40
        total = 2 * per_poster

        async def post_all(client: Client) -> None:
            for n in range(per_poster):
                await client.post("general", f"{client.name} {n}")

        await asyncio.gather(post_all(clients[0]), post_all(clients[1]))
        for client in clients:
            await client.wait_for_seq("general", total, timeout=5)
        await dave.until(total)
        faults.cancel()
        assert_all_in_order(clients, "general", total, seed)
        assert len(faults.dropped) >= 10, f"seed {seed}: only {faults.dropped} dropped"
        stored = {"general": await c.stored("general")}
        assert [f["text"] for f in dave.frames] == [m["text"] for m in stored["general"]]
        report = check(c.recording, stored)
        assert report.ok, f"seed {seed}:\n{report.render()}"


async def test_a_lost_tail_arrives_within_2_seconds_of_the_ack(
    cluster_factory: ClusterFactory,
) -> None:
    seed = 21
    async with cluster_factory(gateways=2, config=FAST) as c:
        total = 30
        # The last three messages are lost on every gateway: nothing comes after them on the
        # bus, so only the periodic head check can notice.
        faults = FaultyBus(seed, drop=0.2, tail={total - 2, total - 1, total})
        faults.install(c)
        alice = await c.connect("alice", gateway=0)
        receivers = [
            await c.connect(user, gateway=gateway)
            for user, gateway in (("bob", 1), ("carol", 0), ("erin", 1), ("alice", 1))
        ]
        acked: dict[int, float] = {}
        for n in range(total):
            ack = await alice.post("general", f"m{n}")
            acked[ack.seq] = time.monotonic()
        everyone = [alice, *receivers]
        deadline = acked[total] + 2.0
        for client in everyone:
            left = deadline - time.monotonic()
            assert left > 0, f"seed {seed}: 2 s passed before {client.name} got the tail"
            await client.wait_for_seq("general", total, timeout=left)
        faults.cancel()
        assert_all_in_order(everyone, "general", total, seed)
        assert {seq for _, seq in faults.dropped} >= faults.tail

        # Every message, not only the tail, reached every member within 2 s of its ack.
        acks = {
            r.frame["seq"]: r.t
            for r in c.recording.received(client=alice.name, type="ack")
            if r.frame["channel"] == "general"
        }
        for client in everyone:
            for record in c.recording.received(client=client.name, type="message"):
                seq = record.frame["seq"]
                late = record.t - acks[seq]
                assert late <= 2.0, f"seed {seed}: {client.name} got seq {seq} {late:.2f} s late"


@pytest.mark.parametrize("seed", [31, 32])
async def test_duplicated_and_reordered_messages_reach_clients_once_in_order(
    cluster_factory: ClusterFactory, seed: int
) -> None:
    async with cluster_factory(gateways=3, config=FAST) as c:
        faults = FaultyBus(seed, drop=0.1, duplicate=0.3, delay=0.3)
        faults.install(c)
        clients = [
            await c.connect(user, gateway=gateway)
            for user, gateway in (("alice", 0), ("bob", 1), ("carol", 2), ("alice", 2))
        ]
        followers = [
            Follower(await raw_user(c, "erin", gateway, f"erin@gw-{gateway + 1}"), "random")
            for gateway in range(3)
        ]
        per_poster = 30
        total = 3 * per_poster

        async def post_all(client: Client) -> None:
            for n in range(per_poster):
                await client.post("random", f"{client.name} {n}")
                if n % 3 == 0:
                    await asyncio.sleep(0.005)  # let delayed copies land between posts

        await asyncio.gather(*(post_all(client) for client in clients[:3]))
        for client in clients:
            await client.wait_for_seq("random", total, timeout=5)
        for follower in followers:
            await follower.until(total)
        faults.cancel()
        assert_all_in_order(clients, "random", total, seed)
        assert faults.duplicated and faults.delayed, f"seed {seed}: no faults injected"
        stored = {"random": await c.stored("random")}
        report = check(c.recording, stored)
        assert report.ok, f"seed {seed}:\n{report.render()}"
