"""Resuming a session: gap-fill through ``last_seen``, ``reset``, epochs, and the races around them.

PROTOCOL.md, "Starting a session" 3, 4 and 6, and guarantee 3, over real loopback WebSockets, on
fakeredis and on a private ``redis-server`` (``cluster_factory``).
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from wire import (
    ClusterFactory,
    Follower,
    RawConn,
    cluster_factory_fixture,
    post,
    raw_user,
    spec,
)

from labkit.server.client import Client
from labkit.server.cluster import Cluster
from labkit.server.gateway import GatewayConfig

cluster_factory = cluster_factory_fixture()

FAST = GatewayConfig(rate_per_s=1e6, rate_burst=1e6)


async def seed_history(c: Cluster, channel: str, count: int, text: str = "seeded") -> None:
    """Store ``count`` messages straight into the store (no bus, nobody connected yet)."""
    assert c.store is not None
    start = (await c.store.state(channel)).head
    for first in range(0, count, 100):
        await asyncio.gather(
            *(
                c.store.append(channel, "bob", f"seed-{start + n}", text, now=time.time())
                for n in range(first, min(count, first + 100))
            )
        )
    assert (await c.store.state(channel)).head == start + count


def epochs_of(conn: RawConn) -> dict[str, str]:
    return {name: info["epoch"] for name, info in conn.welcome["channels"].items()}


async def test_resume_through_last_seen_fills_exactly_the_gap(
    cluster_factory: ClusterFactory,
) -> None:
    async with cluster_factory(gateways=2) as c:
        bob = await raw_user(c, "bob", 1)
        alice = await raw_user(c, "alice", 0)
        seen = [await post(bob, f"b{n}", "general", f"seen {n}") for n in range(1, 6)]
        assert await alice.expect_messages("general", range(1, 6)) == seen
        epochs = epochs_of(alice)
        await alice.abort()

        missed = [await post(bob, f"m{n}", "general", f"missed {n}") for n in range(6, 26)]
        missed_eng = [await post(bob, f"e{n}", "eng", f"eng {n}") for n in range(1, 4)]

        # On a gateway with no other member (its feed starts afresh) and on one whose feed is
        # already live: the missed messages, in order, per channel, then live ones.
        general = seen + missed
        for gateway, last in ((0, 5), (1, 20)):
            again = await raw_user(
                c,
                "alice",
                gateway,
                f"alice resuming on gw-{gateway + 1}",
                last_seen={"general": last, "eng": 0, "random": 0},
                epochs=epochs,
            )
            head = len(general)
            assert again.welcome["channels"]["general"]["head"] == head
            frames = [await again.recv() for _ in range(head - last + len(missed_eng))]
            assert [f for f in frames if f["channel"] == "general"] == general[last:], again.name
            assert [f for f in frames if f["channel"] == "eng"] == missed_eng, again.name
            live = await post(bob, f"live-{gateway}", "general", "live")
            general.append(live)
            assert await again.expect("message", channel="general", seq=head + 1) == live
            await again.ping()  # nothing else: #random had nothing to fill
            await again.close()


async def test_gap_fill_is_all_or_nothing_at_1000_missed(cluster_factory: ClusterFactory) -> None:
    async with cluster_factory(gateways=1, config=FAST) as c:
        await seed_history(c, "general", 1001)
        epoch = (await c.store.state("general")).epoch
        # 1000 missed: every one of them, in order.
        filled = await raw_user(
            c, "alice", 0, "1000 missed", last_seen={"general": 1}, epochs={"general": epoch}
        )
        await filled.expect_messages("general", range(2, 1002))
        # 1001 missed: a reset instead, and not a single message of the gap.
        behind = await raw_user(
            c, "carol", 0, "1001 missed", last_seen={"general": 0}, epochs={"general": epoch}
        )
        await behind.expect(
            "reset", channel="general", head=1001, epoch=epoch, reason="too_far_behind"
        )
        await behind.ping()
        # Both continue live from there; the reset one may page history itself.
        bob = await raw_user(c, "bob", 0)
        live = await post(bob, "live", "general", "after the gap")
        assert live["seq"] == 1002
        for conn in (filled, behind):
            assert await conn.expect("message", channel="general", seq=1002) == live
        await behind.send({"type": "history", "id": "h", "channel": "general", "limit": 1000})
        page = await behind.expect("history", id="h", channel="general", head=1002)
        assert [m["seq"] for m in page["messages"]] == list(range(1, 1001))


async def test_epoch_mismatch_or_last_seen_above_head_resets(
    cluster_factory: ClusterFactory,
) -> None:
    async with cluster_factory(gateways=2) as c:
        bob = await raw_user(c, "bob", 1)
        for n in range(1, 4):
            await post(bob, f"b{n}", "general", f"m{n}")
        epoch = bob.welcome["channels"]["general"]["epoch"]
        reset = spec("reset", channel="general", head=3, epoch=epoch, reason="epoch_changed")
        cases: dict[str, dict[str, Any]] = {
            # Guarantee 6: an epoch mismatch resets even when nothing was missed.
            "stale epoch, nothing missed": {
                "last_seen": {"general": 3},
                "epochs": {"general": "old-life"},
            },
            "stale epoch, some missed": {
                "last_seen": {"general": 1},
                "epochs": {"general": "old-life"},
            },
            "stale epoch, no last_seen": {"epochs": {"general": "old-life"}},
            "last_seen above head": {"last_seen": {"general": 9}, "epochs": {"general": epoch}},
            "last_seen above head, no epochs": {"last_seen": {"general": 4}},
        }
        conns = []
        for gateway, (case, hello) in enumerate(cases.items()):
            conn = await raw_user(c, "alice", gateway % 2, case, **hello)
            await conn.expect(**reset)
            await conn.ping()  # no gap-fill after the reset
            conns.append(conn)
        live = await post(bob, "b4", "general", "live from head + 1")
        for conn in conns:
            assert await conn.expect("message", channel="general", seq=4) == live


async def _resets(conn: RawConn, channel: str, real_redis: bool) -> dict[str, Any]:
    """Read the resets the data loss causes; return ``channel``'s. A restarted real Redis lost
    every channel, so there each of the user's channels resets; on fakeredis only ``channel``."""
    wanted = set(conn.welcome["channels"]) if real_redis else {channel}
    got: dict[str, dict[str, Any]] = {}
    while set(got) != wanted:
        frame = await conn.expect("reset", reason="epoch_changed", timeout=10)
        assert frame["channel"] in wanted - set(got), f"{conn.name}: unexpected {frame}"
        got[frame["channel"]] = frame
    return got[channel]


