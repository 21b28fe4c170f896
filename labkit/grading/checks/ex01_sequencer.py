"""Checks for ex01_sequencer: seq numbers in memory, then atomically over Redis.

The Redis half runs on fakeredis with clients whose connections the grader controls:

- *jitter*: before each command the connection yields to the event loop a random (seeded)
  number of times, so concurrent callers interleave between any two commands, as they would
  on a network;
- *faults*: a connection can drop at its k-th command, either before the command reaches Redis
  or after Redis ran it (the reply is lost). That is a message server crashing between two
  steps, or a retry after a timeout: exactly what atomicity and idempotency are for.

Clients are built without redis-py's automatic retries, so a fault reaches the learner's code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import fakeredis
import redis.exceptions
from fakeredis.aioredis import FakeAsyncRedisConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from labkit.core.protocol import Message, encode
from labkit.grading.framework import (
    CheckFunc,
    CheckList,
    Failure,
    expect,
    need,
    run_async,
    show,
)
from labkit.server.redis.store import head_key, log_key

checks = CheckList()

ASYNC_LIMIT_S = 8.0
CONCURRENT_LIMIT_S = 30.0
"""Optimistic WATCH/MULTI is correct but retries a lot under 200 concurrent writers: allow it."""


# --------------------------------------------------------------------------- the memory half


def _sequencer(module: ModuleType) -> Any:
    return need(module, "Sequencer")()


@checks.add("in memory: a channel's seqs are 1, 2, 3, … and head is the last one")
def check_memory_counts(module: ModuleType, rng: random.Random) -> None:
    s = _sequencer(module)
    got = [s.next("general") for _ in range(3)]
    expect(got == [1, 2, 3], "next('general') three times to give [1, 2, 3]", show(got))
    expect(s.head("general") == 3, "head('general') to be 3", show(s.head("general")))
    expect(
        s.head("general") == 3,
        "head() to only look: a second head('general') is still 3",
        show(s.head("general")),
    )


@checks.add("in memory: channels are numbered independently; an unknown channel's head is 0")
def check_memory_channels(module: ModuleType, rng: random.Random) -> None:
    s = _sequencer(module)
    expect(s.head("nowhere") == 0, "head('nowhere') to be 0", show(s.head("nowhere")))
    s.next("general")
    s.next("general")
    got = s.next("random")
    expect(got == 1, "the first next('random') to be 1, whatever 'general' did", show(got))
    expect(s.head("general") == 2, "head('general') to be 2", show(s.head("general")))
    expect(s.head("nowhere") == 0, "head('nowhere') to stay 0", show(s.head("nowhere")))


@checks.add("in memory: a random interleaving of channels stays gap-free", randomized=True)
def check_memory_random(module: ModuleType, rng: random.Random) -> None:
    s = _sequencer(module)
    channels = [f"ch-{i}" for i in range(1, 6)]
    model = dict.fromkeys(channels, 0)
    for i in range(500):
        channel = rng.choice(channels)
        if rng.random() < 0.2:
            got = s.head(channel)
            expect(
                got == model[channel],
                f"call #{i + 1}: head({channel!r}) to be {model[channel]}",
                show(got),
            )
            continue
        model[channel] += 1
        got = s.next(channel)
        expect(
            got == model[channel],
            f"call #{i + 1}: next({channel!r}) to be {model[channel]}",
            show(got),
        )


# --------------------------------------------------------------------------- the Redis half


@dataclass
class Plan:
    """What the grader's connections do: jitter, and at most one fault."""

    rng: random.Random
    fail_at: int | None = None
    when: str = "before"
    commands: int = 0
    fired: bool = False


