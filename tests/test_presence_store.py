"""Shared presence in Redis, on fakeredis and on a real ``redis-server`` (``redis_backend``).

Each ``PresenceStore`` built on its own client stands for one gateway process. The tests that
matter most: of several gateways heartbeating or expiring at once, exactly one announces each
transition; a crashed gateway's users are expired by the others; a reconnect inside the window
never flaps.
"""

from __future__ import annotations

import asyncio
import random
import socket

import pytest
from conftest import RedisFactory

from labkit.core.presence import OFFLINE, ONLINE, PresenceTracker, Transition
from labkit.server.redis import presence_store
from labkit.server.redis.presence_store import (
    LAST_ACTIVE_KEY,
    ONLINE_KEY,
    PRESENCE_TOPIC,
    PresenceStore,
    conns_key,
    decode_transition,
    encode_transition,
)
from labkit.server.redis.store import StoreUnavailable, connect

NOW = 1_764_331_200.0


def gateways(redis_backend: RedisFactory, n: int) -> list[PresenceStore]:
    """``n`` gateways, each with its own client to the same backend."""
    return [PresenceStore(redis_backend(), heartbeat_s=10) for _ in range(n)]


async def test_first_heartbeat_announces_online_and_later_ones_do_not(
    redis_backend: RedisFactory,
) -> None:
    (gw,) = gateways(redis_backend, 1)
    assert gw.expiry_s == 30
    assert await gw.heartbeat("alice", "c1", NOW) == Transition("alice", ONLINE, NOW, NOW)
    assert await gw.heartbeat("alice", "c1", NOW + 10) is None
    assert await gw.heartbeat("alice", "c2", NOW + 11) is None
    assert await gw.status(["alice", "nobody"], NOW + 11) == {
        "alice": (ONLINE, NOW + 11),
        "nobody": (OFFLINE, None),
    }
    assert await gw.status([], NOW) == {}
    assert await gw.online_users(NOW + 11) == {"alice"}


async def test_expiry_at_exactly_three_heartbeats(redis_backend: RedisFactory) -> None:
    (gw,) = gateways(redis_backend, 1)
    await gw.heartbeat("alice", "c1", 100.0)
    assert await gw.expire(129.999) == []
    assert await gw.status(["alice"], 129.999) == {"alice": (ONLINE, 100.0)}
    assert await gw.status(["alice"], 130.0) == {"alice": (OFFLINE, 100.0)}
    assert await gw.expire(130.0) == [Transition("alice", OFFLINE, 100.0, 130.0)]
    assert await gw.expire(130.0) == []
    assert await gw.status(["alice"], 500.0) == {"alice": (OFFLINE, 100.0)}
    # Pruned: nothing of alice's is left but her last_active.
    r = gw.redis
    assert await r.zscore(ONLINE_KEY, "alice") is None
    assert await r.exists(conns_key("alice")) == 0
    assert await r.hget(LAST_ACTIVE_KEY, "alice") is not None


async def test_timestamps_survive_the_trip_through_lua_exactly(
    redis_backend: RedisFactory,
) -> None:
    (gw,) = gateways(redis_backend, 1)
    t = 1_764_331_200.123456  # 16 significant digits: Lua's own formatting keeps only 14
    assert (await gw.heartbeat("alice", "c1", t)) == Transition("alice", ONLINE, t, t)
    assert await gw.status(["alice"], t) == {"alice": (ONLINE, t)}
    assert await gw.expire(t + 30.0 - 1e-6) == []
    assert await gw.expire(t + 30.0) == [Transition("alice", OFFLINE, t, t + 30.0)]


async def test_two_devices_on_two_gateways_are_one_presence(redis_backend: RedisFactory) -> None:
    gw1, gw2 = gateways(redis_backend, 2)
    announced = [
        await gw1.heartbeat("alice", "laptop", NOW),
        await gw2.heartbeat("alice", "phone", NOW + 1),
    ]
    assert announced == [Transition("alice", ONLINE, NOW, NOW), None]
    await gw1.disconnect("alice", "laptop", NOW + 5)
    for dt in range(10, 120, 10):
        assert await gw2.heartbeat("alice", "phone", NOW + dt) is None
        assert await gw1.expire(NOW + dt) == []
        assert await gw2.expire(NOW + dt) == []
    assert await gw1.status(["alice"], NOW + 115) == {"alice": (ONLINE, NOW + 110)}
    # The closed laptop's entry was pruned by the phone's heartbeats.
    assert await gw1.redis.zrange(conns_key("alice"), 0, -1) == ["phone"]
    offline = await gw1.expire(NOW + 140) + await gw2.expire(NOW + 140)
    assert offline == [Transition("alice", OFFLINE, NOW + 110, NOW + 140)]


