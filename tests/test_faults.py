"""labkit.lab.faults: seeded bus faults (pure decisions, then live) and the cluster fault facade.

Live tests run real gateways over real WebSockets, on the embedded fakeredis or on a private
``redis-server`` started here (never the machine's Redis on 6379, never ``LABKIT_REDIS_URL``).
Each test states its seed in its assertion messages so a failure can be replayed.
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import pytest

from labkit.core.records import Recording
from labkit.lab.checker import check
from labkit.lab.cluster import Cluster
from labkit.lab.faults import (
    DATA_LOSS_LABEL_FAKE,
    OUTAGE_LABEL_FAKE,
    BusFaults,
    BusKnobs,
    message_identity,
    unit,
)
from labkit.server.client import Client, ClientError
from labkit.server.gateway import GatewayConfig
from labkit.server.redis.bus import channel_topic
from labkit.server.redis_server import RedisServer

GENERAL = channel_topic("general")
RANDOM = channel_topic("random")


def message(seq: int, channel: str = "general", text: str = "hi") -> str:
    return json.dumps(
        {
            "type": "message",
            "channel": channel,
            "seq": seq,
            "user": "alice",
            "text": text,
            "ts": 1.0,
        }
    )


# --------------------------------------------------------------------------- pure decisions


def test_unit_is_a_stable_hash_not_pythons_hash() -> None:
    # Pinned: BLAKE2b of the inputs. Python's hash() is salted per process and would differ.
    assert unit(1, "gw-1", GENERAL, "seq:1", "loss") == 0.11517559240067325
    values = [unit(7, "gw-2", GENERAL, f"seq:{s}", "loss") for s in range(2000)]
    assert all(0.0 <= v < 1.0 for v in values)
    assert 0.45 < sum(values) / len(values) < 0.55


def test_message_identity_is_the_seq_for_messages_and_a_hash_otherwise() -> None:
    assert message_identity(GENERAL, message(17)) == "seq:17"
    # The same seq with another text (a retry republishes the same frame; an epoch later reuses
    # the number) is the same message as far as the faults are concerned.
    assert message_identity(GENERAL, message(17, text="other")) == "seq:17"
    typing = json.dumps({"type": "typing", "channel": "general", "user": "bob"})
    assert message_identity(GENERAL, typing).startswith("h:")
    assert message_identity("labkit:bus:ctl", typing) == message_identity("labkit:bus:ctl", typing)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_same_seed_same_decisions_whatever_the_arrival_order(seed: int) -> None:
    knobs: dict[str, Any] = dict(loss=0.2, dup=0.2, reorder=0.2, delay_ms=5, jitter_ms=10)
    items = [
        (gw, topic, message(seq, topic.rsplit(":", 1)[1]))
        for gw in ("gw-1", "gw-2")
        for topic in (GENERAL, RANDOM)
        for seq in range(1, 151)
    ]
    first = BusFaults(seed, **knobs)
    in_order = {item: first.decide(*item) for item in items}
    shuffled = list(items)
    random.Random(seed * 31 + 7).shuffle(shuffled)
    second = BusFaults(seed, **knobs)
    out_of_order = {item: second.decide(*item) for item in shuffled}
    assert in_order == out_of_order, f"seed {seed}: decisions depend on arrival order"
    # Every kind of fault actually happens, and another seed decides differently.
    decisions = list(in_order.values())
    assert any(d.lost for d in decisions), f"seed {seed}"
    assert any(d.copies == 2 for d in decisions), f"seed {seed}"
    assert any(d.hold for d in decisions), f"seed {seed}"
    other = BusFaults(seed + 1000, **knobs)
    assert [other.decide(*i) for i in items] != [in_order[i] for i in items], f"seed {seed}"


def test_delays_stay_within_delay_plus_jitter() -> None:
    faults = BusFaults(5, delay_ms=20, jitter_ms=10, dup=0.5)
    for seq in range(1, 300):
        decision = faults.decide("gw-1", GENERAL, message(seq))
        assert len(decision.delays_ms) == decision.copies
        assert all(20 <= d < 30 for d in decision.delays_ms)


def test_loss_rate_matches_the_knob() -> None:
    faults = BusFaults(11, loss=0.25)
    lost = sum(faults.decide("gw-1", GENERAL, message(s)).lost for s in range(1, 4001))
    assert 0.22 < lost / 4000 < 0.28, "seed 11"


def test_knobs_per_gateway_and_for_all() -> None:
    faults = BusFaults(3)
    faults.set(loss=0.0)
    faults.set("gw-2", loss=1.0)
    assert not any(faults.decide("gw-1", GENERAL, message(s)).lost for s in range(1, 50))
    assert all(faults.decide("gw-2", GENERAL, message(s)).lost for s in range(1, 50))
    assert faults.knobs("gw-2") == BusKnobs(loss=1.0)
    faults.set(dup=0.5)  # the defaults change; gw-2's override keeps its own values
    assert faults.knobs("gw-1") == BusKnobs(dup=0.5)
    assert faults.knobs("gw-2") == BusKnobs(loss=1.0)
    faults.clear()
    assert not faults.active
    assert "none" in faults.describe()


def test_control_and_presence_topics_are_left_alone_unless_asked() -> None:
    payload = json.dumps({"type": "joined", "user": "bob", "channel": "x"})
    assert not BusFaults(1, loss=1.0).decide("gw-1", "labkit:bus:ctl", payload).lost
    assert BusFaults(1, loss=1.0, topics="all").decide("gw-1", "labkit:bus:ctl", payload).lost


def test_bad_knobs_are_refused() -> None:
    with pytest.raises(ValueError, match="probability"):
        BusFaults(1, loss=1.5)
    with pytest.raises(TypeError, match="unknown bus knob"):
        BusFaults(1).set(drop=0.1)
    with pytest.raises(ValueError, match="topics"):
        BusFaults(1, topics="some")


async def test_arrive_counts_and_delivers_the_same_whatever_the_order() -> None:
    seed = 21
    items = [(GENERAL, message(s)) for s in range(1, 201)]

    async def run(order: list[tuple[str, str]]) -> tuple[dict[str, int], list[int]]:
        faults = BusFaults(seed, loss=0.15, dup=0.15, reorder=0.15, reorder_hold_ms=20)
        got: list[int] = []
        for topic, payload in order:
            faults.arrive("gw-1", topic, payload, lambda t, p: got.append(json.loads(p)["seq"]))
        await asyncio.sleep(0.05)  # the held messages' own timers (20 ms) release them
        return faults.counts, sorted(got)

    shuffled = list(items)
    random.Random(seed).shuffle(shuffled)
    counts_a, got_a = await run(items)
    counts_b, got_b = await run(shuffled)
    assert counts_a == counts_b, f"seed {seed}"
    assert got_a == got_b, f"seed {seed}"
    assert counts_a["lost"] and counts_a["duplicated"] and counts_a["reordered"], f"seed {seed}"


async def test_reorder_lets_the_next_message_overtake() -> None:
    seed = 4
    faults = BusFaults(seed, reorder=0.3)
    got: list[int] = []
    for s in range(1, 101):
        faults.arrive("gw-1", GENERAL, message(s), lambda t, p: got.append(json.loads(p)["seq"]))
    held = [s for s in range(1, 100) if faults.decide("gw-1", GENERAL, message(s)).hold]
    assert held, f"seed {seed}"
    for s in held:
        if not faults.decide("gw-1", GENERAL, message(s + 1)).hold:
            assert got.index(s + 1) < got.index(s), f"seed {seed}: {s + 1} did not overtake {s}"


# --------------------------------------------------------------------------- live, fakeredis


async def settle(cluster: Cluster, clients: list[Client], channel: str, timeout: float = 5) -> int:
    assert cluster.store is not None
    head = (await cluster.store.state(channel)).head
    for client in clients:
        await client.wait_for_seq(channel, head, timeout=timeout)
    return head


async def checked(cluster: Cluster, channels: tuple[str, ...] = ("general",)) -> Any:
    stored = {ch: await cluster.stored(ch) for ch in channels}
    return check(cluster.recording, stored, faults=cluster.faults.counts(), end_t=cluster.clock())


async def test_live_bus_faults_are_repaired() -> None:
    seed = 8
    async with Cluster(3, seed=seed) as cluster:
        cluster.faults.set_bus(loss=0.3, dup=0.2, reorder=0.2, jitter_ms=10)
        cluster.faults.set_bus(2, delay_ms=40)
        clients = [await cluster.connect(u) for u in ("alice", "bob", "carol", "dave")]
        for i in range(15):
            await asyncio.gather(*(c.post("general", f"{c.name} {i}") for c in clients))
        await settle(cluster, clients, "general")
        report = await checked(cluster)
        counts = cluster.bus_faults.counts
        assert report.ok, f"seed {seed}\n{report.render()}"
        assert report.messages_checked == 60
        assert counts["lost"] and counts["duplicated"] and counts["reordered"], counts
        assert cluster.bus_faults.by_gateway["gw-3"]["delayed"] > 0


async def test_the_lost_seqs_are_the_ones_the_seed_picked() -> None:
    # Loss only, at one gateway, with repair in place: the gateway's feed repaired exactly
    # the seqs the hash chose, and they are the same in every run.
    seed = 13
    async with Cluster(2, seed=seed) as cluster:
        cluster.faults.set_bus(1, loss=0.4)
        alice = await cluster.connect("alice", gateway=0)
        bob = await cluster.connect("bob", gateway=1)
        for i in range(30):
            await alice.post("general", f"m{i}")
        await settle(cluster, [alice, bob], "general")
        picked = [
            s for s in range(1, 31) if cluster.bus_faults.decide("gw-2", GENERAL, message(s)).lost
        ]
        assert cluster.bus_faults.by_gateway["gw-2"]["lost"] == len(picked), f"seed {seed}"
        assert bob.seqs("general") == list(range(1, 31)), f"seed {seed}"
        gw2 = cluster.gateways[1]
        assert gw2 is not None
        assert gw2.core.feeds["general"].stats.repaired == len(picked), f"seed {seed}"


async def test_partition_then_heal() -> None:
    seed = 2
    async with Cluster(2, seed=seed) as cluster:
        alice = await cluster.connect("alice", gateway=0)
        bob = await cluster.connect("bob", gateway=1)
        cluster.faults.partition(1)
        for i in range(5):
            await alice.post("general", f"from alice {i}")
            await bob.post("general", f"from bob {i}")  # stored and acked; its publish is cut
        # Both sides still get everything: the head check reads the store every 0.5 s.
        await settle(cluster, [alice, bob], "general")
        assert cluster.bus_faults.counts["partitioned"] >= 10
        cluster.faults.heal(1)
        dropped = cluster.bus_faults.counts["partitioned"]
        await alice.post("general", "after the heal")
        await settle(cluster, [alice, bob], "general")
        assert cluster.bus_faults.counts["partitioned"] == dropped
        report = await checked(cluster)
        assert report.ok, f"seed {seed}\n{report.render()}"
        assert [e.kind for e in cluster.faults.events] == ["partition", "heal"]


async def test_crash_drain_restart() -> None:
    seed = 5
    async with Cluster(2, seed=seed) as cluster:
        alice = await cluster.connect("alice", gateway=0)
        bob = await cluster.connect("bob", gateway=1)
        await cluster.faults.crash(1)
        await alice.post("general", "while gw-2 is down")
        await cluster.faults.restart(1)
        await cluster.faults.drain(0)
        await bob.post("general", "while gw-1 drains")
        await cluster.faults.restart(0)
        await settle(cluster, [alice, bob], "general")
        assert bob.session >= 2 and alice.session >= 2  # both resumed
        assert cluster.recording.received(alice.name, "reconnect")  # the drain said so
        report = await checked(cluster)
        assert report.ok, f"seed {seed}\n{report.render()}"
        assert cluster.faults.counts() == {
            "gateway_crash": 1,
            "gateway_drain": 1,
            "gateway_restart": 2,
        }


async def test_embedded_outage_as_context_manager_and_awaitable() -> None:
    seed = 6
    async with Cluster(2, seed=seed) as cluster:
        alice = await cluster.connect("alice", gateway=0)
        bob = await cluster.connect("bob", gateway=1)
        async with cluster.faults.redis_outage():
            with pytest.raises(ClientError) as refused:
                await alice.post("general", "during the outage", id="out-1")
            assert refused.value.code == "unavailable"
        ack = await alice.post("general", "during the outage", id="out-1")  # same id: safe
        assert ack.seq == 1
        await cluster.faults.redis_outage(0.3)
        await bob.post("general", "after")
        await settle(cluster, [alice, bob], "general")
        assert [e.label for e in cluster.faults.events] == [OUTAGE_LABEL_FAKE] * 2
        report = await checked(cluster)
        assert report.ok, f"seed {seed}\n{report.render()}"


async def wait_for_reset(client: Client, channel: str, timeout: float = 5) -> None:
    await client.wait_until(lambda: any(r.channel == channel for r in client.resets), timeout)


def after(recording: Recording, t: float) -> Recording:
    return Recording([r for r in recording.records if r.t >= t])


async def test_embedded_data_loss_resets_clients() -> None:
    seed = 9
    async with Cluster(2, seed=seed) as cluster:
        alice = await cluster.connect("alice", gateway=0)
        bob = await cluster.connect("bob", gateway=1)
        welcome_epoch = bob.state.epochs["general"]
        for i in range(4):
            await alice.post("general", f"before {i}")
        await settle(cluster, [alice, bob], "general")
        await cluster.faults.data_loss()
        assert cluster.faults.events[-1].label == DATA_LOSS_LABEL_FAKE
        for client in (alice, bob):
            await wait_for_reset(client, "general")
        cut = cluster.clock()
        reset = bob.resets[-1]
        assert (reset.reason, reset.head) == ("epoch_changed", 0)
        assert reset.epoch != welcome_epoch
        ack = await bob.post("general", "after the loss")
        assert ack.seq == 1  # numbering began again, in the new epoch
        await settle(cluster, [alice, bob], "general")
        report = check(after(cluster.recording, cut), {"general": await cluster.stored("general")})
        assert report.ok, f"seed {seed}\n{report.render()}"
        # Over the whole run the checker sees what was lost: the acked posts from before (and,
        # as it does not tell epochs apart, seq 1 of both epochs as one seq seen two ways).
        whole = await checked(cluster)
        kinds = {v.kind for v in whole.violations}
        assert "acked_missing" in kinds, whole.render()
        assert kinds <= {"acked_missing", "order_mismatch"}, whole.render()


async def test_slow_consumer_is_closed_and_resumes() -> None:
    seed = 10
    config = GatewayConfig(max_buffer_bytes=64 * 1024, rate_per_s=1000, rate_burst=1000)
    async with Cluster(2, seed=seed, config=config) as cluster:
        alice = await cluster.connect("alice", gateway=0)
        bob = await cluster.connect("bob", gateway=1)
        gw2 = cluster.gateways[1]
        assert gw2 is not None
        sent = 0
        with cluster.faults.slow_consumer(bob):
            while not gw2.stats["slow_closed"] and sent < 2000:
                await asyncio.gather(
                    *(alice.post("general", f"{sent + i} " + "x" * 3900) for i in range(20))
                )
                sent += 20
        assert gw2.stats["slow_closed"] == 1, f"seed {seed}: never closed after {sent} posts"
        await settle(cluster, [alice, bob], "general", timeout=15)
        assert bob.session == 2  # closed as a slow consumer, then resumed from last_seen
        assert bob.seqs("general") == list(range(1, sent + 1))
        report = await checked(cluster)
        assert report.ok, f"seed {seed}\n{report.render()}"


async def test_cut_from_the_client_side() -> None:
    seed = 12
    async with Cluster(2, seed=seed) as cluster:
        alice = await cluster.connect("alice", gateway=0)
        bob = await cluster.connect("bob", gateway=1)
        await cluster.faults.cut(bob)
        await alice.post("general", "while bob reconnects")
        await bob.wait_until(lambda: bob.session == 2)
        await settle(cluster, [alice, bob], "general")
        report = await checked(cluster)
        assert report.ok, f"seed {seed}\n{report.render()}"
        assert cluster.faults.counts() == {"client_cut": 1}


async def test_redis_faults_need_a_redis_we_own() -> None:
    cluster = Cluster(1, redis_url="redis://127.0.0.1:1/0")  # never started: nothing is touched
    with pytest.raises(RuntimeError, match="owns"):
        await cluster.faults.redis_restart()
    with pytest.raises(RuntimeError, match="owns"):
        await cluster.faults.data_loss()
    assert "external" in cluster.faults.store_kind()


# --------------------------------------------------------------------------- live, redis-server


@pytest.mark.real_redis
async def test_real_redis_restart_with_aof_loses_nothing(redis_server_binary: str) -> None:
    seed = 14
    with RedisServer(appendonly=True, appendfsync="always", binary=redis_server_binary) as server:
        async with Cluster(2, seed=seed, redis_server=server) as cluster:
            cluster.faults.set_bus(loss=0.2)
            alice = await cluster.connect("alice", gateway=0)
            bob = await cluster.connect("bob", gateway=1)
            for i in range(10):
                await alice.post("general", f"before {i}")
            await cluster.faults.redis_restart()
            await asyncio.gather(*(bob.post("general", f"after {i}") for i in range(10)))
            await settle(cluster, [alice, bob], "general", timeout=10)
            assert not bob.resets and not alice.resets
            report = await checked(cluster)
            assert report.ok, f"seed {seed}\n{report.render()}"
            assert report.messages_checked == 20
            assert cluster.faults.counts()["redis_restart"] == 1


@pytest.mark.real_redis
async def test_real_redis_restart_without_persistence_resets(redis_server_binary: str) -> None:
    seed = 15
    with RedisServer(appendonly=False, binary=redis_server_binary) as server:
        async with Cluster(2, seed=seed, redis_server=server) as cluster:
            alice = await cluster.connect("alice", gateway=0)
            bob = await cluster.connect("bob", gateway=1)
            for i in range(5):
                await alice.post("general", f"before {i}")
            await settle(cluster, [alice, bob], "general")
            await cluster.faults.data_loss()
            for client in (alice, bob):
                await wait_for_reset(client, "general", timeout=10)
            cut = cluster.clock()
            assert {r.reason for r in alice.resets + bob.resets} == {"epoch_changed"}
            for i in range(5):
                await bob.post("general", f"after {i}")
            await settle(cluster, [alice, bob], "general", timeout=10)
            assert bob.texts("general")[-5:] == [f"after {i}" for i in range(5)]
            report = check(
                after(cluster.recording, cut), {"general": await cluster.stored("general")}
            )
            assert report.ok, f"seed {seed}\n{report.render()}"
            assert cluster.faults.counts()["data_loss"] == 1


@pytest.mark.real_redis
async def test_real_redis_outage_frozen_server(redis_server_binary: str) -> None:
    seed = 16
    with RedisServer(appendonly=False, binary=redis_server_binary) as server:
        async with Cluster(1, seed=seed, redis_server=server) as cluster:
            alice = await cluster.connect("alice")
            await alice.post("general", "before")
            async with cluster.faults.redis_outage():
                assert "SIGSTOP" in cluster.faults.events[-1].label
            await alice.post("general", "after")
            await settle(cluster, [alice], "general", timeout=10)
            report = await checked(cluster)
            assert report.ok, f"seed {seed}\n{report.render()}"
