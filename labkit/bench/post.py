"""post: posts per second through the message server (check, sequence and store, publish).

Workload: ``concurrency`` callers share one event loop (as the sessions of a gateway do) and
call :meth:`labkit.server.message_server.MessageServer.post` until ``posts`` posts are acknowledged,
against a private ``redis-server``. Each post is a membership check (SISMEMBER), the sequencing
Lua script (INCR, ZADD, the idempotency key) and a PUBLISH: three round trips.

Baseline: a bare redis-py ``PUBLISH`` loop with the same frame, at the same concurrency, against
the same Redis: one round trip, the floor of any post path that publishes.

Both run in this (the parent) process, alternately, ``repeat`` times; the median run is
reported, with the callers' CPU and Redis's CPU per operation (psutil).
Target: labkit / PUBLISH ≥ 0.7.
"""

from __future__ import annotations

import asyncio
import cProfile
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psutil
import redis.asyncio as aioredis

from labkit.bench.context import Context
from labkit.bench.profiles import summarise
from labkit.bench.rigs import private_redis
from labkit.bench.schema import Result
from labkit.bench.workload import CHANNEL, seed_members, text
from labkit.core import protocol as p
from labkit.core.stats import percentile
from labkit.server.message_server import MessageServer
from labkit.server.redis.bus import RedisBus, channel_topic
from labkit.server.redis.directory import Directory
from labkit.server.redis.store import Store, connect

NAME = "post"
BASELINE = "redis-publish"
CONCURRENCY = 50


async def run_ops(op: Callable[[int], Awaitable[None]], count: int, concurrency: int) -> None:
    numbers = itertools.count()

    async def caller() -> None:
        while (i := next(numbers)) < count:
            await op(i)

    await asyncio.gather(*(caller() for _ in range(concurrency)))


async def timed(
    op: Callable[[int], Awaitable[None]],
    count: int,
    concurrency: int,
    redis_proc: psutil.Process,
) -> dict[str, Any]:
    me = psutil.Process()
    cpu0, rcpu0 = me.cpu_times(), redis_proc.cpu_times()
    start = time.perf_counter()
    await run_ops(op, count, concurrency)
    elapsed = time.perf_counter() - start
    cpu1, rcpu1 = me.cpu_times(), redis_proc.cpu_times()
    cpu = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    rcpu = (rcpu1.user + rcpu1.system) - (rcpu0.user + rcpu0.system)
    return {
        "ops": count,
        "elapsed_s": round(elapsed, 4),
        "per_s": round(count / elapsed, 1),
        "client_cpu_us_per_op": round(cpu / count * 1e6, 2),
        "redis_cpu_us_per_op": round(rcpu / count * 1e6, 2),
        "client_busy": round(cpu / elapsed, 3),
        "redis_busy": round(rcpu / elapsed, 3),
    }


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    best = percentile(sorted(runs, key=lambda r: r["per_s"]), 0.5)
    rates = [r["per_s"] for r in runs]
    return {
        "status": "ok",
        **{k: v for k, v in best.items() if k != "ops"},
        "ops_per_run": best["ops"],
        "rates": rates,
        "spread": round((max(rates) - min(rates)) / best["per_s"], 3),
        "runs": runs,
    }


async def run(ctx: Context, result: Result) -> None:
    count = ctx.size(20_000, 200)
    repeat = 1 if ctx.quick else ctx.repeat
    result.params = {
        "posts_per_run": count,
        "concurrency": CONCURRENCY,
        "runs": repeat,
        "text_bytes": 100,
        "figure": "median run",
    }
    with private_redis() as server:
        url = server.url
        redis_proc = psutil.Process(server.pid)
        client = connect(url)
        await seed_members(client, CHANNEL, ["poster"])
        bus = RedisBus(lambda: connect(url))
        messages = MessageServer(Store(client), Directory(client), bus)
        bare = aioredis.Redis.from_url(url, decode_responses=True)
        frame = p.encode(p.Message(CHANNEL, 1, "poster", text(0), time.time()))
        topic = channel_topic(CHANNEL)
        run_no = itertools.count()

        def labkit_op(prefix: str) -> Callable[[int], Awaitable[None]]:
            async def op(i: int) -> None:
                await messages.post("poster", p.Post(f"{prefix}-{i}", CHANNEL, text(i)))

            return op

        async def publish_op(i: int) -> None:
            await bare.publish(topic, frame)

        try:
            await run_ops(labkit_op("warm"), min(500, count), CONCURRENCY)
            await run_ops(publish_op, min(500, count), CONCURRENCY)
            runs: dict[str, list[dict[str, Any]]] = {"labkit": [], BASELINE: []}
            with ctx.progress("post", 2 * repeat) as bar:
                for _ in range(repeat):
                    runs["labkit"].append(
                        await timed(labkit_op(f"r{next(run_no)}"), count, CONCURRENCY, redis_proc)
                    )
                    bar.advance()
                    runs[BASELINE].append(await timed(publish_op, count, CONCURRENCY, redis_proc))
                    bar.advance()
            for name, system_runs in runs.items():
                result.systems[name] = _median(system_runs)
            if ctx.profile and not ctx.quick:
                profiler = cProfile.Profile()
                profiler.enable()
                await run_ops(labkit_op("profile"), count, CONCURRENCY)
                profiler.disable()
                path = ctx.logs / "post-labkit.prof"
                ctx.logs.mkdir(parents=True, exist_ok=True)
                profiler.dump_stats(str(path))
                result.profile["labkit message server (caller process)"] = summarise(path)
        finally:
            await bus.close()
            await client.aclose()
            await bare.aclose()
    labkit, base = result.systems["labkit"]["per_s"], result.systems[BASELINE]["per_s"]
    ratio = labkit / base if base else None
    result.headline = {
        "metric": "posts_per_s",
        "unit": "posts/s",
        "value": labkit,
        "baseline": base,
        "ratio": None if ratio is None else round(ratio, 3),
        "round_trips_per_post": 3,
    }
    result.set_target("labkit post / bare PUBLISH ≥ 0.7", ratio, ">=", 0.7)
