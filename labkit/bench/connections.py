"""connections: 10,000 concurrent connections on one gateway process.

Workload: the harness (another process: one process cannot hold both ends of 10,000 sockets
under a 20,000 open-files limit) opens ``conns`` connections, 50 handshakes at a time; for
labkit each sends ``hello`` and gets ``welcome``, and every user is a member of ``#bench``.

Figures, from the server process's own accounting (psutil):

- **memory per connection**: (RSS with every connection open, after a settle and a
  ``gc.collect()``) − (RSS before the first one), divided by the connections;
- **heartbeat CPU**: CPU seconds per second while every connection sends ``{"type":"ping"}``
  every 5 s, from the moment it opens (labkit's heartbeat period is 10 s; clients ping at half
  of it) and the server answers each with a pong (labkit also tells shared presence in Redis),
  and per 1,000 heartbeats;
- **idle CPU**: then 10 s of silence (less than the 30 s after which a gateway closes a silent
  connection): what holding the connections costs by itself (labkit's once-a-second tick
  visits every connection).

Baseline: a bare websockets server holding the same connections and answering the same pings.
Target: memory per connection labkit / bare ≤ 1.3.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from labkit.bench.context import Context
from labkit.bench.control import raise_nofile
from labkit.bench.procs import Child, start_harness
from labkit.bench.profiles import summarise
from labkit.bench.rigs import Rig, bare_rig, labkit_rig
from labkit.bench.schema import Result

NAME = "connections"
BASELINE = "websockets-bare"


@contextlib.asynccontextmanager
async def open_system(
    ctx: Context, system: str, conns: int, *, profile: bool = False
) -> AsyncIterator[Rig]:
    tag = f"connections-{system}" + ("-profile" if profile else "")
    if system == "labkit":
        async with labkit_rig(ctx, tag, clients=conns, profile=profile) as rig:
            yield rig
    else:
        async with bare_rig(ctx, tag) as rig:
            yield rig


async def _rss_after_gc(server: Child) -> int:
    await server.request("gc", "gc", 30)
    await asyncio.sleep(0.2)
    return server.rss()


async def measure(
    ctx: Context, rig: Rig, label: str, *, conns: int, window_s: float, ping_s: float
) -> dict[str, Any]:
    server = rig.servers[0]
    rss0 = await _rss_after_gc(server)
    curve: list[tuple[int, int]] = [(0, rss0)]
    spec = {
        "protocol": rig.protocol,
        "urls": rig.urls,
        "count": conns,
        "tokens": rig.tokens,
        "parse": False,
        "connect_concurrency": 50,
        "ping_s": ping_s,
    }
    with ctx.progress(f"{label} connect", conns) as bar:

        def on_progress(event: dict[str, Any]) -> None:
            if event.get("event") == "progress":
                curve.append((int(event["connected"]), server.rss()))
                bar.update(int(event["connected"]))

        harness = await start_harness(
            ctx.logs, f"{label}-clients", spec, ready_timeout=600, on_event=on_progress
        )
        bar.update(conns)
    try:
        connected = int(harness.ready["connected"])
        if connected < conns:
            raise RuntimeError(f"only {connected} of {conns} connections opened")
        await asyncio.sleep(min(3.0, window_s))
        rss1 = await _rss_after_gc(server)
        curve.append((connected, rss1))
        client_rss = harness.rss()

        before = await harness.request("report", "report", 30)
        cpu0 = server.cpu_s()
        with ctx.progress(f"{label} heartbeats", window_s) as bar:
            for step in range(int(window_s * 10)):
                await asyncio.sleep(0.1)
                bar.update(step / 10)
        cpu_s = server.cpu_s() - cpu0
        after = await harness.request("report", "report", 30)
        pings = after["pings"] - before["pings"]
        pongs = after["pongs"] - before["pongs"]

        # Then silence, shorter than labkit's 3 heartbeat periods: what the connections cost
        # when nobody says anything (labkit's once-a-second tick still visits each one).
        await harness.request("ping", "ping", 10, interval=None)
        quiet_s = min(10.0, window_s)
        await asyncio.sleep(min(1.0, quiet_s))
        cpu0 = server.cpu_s()
        await asyncio.sleep(quiet_s)
        idle_cpu_per_s = (server.cpu_s() - cpu0) / quiet_s
        stats = await server.request("stats", "stats", 10)
        final = await harness.request("report", "report", 30)
    finally:
        await harness.stop(timeout=60)
    per_conn = (rss1 - rss0) / connected
    return {
        "status": "ok",
        "connections": connected,
        "kb_per_conn": round(per_conn / 1024, 2),
        "rss_before_mib": round(rss0 / 2**20, 1),
        "rss_after_mib": round(rss1 / 2**20, 1),
        "heartbeat_cpu_per_s": round(cpu_s / window_s, 4),
        "idle_cpu_per_s": round(idle_cpu_per_s, 4),
        "heartbeats_per_s": round(pings / window_s, 1),
        "cpu_ms_per_1k_heartbeats": round(cpu_s / max(pings / 1000, 1e-9) * 1000, 2),
        "heartbeat_only_ms_per_1k": round(
            max(cpu_s - idle_cpu_per_s * window_s, 0.0) / max(pings / 1000, 1e-9) * 1000, 2
        ),
        "pongs_per_ping": round(pongs / max(pings, 1), 3),
        "closed_by_server": final["closed"],
        "client_kb_per_conn": round(client_rss / connected / 1024, 1),
        "connect_s": round(float(harness.ready["connect_s"]), 2),
        "refused_attempts": int(harness.ready.get("failed_attempts", 0)),
        "rss_curve": curve,
        "server_stats": stats,
    }


async def run(ctx: Context, result: Result) -> None:
    conns = ctx.size(10_000, 50)
    window_s = 20.0 if not ctx.quick else 1.0
    ping_s = 5.0 if not ctx.quick else 0.5
    nofile = raise_nofile(conns + 1000)
    result.params = {
        "connections": conns,
        "window_s": window_s,
        "ping_every_s": ping_s,
        "open_files": {k: nofile[k] for k in ("soft", "hard", "ok")},
    }
    if not nofile["ok"]:
        result.notes.append(
            f"open-files limit could not be raised to {conns + 1000}: {nofile['note']}; each "
            "process needs one descriptor per connection"
        )
    else:
        result.notes.append(
            f"open-files limit raised to {nofile['soft']} (hard {nofile['hard']}) in every "
            "bench process; servers and clients run in separate processes"
        )
    for system in ("labkit", BASELINE):
        async with open_system(ctx, system, conns) as rig:
            result.systems[system] = await measure(
                ctx, rig, f"connections-{system}", conns=conns, window_s=window_s, ping_s=ping_s
            )
    if ctx.profile and not ctx.quick:
        async with open_system(ctx, "labkit", conns, profile=True) as rig:
            await measure(
                ctx,
                rig,
                "connections-labkit-profile",
                conns=conns,
                window_s=window_s,
                ping_s=ping_s,
            )
        result.profile["labkit gateway (connect, idle, heartbeats)"] = summarise(
            ctx.logs / "connections-labkit-profile-gw1.prof"
        )
    labkit, base = result.systems["labkit"], result.systems[BASELINE]
    ratio = labkit["kb_per_conn"] / base["kb_per_conn"] if base["kb_per_conn"] > 0 else None
    result.headline = {
        "metric": "kb_per_conn",
        "unit": "KB/conn",
        "value": labkit["kb_per_conn"],
        "baseline": base["kb_per_conn"],
        "ratio": None if ratio is None else round(ratio, 3),
        "heartbeat_cpu_ratio": round(
            labkit["heartbeat_cpu_per_s"] / max(base["heartbeat_cpu_per_s"], 1e-9), 2
        ),
        "idle_cpu_per_s": labkit["idle_cpu_per_s"],
    }
    result.set_target("memory per connection labkit / bare ≤ 1.3", ratio, "<=", 1.3)
