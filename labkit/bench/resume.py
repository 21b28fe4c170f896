"""resume: 1,000 clients, each 100 messages behind, reconnect at once after a gateway crash.

Workload: two gateway processes on a private Redis; ``#bench`` already holds ``history``
messages. The harness connects ``clients`` labkit clients to gateway 1 and they see one live
message. Gateway 1 is killed (SIGKILL: no close frames, nothing tidied); while every client is
disconnected, ``behind`` more messages are posted. Then every client reconnects at once to
gateway 2 with ``last_seen``, and the harness times when each one has every missed message
(checking seqs: no gap, no duplicate).

Store reads are counted two ways: the gateway's own ``Store.reads`` and Redis's INFO
commandstats (ZRANGEBYSCORE calls are history pages). A client ``behind`` messages behind
should cost ``ceil(behind / fill_page)`` history reads, whatever the channel's length.

Target: all gap-filled within 5 s; history reads proportional to messages missed.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from labkit.bench.context import Context
from labkit.bench.procs import start_harness
from labkit.bench.profiles import summarise
from labkit.bench.rigs import labkit_rig
from labkit.bench.schema import Result
from labkit.bench.workload import CHANNEL, command_calls, text
from labkit.core import protocol as p
from labkit.core.stats import percentile
from labkit.server.gateway import GatewayConfig
from labkit.server.message_server import MessageServer
from labkit.server.redis.bus import RedisBus
from labkit.server.redis.directory import Directory
from labkit.server.redis.store import Store, connect

NAME = "resume"
FILL_PAGE = GatewayConfig().fill_page
TARGET_S = 5.0


async def one_run(
    ctx: Context,
    *,
    clients: int,
    behind: int,
    history: int,
    profile: bool = False,
) -> dict[str, Any]:
    tag = f"resume-{behind}" + ("-profile" if profile else "")
    async with labkit_rig(
        ctx,
        tag,
        clients=clients,
        gateways=2,
        extra_users=["poster"],
        profile=profile,
    ) as rig:
        assert rig.client is not None and rig.redis is not None
        url = rig.redis.url
        bus = RedisBus(lambda: connect(url))
        store = Store(rig.client)
        messages = MessageServer(store, Directory(rig.client), bus)
        n = 0

        async def post(count: int, concurrency: int = 1) -> None:
            nonlocal n
            start = n
            n += count
            todo = iter(range(start, start + count))

            async def caller() -> None:
                for i in todo:
                    await messages.post("poster", p.Post(f"r{i}", CHANNEL, text(i)))

            await asyncio.gather(*(caller() for _ in range(concurrency)))

        try:
            await post(history, concurrency=50)
            spec = {
                "protocol": "labkit",
                "urls": [rig.urls[0]],
                "count": clients,
                "tokens": rig.tokens,
                "parse": True,
                "resume": True,
                "ping_s": 5.0,  # heartbeats, as every client sends them
            }
            harness = await start_harness(ctx.logs, f"{tag}-clients", spec)
            try:
                if harness.ready["connected"] < clients:
                    raise RuntimeError(f"only {harness.ready['connected']} of {clients} connected")
                await post(1)
                await harness.request("wait", "report", 30, total=clients, timeout=20)
                await rig.servers[0].kill()  # the crash
                closed = await harness.request("wait_closed", "closed", 30, timeout=20)
                if closed["open"]:
                    raise RuntimeError(f"{closed['open']} clients still open after the crash")
                await post(behind)
                head = (await store.state(CHANNEL)).head
                gw2 = rig.servers[1]
                stats0 = await gw2.request("stats", "stats", 10)
                calls0 = await command_calls(rig.client, "zrangebyscore", "exec", "evalsha")
                await harness.request("reset", "reset", 10)
                started = time.monotonic()
                with ctx.progress(f"resume {clients}x{behind} behind", 1) as bar:
                    report = await harness.request(
                        "go", "report", 120, urls=[rig.urls[1]], head=head, timeout=60
                    )
                    bar.update(1)
                wall_s = time.monotonic() - started
                stats1 = await gw2.request("stats", "stats", 10)
                calls1 = await command_calls(rig.client, "zrangebyscore", "exec", "evalsha")
            finally:
                await harness.stop()
        finally:
            await bus.close()
    caught = report["caught_s"]
    history_reads = calls1["zrangebyscore"] - calls0["zrangebyscore"]
    fills = stats1["fills"] - stats0["fills"]
    return {
        "clients": clients,
        "behind": behind,
        "history_before": history,
        "all_caught": report["caught"] == clients and report["behind_at_end"] == 0,
        "caught": report["caught"],
        "time_all_s": round(max(caught), 3) if caught else None,
        "p50_s": round(percentile(caught, 0.50), 3) if caught else None,
        "p99_s": round(percentile(caught, 0.99), 3) if caught else None,
        "wall_s": round(wall_s, 3),
        "gaps": report["gaps"],
        "dups": report["dups"],
        "deliveries": report["total"],
        "failed_attempts": report["failed_attempts"],
        "history_reads": history_reads,
        "history_reads_per_client": round(history_reads / clients, 3),
        "expected_reads_per_client": math.ceil(behind / FILL_PAGE),
        "store_reads": stats1["store_reads"] - stats0["store_reads"],
        "store_reads_per_client": round(
            (stats1["store_reads"] - stats0["store_reads"]) / clients, 3
        ),
        "messages_filled": fills,
        "filled_per_client": round(fills / clients, 3),
        "caught_s": [round(c, 4) for c in caught],
    }


async def run(ctx: Context, result: Result) -> None:
    clients = ctx.size(1000, 20)
    behinds = [100, 400] if not ctx.quick else [5]
    history = ctx.size(5000, 20)
    result.params = {
        "clients": clients,
        "behind": behinds,
        "history_before": history,
        "fill_page": FILL_PAGE,
        "gateways": 2,
        "crash": "SIGKILL of gateway 1; clients reconnect at once to gateway 2",
    }
    runs = []
    for behind in behinds:
        runs.append(await one_run(ctx, clients=clients, behind=behind, history=history))
    main = runs[0]
    result.systems["labkit"] = {
        "status": "ok",
        **{k: v for k, v in main.items() if k != "caught_s"},
        "runs": runs,
    }
    if ctx.profile and not ctx.quick:
        await one_run(ctx, clients=clients, behind=behinds[0], history=history, profile=True)
        result.profile["labkit gateway 2 (takes the reconnects)"] = summarise(
            ctx.logs / f"resume-{behinds[0]}-profile-gw2.prof"
        )
    proportional = all(
        r["history_reads_per_client"] <= r["expected_reads_per_client"] + 0.05
        and r["filled_per_client"] == r["behind"]
        for r in runs
    )
    result.headline = {
        "metric": "time_all_s",
        "unit": "s to fill all",
        "value": main["time_all_s"] if main["time_all_s"] is not None else math.inf,
        "baseline": None,
        "ratio": None,
        "reads_per_client": main["history_reads_per_client"],
        "proportional_reads": proportional,
    }
    result.set_target(
        f"all {clients} gap-filled < {TARGET_S:g} s; history reads ∝ messages missed",
        main["time_all_s"],
        "<",
        TARGET_S,
    )
    met = result.target["met"]
    result.target["met"] = bool(met) and proportional and all(r["all_caught"] for r in runs)
    if not proportional:
        result.notes.append("history reads were not proportional to the messages missed")