async def test_reconnect_inside_the_window_never_flaps(redis_backend: RedisFactory) -> None:
    gw1, gw2 = gateways(redis_backend, 2)
    announced = [await gw1.heartbeat("alice", "c1", NOW)]
    announced.append(await gw1.heartbeat("alice", "c1", NOW + 10))
    await gw1.disconnect("alice", "c1", NOW + 12)  # gw1 drains; alice moves to gw2
    for dt in (13.0, 20.0, 30.0, 39.0):
        announced += await gw1.expire(NOW + dt)
        announced += await gw2.expire(NOW + dt)
    announced.append(await gw2.heartbeat("alice", "c2", NOW + 39))
    for dt in range(40, 200, 10):
        announced += await gw2.expire(NOW + dt)
        announced.append(await gw2.heartbeat("alice", "c2", NOW + dt))
    assert [a for a in announced if a is not None] == [Transition("alice", ONLINE, NOW, NOW)]


async def test_crashed_gateway_users_are_expired_by_the_survivors(
    redis_backend: RedisFactory,
) -> None:
    gw1, gw2 = gateways(redis_backend, 2)
    for i, user in enumerate(["alice", "bob", "carol"]):
        await gw1.heartbeat(user, f"{user}@gw1", NOW + i)
    await gw2.heartbeat("carol", "carol@gw2", NOW + 5)
    await gw1.redis.aclose()  # gw1 dies without a word: its connections just stop
    got: list[Transition] = []
    for dt in range(6, 100, 1):
        got += await gw2.expire(NOW + dt)
        if dt % 10 == 5:
            await gw2.heartbeat("carol", "carol@gw2", NOW + dt)
    assert got == [
        Transition("alice", OFFLINE, NOW, NOW + 30),
        Transition("bob", OFFLINE, NOW + 1, NOW + 31),
    ]
    assert await gw2.online_users(NOW + 99) == {"carol"}


async def test_heartbeat_after_the_deadline_before_any_expire_repeats_online(
    redis_backend: RedisFactory,
) -> None:
    (gw,) = gateways(redis_backend, 1)
    await gw.heartbeat("alice", "c1", NOW)
    assert await gw.status(["alice"], NOW + 35) == {"alice": (OFFLINE, NOW)}
    # Nobody published "offline", so no offline/online pair: a repeated "online" corrects
    # whoever read the status above.
    assert await gw.heartbeat("alice", "c1", NOW + 35) == Transition(
        "alice", ONLINE, NOW + 35, NOW + 35
    )
    assert await gw.expire(NOW + 40) == []


async def test_last_active_never_goes_back_with_a_slower_gateway_clock(
    redis_backend: RedisFactory,
) -> None:
    gw1, gw2 = gateways(redis_backend, 2)
    await gw1.heartbeat("alice", "c1", NOW + 10)
    assert await gw2.heartbeat("alice", "c2", NOW + 8) is None  # gw2's clock is 2 s behind
    assert await gw1.status(["alice"], NOW + 10) == {"alice": (ONLINE, NOW + 10)}


async def test_connection_entries_expire_by_themselves(redis_backend: RedisFactory) -> None:
    (gw,) = gateways(redis_backend, 1)
    await gw.heartbeat("alice", "c1", NOW)
    ttl_ms = await gw.redis.pttl(conns_key("alice"))
    assert 0 < ttl_ms <= 60_000  # even if no gateway ever calls expire() again