class GradingConnection(FakeAsyncRedisConnection):
    plan: Plan
    _handshaking = False

    async def on_connect_check_health(self, check_health: bool = True) -> None:
        # The handshake (CLIENT SETINFO, …) is not the learner's: no jitter, no fault, no count.
        self._handshaking = True
        try:
            await super().on_connect_check_health(check_health=check_health)
        finally:
            self._handshaking = False

    async def on_connect(self) -> None:
        self._handshaking = True
        try:
            await super().on_connect()
        finally:
            self._handshaking = False

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        plan = type(self).plan
        if self._handshaking:
            await super().send_packed_command(command, check_health)
            return
        for _ in range(plan.rng.randrange(4)):
            await asyncio.sleep(0)
        plan.commands += 1
        fault = not plan.fired and plan.fail_at == plan.commands
        if fault and plan.when == "before":
            plan.fired = True
            await self.disconnect(nowait=True)
            raise redis.exceptions.ConnectionError(
                "injected fault: the connection dropped before this command reached Redis"
            )
        await super().send_packed_command(command, check_health)
        if fault:
            plan.fired = True
            await self.disconnect(nowait=True)
            raise redis.exceptions.ConnectionError(
                "injected fault: the connection dropped after Redis ran this command"
            )


def client(server: fakeredis.FakeServer, plan: Plan) -> Any:
    """A redis.asyncio client (decode_responses=True) on ``server``, driven by ``plan``."""
    conn_class = type("GradingConnection", (GradingConnection,), {"plan": plan})
    return fakeredis.aioredis.FakeRedis(
        server=server,
        decode_responses=True,
        connection_class=conn_class,
        retry=Retry(NoBackoff(), 0),
    )


async def _append(
    module: ModuleType, r: Any, channel: str, user: str, post_id: str, text: str, now: float
) -> tuple[int, bool, str]:
    func = need(module, "append_atomic")
    got = await func(r, channel, user, post_id, text, now)
    try:
        return int(got.seq), bool(got.duplicate), str(got.raw)
    except AttributeError:
        raise Failure(
            "append_atomic to return an Appended (seq, ts, raw, duplicate)",
            f"it returned {show(got)}",
        ) from None


async def _log(r: Any, channel: str) -> list[tuple[int, str]]:
    entries = await r.zrange(log_key(channel), 0, -1, withscores=True)
    return [(int(score), member) for member, score in entries]


async def _head(r: Any, channel: str) -> int | None:
    value = await r.get(head_key(channel))
    return None if value is None else int(value)


def _frame_of(raw: str) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _expect_frame(
    raw: str, channel: str, seq: int, user: str, text: str, now: float, where: str
) -> None:
    want = json.loads(encode(Message(channel, seq, user, text, now)))
    expect(
        _frame_of(raw) == want,
        f"{where} to be the message frame {show(encode(Message(channel, seq, user, text, now)))}",
        show(raw),
    )


async def _expect_log(
    r: Any, channel: str, posts: dict[int, tuple[str, str, float]], doing: str
) -> None:
    """The log of ``channel`` holds exactly ``posts`` (seq -> user, text, now), head agrees."""
    log = await _log(r, channel)
    scores = [s for s, _ in log]
    expect(
        sorted(scores) == sorted(posts),
        f"after {doing}, the log {log_key(channel)!r} to hold seqs"
        f" {show(sorted(posts))}, each once",
        f"it holds {show(sorted(scores))}"
        + (
            f" (seq {next(s for s, n in Counter(scores).items() if n > 1)} twice)"
            if len(set(scores)) != len(scores)
            else ""
        ),
    )
    for seq, raw in log:
        user, text, now = posts[seq]
        _expect_frame(raw, channel, seq, user, text, now, f"the log entry with score {seq}")
    head = await _head(r, channel)
    want_head = max(posts, default=0)
    expect(
        (head or 0) == want_head,
        f"after {doing}, {head_key(channel)!r} to be {want_head}",
        show(head),
    )


AsyncCheck = Callable[[ModuleType, random.Random], Awaitable[None]]


def _redis_check(limit_s: float = ASYNC_LIMIT_S) -> Callable[[AsyncCheck], CheckFunc]:
    """Run an async check on its own event loop, bounded by ``limit_s``."""

    def wrap(func: AsyncCheck) -> CheckFunc:
        def run(module: ModuleType, rng: random.Random) -> None:
            need(module, "append_atomic")
            run_async(lambda: func(module, rng), limit_s)

        run.__name__ = func.__name__
        return run

    return wrap