async def test_epoch_change_under_a_live_connection(cluster_factory: ClusterFactory) -> None:
    async with cluster_factory(gateways=2, own_redis="volatile") as c:
        alice = await raw_user(c, "alice", 0)
        bob = await raw_user(c, "bob", 1)
        carol = await c.connect("carol", gateway=0)
        for n in range(1, 4):
            await post(bob, f"b{n}", "general", f"before {n}")
        await alice.expect_messages("general", range(1, 4))
        await carol.wait_for_seq("general", 3)
        old = alice.welcome["channels"]["general"]["epoch"]

        await cluster_factory.lose_channel(c, "general")

        real = cluster_factory.real
        resets = [await _resets(conn, "general", real) for conn in (alice, bob)]
        for reset in resets:
            assert reset["head"] == 0 and reset["reason"] == "epoch_changed", reset
            assert reset["epoch"] != old and reset["epoch"] == resets[0]["epoch"], resets
        new = resets[0]["epoch"]
        assert c.store is not None and (await c.store.state("general")).epoch == new
        await carol.wait_until(lambda: any(r.channel == "general" for r in carol.resets))
        assert carol.state.epochs["general"] == new

        # Live from head + 1 in the new life of the channel.
        first = await post(bob, "after-1", "general", "a new beginning")
        assert first["seq"] == 1
        assert await alice.expect("message", channel="general", seq=1) == first
        await carol.wait_for_seq("general", 1)
        assert carol.gaps == [] and carol.duplicates == []

        # A client that resumes with the new epoch is gap-filled, not reset again.
        general_resets = sum(r.channel == "general" for r in carol.resets)
        await carol.drop()
        await carol.wait_until(lambda: carol.session >= 2 and carol.connected)
        await post(bob, "after-2", "general", "still going")
        await carol.wait_for_seq("general", 2)
        assert sum(r.channel == "general" for r in carol.resets) == general_resets
        assert [m.text for m in carol.messages["general"]][-2:] == [
            "a new beginning",
            "still going",
        ]


