"""The store on both backends: gap-free seqs, idempotent posts, monotonic ts, history, epochs.

Most tests take ``redis_backend`` and so run on fakeredis and on a real ``redis-server``.
Tests that lose, crash, stop or freeze Redis start a private ``RedisServer`` of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import time
from collections.abc import AsyncIterator

import fakeredis
import pytest
from conftest import RedisFactory

from labkit.core.protocol import Message, encode
from labkit.server.redis.store import (
    Appended,
    ChannelState,
    IdConflict,
    Store,
    StoreUnavailable,
    connect,
    log_key,
)
from labkit.server.redis_server import RedisServer

NOW = 1_764_331_200.0


def fields(raw: str) -> tuple[int, str, str, float]:
    frame = json.loads(raw)
    assert frame["type"] == "message"
    return frame["seq"], frame["user"], frame["text"], frame["ts"]


@contextlib.asynccontextmanager
async def private_store(server: RedisServer) -> AsyncIterator[Store]:
    """A store on a server this test owns, through ``connect`` (2 s timeouts, one retry)."""
    client = connect(server.url)
    try:
        yield Store(client)
    finally:
        await client.aclose()


# -- sequencing ------------------------------------------------------------------------------


async def test_concurrent_appends_from_four_clients_are_gap_free(
    redis_backend: RedisFactory,
) -> None:
    rng = random.Random(20240601)
    stores = [Store(redis_backend()) for _ in range(4)]
    posts = [(f"p{i}", f"u{i % 7}", f"text {i}", NOW + rng.uniform(-5, 5)) for i in range(200)]
    results = await asyncio.gather(
        *(
            rng.choice(stores).append("general", user, pid, text, now=now)
            for pid, user, text, now in posts
        )
    )
    assert sorted(r.seq for r in results) == list(range(1, 201))
    assert not any(r.duplicate for r in results)

    pairs = await stores[0].history("general", limit=1000)
    assert [seq for seq, _ in pairs] == list(range(1, 201))
    frames = [raw for _, raw in pairs]
    assert [fields(raw)[0] for raw in frames] == list(range(1, 201))
    assert sorted(fields(raw)[2] for raw in frames) == sorted(text for _, _, text, _ in posts)
    stamps = [fields(raw)[3] for raw in frames]
    assert stamps == sorted(stamps), "ts never decreases along the seqs"
    assert (await stores[3].state("general")).head == 200


async def test_append_returns_the_canonical_frame(redis_backend: RedisFactory) -> None:
    store = Store(redis_backend())
    got = await store.append("eng", "alice", "c-1", 'say "hé" \\ \n ok', now=NOW + 0.123)
    assert got == Appended(seq=1, ts=NOW + 0.123, raw=got.raw, duplicate=False)
    assert got.raw == encode(Message("eng", 1, "alice", 'say "hé" \\ \n ok', NOW + 0.123))
    assert await store.history("eng") == [(1, got.raw)]


async def test_channels_are_numbered_independently(redis_backend: RedisFactory) -> None:
    store = Store(redis_backend())
    a1 = await store.append("a", "bob", "1", "x", now=NOW)
    b1 = await store.append("b", "bob", "2", "x", now=NOW)
    a2 = await store.append("a", "bob", "3", "x", now=NOW)
    assert (a1.seq, b1.seq, a2.seq) == (1, 1, 2)


# -- idempotency -----------------------------------------------------------------------------


async def test_retry_with_same_id_returns_same_seq_and_stores_nothing(
    redis_backend: RedisFactory,
) -> None:
    store = Store(redis_backend())
    first = await store.append("general", "alice", "c-17", "hi", now=NOW)
    await store.append("general", "bob", "c-17", "hi", now=NOW)  # another user's id space
    retry = await Store(redis_backend()).append("general", "alice", "c-17", "hi", now=NOW + 60)
    assert retry == Appended(seq=first.seq, ts=first.ts, raw=first.raw, duplicate=True)
    assert (await store.state("general")).head == 2
    assert len(await store.history("general")) == 2


async def test_reused_id_with_other_text_or_channel_is_a_conflict(
    redis_backend: RedisFactory,
) -> None:
    store = Store(redis_backend())
    first = await store.append("general", "alice", "c-1", "hi", now=NOW)
    with pytest.raises(IdConflict):
        await store.append("general", "alice", "c-1", "hi!", now=NOW)
    with pytest.raises(IdConflict):
        await store.append("random", "alice", "c-1", "hi", now=NOW)
    assert (await store.state("general")).head == 1
    assert await store.history("random") == []
    again = await store.append("general", "alice", "c-1", "hi", now=NOW)
    assert again.seq == first.seq and again.duplicate


async def test_refused_post_does_not_use_up_its_id() -> None:
    """A post that never reached Redis leaves its id free: the retry is stored as new."""
    server = fakeredis.FakeServer()
    store = Store(connect(None, fake_server=server))
    await store.append("general", "alice", "c-1", "one", now=NOW)
    server.connected = False
    with pytest.raises(StoreUnavailable):
        await store.append("general", "alice", "c-2", "two", now=NOW)
    server.connected = True
    got = await store.append("general", "alice", "c-2", "two", now=NOW)
    assert (got.seq, got.duplicate) == (2, False)


async def test_post_ids_are_remembered_for_the_ttl(redis_backend: RedisFactory) -> None:
    store = Store(redis_backend(), idem_ttl_s=600)
    await store.append("general", "alice", "c-1", "hi", now=NOW)
    ttl = await redis_backend().ttl("labkit:idem:{alice}:{c-1}")
    assert 590 < ttl <= 600


# -- timestamps ------------------------------------------------------------------------------


async def test_ts_never_decreases_when_the_clock_goes_back(redis_backend: RedisFactory) -> None:
    store = Store(redis_backend())
    clock = [NOW + 10.5, NOW + 3.0, NOW + 10.5, NOW + 11.25, NOW - 100]
    got = [
        await store.append("general", "alice", f"c-{i}", "t", now=now)
        for i, now in enumerate(clock)
    ]
    assert [g.ts for g in got] == [NOW + 10.5, NOW + 10.5, NOW + 10.5, NOW + 11.25, NOW + 11.25]
    assert [fields(g.raw)[3] for g in got] == [g.ts for g in got]


async def test_non_finite_now_is_refused(redis_backend: RedisFactory) -> None:
    store = Store(redis_backend())
    with pytest.raises(ValueError):
        await store.append("general", "alice", "c-1", "t", now=float("nan"))


# -- history ---------------------------------------------------------------------------------


async def test_history_honours_after_and_limit(redis_backend: RedisFactory) -> None:
    store = Store(redis_backend())
    for i in range(1, 11):
        await store.append("general", "carol", f"c-{i}", f"m{i}", now=NOW + i)

    async def seqs(after: int = 0, limit: int = 100) -> list[int]:
        pairs = await store.history("general", after, limit)
        assert all(seq == fields(raw)[0] for seq, raw in pairs), "each seq is its frame's"
        assert all(type(seq) is int for seq, _ in pairs), "seqs are ints, not float scores"
        return [seq for seq, _ in pairs]

    assert await seqs() == list(range(1, 11))
    assert await seqs(after=3, limit=4) == [4, 5, 6, 7]
    assert await seqs(after=8) == [9, 10]
    assert await seqs(after=10) == []
    assert await seqs(after=0, limit=1) == [1]
    assert await store.history("nowhere") == []


async def test_history_range_is_inclusive_and_counts_reads(redis_backend: RedisFactory) -> None:
    store = Store(redis_backend())
    for i in range(1, 11):
        await store.append("general", "carol", f"c-{i}", f"m{i}", now=NOW)
    before = store.reads
    middle = await store.history_range("general", 3, 5)
    assert [(seq, fields(raw)[0]) for seq, raw in middle] == [(3, 3), (4, 4), (5, 5)]
    assert [seq for seq, _ in await store.history_range("general", 9, 20)] == [9, 10]
    assert await store.history_range("general", 5, 4) == []
    assert store.reads == before + 2, "an empty range costs no round trip"


# -- heads and epochs ------------------------------------------------------------------------


async def test_state_of_unknown_channel_gets_a_stable_epoch(redis_backend: RedisFactory) -> None:
    store = Store(redis_backend())
    first = await store.state("design")
    assert first.head == 0 and len(first.epoch) == 8
    assert await Store(redis_backend()).state("design") == first
    await store.append("design", "dave", "d-1", "hello", now=NOW)
    assert await store.state("design") == ChannelState(head=1, epoch=first.epoch)


async def test_states_reads_many_channels_in_one_round_trip(redis_backend: RedisFactory) -> None:
    epochs = iter(f"ep{i:06d}" for i in range(100))
    store = Store(redis_backend(), new_epoch=lambda: next(epochs))
    await store.append("general", "erin", "e-1", "x", now=NOW)
    await store.append("general", "erin", "e-2", "x", now=NOW)
    before = store.reads
    got = await store.states(["general", "eng", "general"])
    assert store.reads == before + 1
    assert got == {
        "general": ChannelState(head=2, epoch="ep000000"),
        "eng": ChannelState(head=0, epoch=got["eng"].epoch),
    }
    assert got["eng"].epoch != "ep000000"
    assert await store.states([]) == {}


@pytest.mark.parametrize("kind", ["fake", pytest.param("real", marks=pytest.mark.real_redis)])
async def test_epoch_changes_when_the_data_is_lost(
    kind: str, request: pytest.FixtureRequest
) -> None:
    """fakeredis: a new FakeServer is a Redis that lost everything; real: a restart without
    persistence."""
    if kind == "fake":
        lost, fresh = connect(None), connect(None)  # each on a FakeServer of its own
        await Store(lost).append("general", "alice", "c-1", "hi", now=NOW)
        before = await Store(lost).state("general")
        after = await Store(fresh).state("general")
        await lost.aclose()
        await fresh.aclose()
    else:
        binary = request.getfixturevalue("redis_server_binary")
        with RedisServer(binary=binary) as server:
            async with private_store(server) as store:
                await store.append("general", "alice", "c-1", "hi", now=NOW)
                before = await store.state("general")
                server.restart()
                after = await store.state("general")
                retry = await store.append("general", "alice", "c-1", "hi", now=NOW)
                assert (retry.seq, retry.duplicate) == (1, False)
    assert before.head == 1
    assert after.head == 0
    assert after.epoch != before.epoch


# -- durability and failures (private real servers) ------------------------------------------


@pytest.mark.real_redis
async def test_acked_posts_survive_a_crash_with_aof(redis_server_binary: str) -> None:
    with RedisServer(appendonly=True, appendfsync="always", binary=redis_server_binary) as server:
        async with private_store(server) as store:
            acked = [
                await store.append("general", "bob", f"b-{i}", f"m{i}", now=NOW + i)
                for i in range(5)
            ]
            before = await store.state("general")
            server.kill()
            server.restart()
            assert await store.history("general") == [(a.seq, a.raw) for a in acked]
            assert await store.state("general") == before
            retry = await store.append("general", "bob", "b-4", "m4", now=NOW + 9)
            assert retry == Appended(acked[4].seq, acked[4].ts, acked[4].raw, duplicate=True)
            fresh = await store.append("general", "bob", "b-5", "m5", now=NOW)
            assert (fresh.seq, fresh.ts) == (6, NOW + 4)


@pytest.mark.real_redis
async def test_stopped_server_is_unavailable_quickly(redis_server_binary: str) -> None:
    with RedisServer(appendonly=True, binary=redis_server_binary) as server:
        async with private_store(server) as store:
            await store.append("general", "alice", "c-1", "one", now=NOW)
            server.stop()
            for call in (
                lambda: store.append("general", "alice", "c-2", "two", now=NOW),
                lambda: store.history("general"),
                lambda: store.states(["general"]),
            ):
                started = time.monotonic()
                with pytest.raises(StoreUnavailable, match=f"127.0.0.1:{server.port}"):
                    await call()
                assert time.monotonic() - started < 3
            server.start()
            got = await store.append("general", "alice", "c-2", "two", now=NOW)
            assert (got.seq, got.duplicate) == (2, False), "the refused id was not used up"


@pytest.mark.real_redis
async def test_frozen_server_times_out_instead_of_hanging(redis_server_binary: str) -> None:
    with RedisServer(binary=redis_server_binary) as server:
        async with private_store(server) as store:
            await store.state("general")
            assert server.pid is not None
            os.kill(server.pid, signal.SIGSTOP)
            try:
                started = time.monotonic()
                with pytest.raises(StoreUnavailable):
                    await store.append("general", "alice", "c-1", "one", now=NOW)
                assert time.monotonic() - started < 3
            finally:
                os.kill(server.pid, signal.SIGCONT)
            # The timed-out post may have run once Redis woke up; the retry is safe either way.
            got = await store.append("general", "alice", "c-1", "one", now=NOW)
            assert got.seq == 1


# -- construction ----------------------------------------------------------------------------


async def test_store_needs_decoded_responses() -> None:
    with pytest.raises(ValueError, match="decode_responses"):
        Store(fakeredis.aioredis.FakeRedis())


def test_connect_takes_a_url_or_a_fake_server_not_both() -> None:
    with pytest.raises(ValueError):
        connect("redis://127.0.0.1:1/0", fake_server=fakeredis.FakeServer())


async def test_log_key_follows_the_documented_layout(redis_backend: RedisFactory) -> None:
    store = Store(redis_backend())
    await store.append("general", "alice", "c-1", "hi", now=NOW)
    keys = set(await redis_backend().keys("*"))
    assert keys == {
        "labkit:ch:{general}:head",
        log_key("general"),
        "labkit:ch:{general}:epoch",
        "labkit:ch:{general}:ts",
        "labkit:idem:{alice}:{c-1}",
    }