@checks.add("over Redis: posts get 1, 2, 3, … per channel, stored in the log under their seq")
@_redis_check()
async def check_redis_sequential(module: ModuleType, rng: random.Random) -> None:
    server = fakeredis.FakeServer()
    r = client(server, Plan(rng))
    posts: dict[str, dict[int, tuple[str, str, float]]] = {"general": {}, "random": {}}
    for i, (channel, user) in enumerate(
        [
            ("general", "alice"),
            ("general", "bob"),
            ("random", "alice"),
            ("general", "carol"),
            ("random", "bob"),
        ]
    ):
        text = f"hello {i} ünïcode ✓"
        now = 1764331200.5 + i
        want = len(posts[channel]) + 1
        seq, duplicate, raw = await _append(module, r, channel, user, f"p-{i}", text, now)
        expect(
            seq == want and not duplicate,
            f"post #{i + 1} ({user} in {channel!r}) to get seq {want}, not a duplicate",
            f"seq {seq}, duplicate={duplicate}",
        )
        _expect_frame(raw, channel, seq, user, text, now, "the returned raw")
        posts[channel][seq] = (user, text, now)
    for channel, stored in posts.items():
        await _expect_log(r, channel, stored, "five posts in two channels")
    await r.aclose()


@checks.add("over Redis: a retried post id returns the same seq and stores nothing new")
@_redis_check()
async def check_redis_idempotent(module: ModuleType, rng: random.Random) -> None:
    server = fakeredis.FakeServer()
    r = client(server, Plan(rng))
    first = await _append(module, r, "general", "alice", "c-17", "hi", 100.0)
    again = await _append(module, r, "general", "alice", "c-17", "hi", 105.0)
    expect(
        again[0] == first[0] and again[1] and _frame_of(again[2]) == _frame_of(first[2]),
        f"retrying alice's post 'c-17' to return seq {first[0]} again, duplicate=True and"
        " the same frame",
        f"seq {again[0]}, duplicate={again[1]}, raw {show(again[2])}",
    )
    other = await _append(module, r, "general", "bob", "c-17", "hi", 106.0)
    expect(
        other[0] == 2 and not other[1],
        "bob's post with the same id 'c-17' to be a new post, seq 2 (ids are per user)",
        f"seq {other[0]}, duplicate={other[1]}",
    )
    await _expect_log(
        r,
        "general",
        {1: ("alice", "hi", 100.0), 2: ("bob", "hi", 106.0)},
        "a post, its retry, and another user's post with the same id",
    )
    await r.aclose()


@checks.add(
    "over Redis: 200 concurrent posts from 4 clients get seqs 1..200, no gap, no duplicate",
    randomized=True,
    time_limit_s=CONCURRENT_LIMIT_S + 1,
)
@_redis_check(CONCURRENT_LIMIT_S)
async def check_redis_concurrent(module: ModuleType, rng: random.Random) -> None:
    server = fakeredis.FakeServer()
    plan = Plan(rng)
    clients = [client(server, plan) for _ in range(4)]
    calls = [
        (clients[i % 4], f"user-{i % 7}", f"p-{i}", f"message {i}", 1000.0 + i) for i in range(200)
    ]
    rng.shuffle(calls)
    results = await asyncio.gather(
        *(_append(module, r, "general", user, pid, text, now) for r, user, pid, text, now in calls)
    )
    seqs = sorted(seq for seq, _, _ in results)
    counts = Counter(seqs)
    expect(
        seqs == list(range(1, 201)),
        "200 concurrent posts to get the seqs 1..200, one each",
        f"{len(counts)} distinct seqs"
        + (
            f"; seq {max(counts, key=lambda s: counts[s])} was given"
            f" {max(counts.values())} times (read-then-write of the head is not atomic)"
            if max(counts.values()) > 1
            else ""
        )
        + (
            f"; missing {show(sorted(set(range(1, 201)) - set(seqs))[:5])}"
            if set(seqs) != set(range(1, 201))
            else ""
        ),
    )
    posts = {
        seq: (user, text, now)
        for (seq, _, _), (_, user, _, text, now) in zip(results, calls, strict=True)
    }
    await _expect_log(clients[0], "general", posts, "200 concurrent posts")
    for r in clients:
        await r.aclose()