async def test_large_gap_fill_is_paced_and_never_counts_as_slow(
    cluster_factory: ClusterFactory,
) -> None:
    bound = 16 * 1024
    config = GatewayConfig(max_buffer_bytes=bound, rate_per_s=1e6, rate_burst=1e6)
    async with cluster_factory(gateways=2, config=config) as c:
        gw = c.gateways[0]
        assert gw is not None and c.store is not None
        # 900 missed messages of 4000 four-byte characters: about 14 MB, far more than the
        # bound and than what the sockets can buffer.
        await seed_history(c, "general", 905, "😀" * 4000)
        epoch = (await c.store.state("general")).epoch
        carol = Follower(await raw_user(c, "carol", 0), "general", first=906)
        bob = await raw_user(c, "bob", 1)

        alice = await RawConn.open(c.urls[0], "alice, reading slowly", rcvbuf=4096, max_queue=4)
        await alice.send(
            {
                "type": "hello",
                "token": c.token("alice"),
                "last_seen": {"general": 5},
                "epochs": {"general": epoch},
            }
        )

        # alice reads nothing yet: the gap-fill must wait for her, with more than the bound
        # queued at the gateway, and live posts meanwhile.
        def queued() -> int:
            return max((x.buffered() for x in gw.conns if x.user == "alice"), default=0)

        deadline = time.monotonic() + 10
        while queued() <= bound:
            assert time.monotonic() < deadline, "the gap-fill never filled alice's buffer"
            await asyncio.sleep(0.01)
        for n in range(5):
            await post(bob, f"live-{n}", "general", f"live {n}")
        await carol.until(910)

        await alice.expect("welcome", user="alice")
        await alice.expect_messages("general", range(6, 911), timeout=10)
        for n in range(5, 10):
            live = await post(bob, f"live-{n}", "general", f"live {n}")
            assert await alice.expect("message", channel="general", seq=live["seq"]) == live
        await alice.ping()
        assert gw.stats["slow_closed"] == 0


async def test_subscribe_then_backfill_race_while_reconnecting(
    cluster_factory: ClusterFactory,
) -> None:
    seed = 20240611
    total = 200
    async with cluster_factory(gateways=3, config=FAST) as c:
        assert c.directory is not None
        for user in ("alice", "bob", "carol"):
            await c.directory.join(user, "race")
        bob = await c.connect("bob", gateway=1)
        # alice knows only gw-1, where she is the channel's only member: every reconnect makes
        # the gateway subscribe afresh and read the head while bob keeps posting.
        alice = Client(
            "alice",
            [c.urls[0]],
            lambda: c.token("alice"),
            name="alice-racer",
            recording=c.recording,
            seed=seed,
            backoff_s=(0.001, 0.01),
        )
        c.clients.append(alice)
        await alice.connect()
        epoch = alice.state.epochs["race"]

        async def post_all() -> None:
            for n in range(total):
                await bob.post("race", f"r{n}")

        async def drop_alice(rng: random.Random) -> int:
            drops = 0
            while not posting.done():
                target = min(total, len(alice.seqs("race")) + rng.randint(1, 12))
                await alice.wait_until(lambda t=target: len(alice.seqs("race")) >= t, timeout=10)
                session = alice.session
                await alice.drop()
                drops += 1
                await alice.wait_until(
                    lambda s=session: alice.session > s and alice.connected, timeout=10
                )
            return drops

        async def cycle_carol(rng: random.Random) -> int:
            # Fresh connections on gw-3 (subscribing afresh each time) resuming from a random
            # point: each must get every seq from there on, in order.
            opened = 0
            while not posting.done():
                assert c.store is not None
                head = (await c.store.state("race")).head
                last = rng.randint(max(0, head - 20), head)
                conn = await raw_user(
                    c, "carol", 2, f"carol from {last}", last_seen={"race": last},
                    epochs={"race": epoch},
                )  # fmt: skip
                follower = Follower(conn, "race", first=last + 1)
                await follower.until(min(total, head + rng.randint(1, 10)), timeout=10)
                await follower.stop()
                await conn.close()
                opened += 1
            return opened

        posting = asyncio.create_task(post_all())
        drops, opened = await asyncio.gather(
            drop_alice(random.Random(f"{seed}-alice")), cycle_carol(random.Random(f"{seed}-carol"))
        )
        await posting
        await alice.wait_for_seq("race", total, timeout=10)
        assert alice.seqs("race") == list(range(1, total + 1)), f"seed {seed}"
        assert alice.gaps == [] and alice.duplicates == [], f"seed {seed}"
        assert drops >= 5 and opened >= 3, f"seed {seed}: only {drops} drops, {opened} opens"
        assert alice.session == drops + 1, f"seed {seed}"