async def test_expire_works_through_more_than_one_batch(
    redis_backend: RedisFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(presence_store, "EXPIRE_BATCH", 3)
    (gw,) = gateways(redis_backend, 1)
    users = [f"u{i:02}" for i in range(10)]
    for i, user in enumerate(users):
        await gw.heartbeat(user, "c", NOW + i / 10)
    got = await gw.expire(NOW + 40)
    assert [t.user for t in got] == users
    assert await gw.redis.zcard(ONLINE_KEY) == 0


# -- exactly once, under concurrency ---------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_concurrent_expire_announces_each_offline_exactly_once(
    redis_backend: RedisFactory, seed: int
) -> None:
    rng = random.Random(seed)
    gws = gateways(redis_backend, 4)
    users = [f"u{i}" for i in range(300)]
    last = {u: NOW + rng.uniform(0, 60) for u in users}
    await asyncio.gather(*(rng.choice(gws).heartbeat(u, "c", t) for u, t in last.items()))
    got: list[Transition] = []
    for now in (NOW + 45, NOW + 70, NOW + 95):
        rounds = await asyncio.gather(*(gw.expire(now) for gw in gws for _ in range(2)))
        got += [t for r in rounds for t in r]
    assert sorted(t.user for t in got) == sorted(users), f"seed {seed}"
    want = {u: Transition(u, OFFLINE, t, t + 30.0) for u, t in last.items()}
    assert all(t == want[t.user] for t in got), f"seed {seed}"


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_concurrent_heartbeats_announce_online_exactly_once(
    redis_backend: RedisFactory, seed: int
) -> None:
    rng = random.Random(seed)
    gws = gateways(redis_backend, 4)
    users = [f"u{i}" for i in range(100)]
    calls = [
        gw.heartbeat(u, f"{u}@{g}", NOW + rng.uniform(0, 1))
        for u in users
        for g, gw in enumerate(gws)
    ]
    rng.shuffle(calls)
    got = [t for t in await asyncio.gather(*calls) if t is not None]
    assert sorted(t.user for t in got) == sorted(users), f"seed {seed}"
    assert all(t.status == ONLINE for t in got), f"seed {seed}"


@pytest.mark.parametrize("seed", [7, 8])
async def test_many_gateways_agree_with_the_pure_tracker(
    redis_backend: RedisFactory, seed: int
) -> None:
    """Random heartbeats spread over 3 gateways that all expire at every step: the union of
    what they announce is exactly what one PresenceTracker announces for the same inputs."""
    rng = random.Random(seed)
    gws = gateways(redis_backend, 3)
    tracker = PresenceTracker(heartbeat_s=10)
    got: list[Transition] = []
    want: list[Transition] = []
    t = NOW
    for _ in range(150):
        t += rng.choice([0.5, 3.0, 9.0, 25.0, 41.0])
        want += tracker.expire(t)
        rounds = await asyncio.gather(*(gw.expire(t) for gw in gws))
        got += [tr for r in rounds for tr in r]
        user = f"u{rng.randrange(5)}"
        conn = f"{user}/{rng.randrange(3)}"
        want += tracker.heartbeat(user, conn, t)
        announced = await rng.choice(gws).heartbeat(user, conn, t)
        if announced is not None:
            got.append(announced)

    def key(tr: Transition) -> tuple[float, str, str]:
        return tr.at, tr.user, tr.status

    assert sorted(got, key=key) == sorted(want, key=key), f"seed {seed}"
    users = [f"u{i}" for i in range(5)]
    assert await gws[0].status(users, t) == {u: tracker.status(u, t) for u in users}


# -- wire format and failures ----------------------------------------------------------------


def test_transition_payload_round_trips() -> None:
    assert PRESENCE_TOPIC == "labkit:bus:presence"
    for t in (
        Transition("alice", ONLINE, NOW + 0.123456, NOW + 0.123456),
        Transition("bob", OFFLINE, NOW, NOW + 30),
        Transition("carol", OFFLINE, None, NOW),
    ):
        assert decode_transition(encode_transition(t)) == t


@pytest.mark.parametrize(
    "payload",
    [
        "not json",
        "[1, 2]",
        '{"user": "a", "status": "away", "last_active": 1, "at": 1}',
        '{"user": 5, "status": "online", "last_active": 1, "at": 1}',
        '{"user": "a", "status": "online", "last_active": "x", "at": 1}',
        '{"user": "a", "status": "online", "last_active": 1, "at": true}',
        '{"user": "a", "status": "online", "last_active": 1}',
    ],
)
def test_bad_payloads_are_refused(payload: str) -> None:
    with pytest.raises(ValueError):
        decode_transition(payload)


async def test_unreachable_redis_is_store_unavailable() -> None:
    with socket.socket() as sock:  # a port nobody listens on (never 6379: ours is fresh)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = connect(f"redis://127.0.0.1:{port}/0")  # the store's client: 2 s timeouts
    gw = PresenceStore(client)
    try:
        with pytest.raises(StoreUnavailable):
            await gw.heartbeat("alice", "c1", NOW)
        with pytest.raises(StoreUnavailable):
            await gw.expire(NOW)
        with pytest.raises(StoreUnavailable):
            await gw.status(["alice"], NOW)
    finally:
        await client.aclose()


def test_heartbeat_interval_must_be_positive() -> None:
    import fakeredis

    with pytest.raises(ValueError):
        PresenceStore(fakeredis.aioredis.FakeRedis(decode_responses=True), heartbeat_s=0)