@checks.add(
    "over Redis: concurrent retries of one post id store it once, under one seq",
    randomized=True,
    time_limit_s=CONCURRENT_LIMIT_S + 1,
)
@_redis_check(CONCURRENT_LIMIT_S)
async def check_redis_concurrent_retries(module: ModuleType, rng: random.Random) -> None:
    server = fakeredis.FakeServer()
    plan = Plan(rng)
    clients = [client(server, plan) for _ in range(3)]
    calls = [
        (clients[(i + k) % 3], f"user-{i % 5}", f"p-{i}", f"text {i}")
        for i in range(60)
        for k in range(3)
    ]
    rng.shuffle(calls)
    results = await asyncio.gather(
        *(_append(module, r, "general", user, pid, text, 2000.0) for r, user, pid, text in calls)
    )
    by_id: dict[str, set[int]] = {}
    fresh: Counter[str] = Counter()
    for (seq, duplicate, _), (_, user, pid, _) in zip(results, calls, strict=True):
        by_id.setdefault(f"{user}/{pid}", set()).add(seq)
        fresh[f"{user}/{pid}"] += not duplicate
    split = {k: v for k, v in by_id.items() if len(v) > 1}
    expect(
        not split,
        "the three racing calls of each post id to return one and the same seq",
        f"{len(split)} post ids got several seqs, e.g. {next(iter(split), '')}:"
        f" {sorted(next(iter(split.values()), set()))} (is the post id checked and recorded"
        " in the same atomic step as the increment?)"
        if split
        else "",
    )
    twice = [k for k, n in fresh.items() if n != 1]
    expect(
        not twice,
        "exactly one of the three calls of each post id to say duplicate=False",
        (
            f"{len(twice)} post ids, e.g. {twice[0]}: {fresh[twice[0]]} calls said they stored it"
            if twice
            else ""
        ),
    )
    posts = {
        seq: (user, text, 2000.0)
        for (seq, _, _), (_, user, _, text) in zip(results, calls, strict=True)
    }
    await _expect_log(clients[0], "general", posts, "60 posts sent 3 times each, concurrently")
    for r in clients:
        await r.aclose()


@checks.add("over Redis: a connection lost mid-post, then a retry, leaves no gap and no duplicate")
@_redis_check()
async def check_redis_crash_safe(module: ModuleType, rng: random.Random) -> None:
    for when in ("before", "after"):
        for k in range(1, 7):
            server = fakeredis.FakeServer()
            plan = Plan(rng, fail_at=k, when=when)
            faulty = client(server, plan)
            healthy = client(server, Plan(rng))
            situation = f"the connection dropped {when} Redis ran command #{k} of the first attempt"
            # The message server sees the failure (or not); the client will retry either way.
            with contextlib.suppress(redis.exceptions.RedisError, ConnectionError, OSError):
                await _append(module, faulty, "general", "alice", "c-1", "first!", 100.0)
            if not plan.fired:
                # The first attempt used fewer than k commands and succeeded: every later k
                # is the same story, and a plain retry is what redis_idempotent checks.
                await faulty.aclose()
                await healthy.aclose()
                break
            seq, _, _ = await _append(module, healthy, "general", "alice", "c-1", "first!", 101.0)
            log = await _log(healthy, "general")
            scores = [s for s, _ in log]
            expect(
                seq == 1 and scores == [1],
                f"{situation}; the retry to get seq 1 and the log to hold just seq 1",
                f"the retry got seq {seq} and the log holds {show(scores)}"
                + (
                    ": the post is stored twice"
                    if len(scores) > 1
                    else ": the failed attempt burned a seq (a gap every reader waits for)"
                    if seq > 1
                    else ""
                ),
            )
            seq2, _, _ = await _append(module, healthy, "general", "bob", "c-2", "second", 102.0)
            expect(seq2 == 2, f"{situation}; the next post to get seq 2", f"seq {seq2}")
            await _expect_log(
                healthy,
                "general",
                {1: ("alice", "first!", _stored_now(log)), 2: ("bob", "second", 102.0)},
                f"a fault ({situation}) and two posts",
            )
            await faulty.aclose()
            await healthy.aclose()


def _stored_now(log: list[tuple[int, str]]) -> float:
    frame = _frame_of(log[0][1]) if log else None
    ts = frame.get("ts") if frame else None
    return float(ts) if isinstance(ts, int | float) else 100.0


EXERCISE = checks.exercise(
    "ex01_sequencer",
    "per-channel sequencer: in memory, then atomic and idempotent over Redis",
)
