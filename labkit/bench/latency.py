"""latency: post → receive delay, 1,000 connections over 2 gateway processes and a real Redis.

Workload: the harness holds ``conns`` connections split evenly over two server processes, all
members of ``#bench``. The parent posts at a steady rate, open loop (on schedule, whatever the
replies), from a few poster connections spread over both processes (labkit limits each user to
50 frames a second, so each poster stays at 20 or fewer). A text starts with the time it was
sent; the harness records, for every delivery, receive time minus send time (one machine, one
clock). Then the offered rate is raised step by step until the system saturates (p99 above 1 s,
or fewer than 99% of deliveries made).

- **labkit**: post → gateway → message server (sequence and store in Redis, publish) → both
  gateways → fanout.
- **socketio** (peer): a ``post`` event → ``emit`` to the room through the Redis manager → both
  servers → their clients.
- **node-ws** (peer): a frame → ``PUBLISH`` on Redis → both processes → ``ws`` sends.

Target: labkit's p99 < 50 ms at 20 posts/s into the 1,000-member channel.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from labkit.bench.context import Context, Skip
from labkit.bench.procs import Child, start_harness
from labkit.bench.profiles import summarise
from labkit.bench.rigs import Rig, labkit_rig
from labkit.bench.schema import Result
from labkit.bench.workload import CHANNEL, Sentinel, paced, text, user_names
from labkit.core import protocol as p

NAME = "latency"
STEADY_RATE = 20.0
PER_POSTER = 20.0
SATURATED_P99_MS = 1000.0


@dataclass
class Setup:
    rig: Rig
    post: Callable[[int], Awaitable[None]]
    closers: list[Callable[[], Awaitable[None]]]


def _posters_needed(max_rate: float) -> int:
    return max(2, math.ceil(max_rate / PER_POSTER))


@contextlib.asynccontextmanager
async def open_system(
    ctx: Context, system: str, conns: int, max_rate: float, *, profile: bool = False
) -> AsyncIterator[Setup]:
    tag = f"latency-{system}" + ("-profile" if profile else "")
    posters = user_names(_posters_needed(max_rate), "p")
    closers: list[Callable[[], Awaitable[None]]] = []
    if system == "labkit":
        async with labkit_rig(
            ctx, tag, clients=conns, gateways=2, extra_users=posters, profile=profile
        ) as rig:
            socks = []
            for k, user in enumerate(posters):
                sentinel = await Sentinel().open(rig.urls[k % 2], rig.extra_tokens[user])
                socks.append(sentinel)
                closers.append(sentinel.close)

            async def post(i: int) -> None:
                frame = {
                    "type": "post",
                    "id": f"l{i}",
                    "channel": CHANNEL,
                    "text": text(i, stamp=time.time()),
                }
                await socks[i % len(socks)].send(json.dumps(frame))

            try:
                yield Setup(rig, post, closers)
            finally:
                for close in closers:
                    await close()
    elif system == "node-ws":
        from labkit.bench.peers.node import node_rig
        from labkit.bench.rigs import private_redis

        with private_redis() as redis:
            async with node_rig(ctx, tag, processes=2, redis_url=redis.url) as rig:
                socks = []
                for k in range(len(posters)):
                    sentinel = await Sentinel().open(rig.urls[k % 2])
                    socks.append(sentinel)
                    closers.append(sentinel.close)

                async def relay(i: int) -> None:
                    now = time.time()
                    frame = p.encode(p.Message(CHANNEL, i + 1, "poster", text(i, stamp=now), now))
                    await socks[i % len(socks)].send(frame)

                try:
                    yield Setup(rig, relay, closers)
                finally:
                    for close in closers:
                        await close()
    elif system == "socketio":
        from labkit.bench.peers.socketio import SocketIOSentinel, socketio_rig

        async with socketio_rig(ctx, tag, processes=2) as rig:
            sios = []
            for k in range(len(posters)):
                sio = await SocketIOSentinel().open(rig.urls[k % 2])
                sios.append(sio)
                closers.append(sio.close)

            async def emit(i: int) -> None:
                now = time.time()
                data = {
                    "type": "message",
                    "channel": CHANNEL,
                    "seq": i + 1,
                    "user": "poster",
                    "text": text(i, stamp=now),
                    "ts": now,
                }
                await sios[i % len(sios)].emit("post", data)

            try:
                yield Setup(rig, emit, closers)
            finally:
                for close in closers:
                    await close()
    else:
        raise ValueError(f"unknown system {system!r}")


async def _point(
    ctx: Context,
    setup: Setup,
    harness: Child,
    conns: int,
    rate: float,
    duration_s: float,
    first: int,
    label: str,
) -> dict[str, Any]:
    await harness.request("reset", "reset", 10)
    rig = setup.rig
    cpu0, client0 = rig.cpu_s(), harness.cpu_s()
    redis_cpu0 = _redis_cpu(rig)
    with ctx.progress(f"{label} {rate:g}/s", duration_s) as bar:
        start = time.monotonic()
        posts = await paced(
            setup.post,
            rate,
            duration_s,
            first=first,
            progress=lambda i: bar.update(time.monotonic() - start),
        )
        report = await _drain(harness, posts * conns, max(5.0, duration_s))
        bar.update(duration_s)
    cpu_s = rig.cpu_s() - cpu0
    client_cpu_s = harness.cpu_s() - client0
    total = report["total"]
    lat = report["latency"]
    span = max(report["last_rx"] - report["first_rx"], 1e-9)
    return {
        "offered_posts_per_s": rate,
        "posts": posts,
        "deliveries": total,
        "expected": posts * conns,
        "delivered_fraction": round(total / max(posts * conns, 1), 4),
        "deliveries_per_s": round(total / span, 1),
        "p50_ms": round(lat.get("p50_ms", math.inf), 2),
        "p95_ms": round(lat.get("p95_ms", math.inf), 2),
        "p99_ms": round(lat.get("p99_ms", math.inf), 2),
        "max_ms": round(lat.get("max_ms", math.inf), 2),
        "server_cpu_s": round(cpu_s, 3),
        "cpu_s_per_1k": round(cpu_s / max(total / 1000, 1e-9), 5),
        "redis_cpu_s": _redis_cpu_delta(rig, redis_cpu0),
        "client_cpu_s": round(client_cpu_s, 3),
        "closed": report["closed"],
        "gaps": report["gaps"],
        "dups": report["dups"],
        "errors": report["errors"],
        "latency": lat,
    }


async def _drain(harness: Child, expected: int, wait_s: float) -> dict[str, Any]:
    """Wait for every delivery, then for stragglers while they still trickle in (a saturated
    system's backlog must not spill into the next measurement)."""
    report = await harness.request("wait", "report", wait_s + 30, total=expected, timeout=wait_s)
    deadline = time.monotonic() + 120
    while report["total"] < expected and time.monotonic() < deadline:
        seen = report["total"]
        report = await harness.request("wait", "report", 40, total=expected, timeout=3.0)
        if report["total"] == seen:
            break  # nothing arrived for 3 s: the rest is lost
    return report


def _redis_cpu(rig: Rig) -> float | None:
    import psutil

    if rig.redis is None or rig.redis.pid is None:
        return None
    times = psutil.Process(rig.redis.pid).cpu_times()
    return float(times.user + times.system)


def _redis_cpu_delta(rig: Rig, before: float | None) -> float | None:
    after = _redis_cpu(rig)
    return None if before is None or after is None else round(after - before, 3)


def _saturated(point: dict[str, Any]) -> bool:
    return bool(point["p99_ms"] > SATURATED_P99_MS or point["delivered_fraction"] < 0.99)


async def measure(
    ctx: Context,
    setup: Setup,
    label: str,
    *,
    conns: int,
    steady_s: float,
    rates: list[float],
    point_s: float,
) -> dict[str, Any]:
    spec = {
        "protocol": setup.rig.protocol,
        "urls": setup.rig.urls,
        "count": conns,
        "tokens": setup.rig.tokens,
        "parse": True,
        "ordered": setup.rig.system == "labkit",
        "ping_s": 5.0,  # heartbeats, as every client sends them
    }
    harness = await start_harness(ctx.logs, f"{label}-clients", spec)
    try:
        if harness.ready["connected"] < conns:
            raise RuntimeError(f"only {harness.ready['connected']} of {conns} clients connected")
        await paced(setup.post, 10.0, 1.0)  # warm-up: connections, caches, subscriptions
        await harness.request("wait", "report", 30, total=10 * conns, timeout=10)
        first = 10
        steady = await _point(ctx, setup, harness, conns, STEADY_RATE, steady_s, first, label)
        first += steady["posts"]
        curve = []
        for rate in rates:
            point = await _point(ctx, setup, harness, conns, rate, point_s, first, label)
            first += point["posts"]
            point.pop("latency")
            curve.append(point)
            if _saturated(point):
                break
    finally:
        await harness.stop()
    saturated = next((c["offered_posts_per_s"] for c in curve if _saturated(c)), None)
    sustained = [c["offered_posts_per_s"] for c in curve if not _saturated(c)]
    return {
        "status": "ok",
        "p50_ms": steady["p50_ms"],
        "p95_ms": steady["p95_ms"],
        "p99_ms": steady["p99_ms"],
        "max_ms": steady["max_ms"],
        "deliveries_per_s": steady["deliveries_per_s"],
        "cpu_s_per_1k": steady["cpu_s_per_1k"],
        "delivered_fraction": steady["delivered_fraction"],
        "max_sustained_posts_per_s": max(sustained, default=None),
        "saturated_at_posts_per_s": saturated,
        "steady": steady,
        "curve": curve,
        "server_processes": len(setup.rig.servers),
    }


async def run(ctx: Context, result: Result) -> None:
    conns = ctx.size(1000, 20)
    steady_s = 15.0 if not ctx.quick else 1.0
    point_s = 5.0 if not ctx.quick else 0.5
    rates = [5.0, 10.0, 20.0, 40.0, 60.0, 80.0, 100.0, 130.0, 160.0, 200.0]
    if ctx.quick:
        rates = [5.0]
    result.params = {
        "connections": conns,
        "server_processes": 2,
        "steady_posts_per_s": STEADY_RATE,
        "steady_s": steady_s,
        "curve_posts_per_s": rates,
        "curve_point_s": point_s,
        "saturated_when": f"p99 > {SATURATED_P99_MS:g} ms or < 99% delivered",
        "text_bytes": 100,
        "posters": _posters_needed(max(rates)),
    }
    systems = ["labkit"]
    if ctx.peers and not ctx.quick:
        systems += ["socketio", "node-ws"]
    for system in systems:
        try:
            async with open_system(ctx, system, conns, max(rates)) as setup:
                result.systems[system] = await measure(
                    ctx,
                    setup,
                    f"latency-{system}",
                    conns=conns,
                    steady_s=steady_s,
                    rates=rates,
                    point_s=point_s,
                )
        except Skip as exc:
            result.systems[system] = {"status": "skipped", "reason": str(exc)}
            result.notes.append(f"{system} skipped: {exc}")
    if ctx.profile and not ctx.quick:
        async with open_system(ctx, "labkit", conns, max(rates), profile=True) as setup:
            await measure(
                ctx,
                setup,
                "latency-labkit-profile",
                conns=conns,
                steady_s=steady_s,
                rates=[],
                point_s=point_s,
            )
        result.profile["labkit gateway 1"] = summarise(ctx.logs / "latency-labkit-profile-gw1.prof")
    labkit = result.systems["labkit"]
    result.headline = {
        "metric": "p99_ms",
        "unit": "ms p99",
        "value": labkit["p99_ms"],
        "baseline": None,
        "ratio": None,
        "p50_ms": labkit["p50_ms"],
        "p95_ms": labkit["p95_ms"],
        "max_ms": labkit["max_ms"],
        "max_sustained_posts_per_s": labkit["max_sustained_posts_per_s"],
    }
    result.set_target(
        f"p99 < 50 ms at {STEADY_RATE:g} posts/s, {conns} members", labkit["p99_ms"], "<", 50.0
    )
