"""fanout: deliveries per second from one gateway to 1,000 connections on one channel.

Workload: the harness (another process) holds ``conns`` connections, all members of
``#bench``; the parent sends ``messages`` messages of 100-character texts, at most ``window``
ahead of its own sentinel connection, and the harness counts every ``message`` frame.

- **labkit**: one gateway process on a private Redis. The parent runs the message server
  (sequence, store, publish), so the gateway's work is exactly a gateway's: read the bus, order
  the feed, write the frame once to every live member.
- **websockets-broadcast** (the baseline): a bare websockets server that writes each frame the
  sentinel sends to every connection with ``broadcast()``, pre-encoded once.
- **socketio** (peer): python-socketio with its Redis manager; the parent emits to the room.
- **node-ws** (peer): Node's ``ws`` writing each frame, encoded once, to every client.

Figures: deliveries per second as the clients saw them (deliveries over the span from the first
to the last one received), and the server's own CPU seconds per 1,000 deliveries (psutil).
Target: labkit / baseline ≥ 0.8.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from labkit.bench.context import Context, Skip
from labkit.bench.procs import Child, load_average, start_harness
from labkit.bench.profiles import summarise
from labkit.bench.rigs import Rig, bare_rig, labkit_rig
from labkit.bench.schema import Result
from labkit.bench.workload import CHANNEL, ClientGate, Sentinel, drive, text
from labkit.core import protocol as p
from labkit.core.stats import percentile

NAME = "fanout"
BASELINE = "websockets-broadcast"
WINDOW = 64


@dataclass
class Setup:
    rig: Rig
    sentinel: Sentinel
    send: Callable[[int], Awaitable[None]]


def _frame(i: int) -> str:
    return p.encode(p.Message(CHANNEL, i + 1, "driver", text(i), time.time()))


@contextlib.asynccontextmanager
async def open_system(
    ctx: Context, system: str, conns: int, *, profile: bool = False
) -> AsyncIterator[Setup]:
    tag = f"fanout-{system}" + ("-profile" if profile else "")
    if system == "labkit":
        from labkit.server.message_server import MessageServer
        from labkit.server.redis.bus import RedisBus
        from labkit.server.redis.directory import Directory
        from labkit.server.redis.store import Store, connect

        async with labkit_rig(
            ctx, tag, clients=conns, extra_users=["driver"], profile=profile
        ) as rig:
            assert rig.client is not None and rig.redis is not None
            url = rig.redis.url
            bus = RedisBus(lambda: connect(url))
            server = MessageServer(Store(rig.client), Directory(rig.client), bus)
            sentinel = await Sentinel().open(rig.urls[0], rig.extra_tokens["driver"])

            async def post(i: int) -> None:
                await server.post("driver", p.Post(f"d{i}", CHANNEL, text(i)))

            try:
                yield Setup(rig, sentinel, post)
            finally:
                await sentinel.close()
                await bus.close()
    elif system in (BASELINE, "node-ws"):
        if system == BASELINE:
            opener = bare_rig(ctx, tag)
        else:
            from labkit.bench.peers.node import node_rig

            opener = node_rig(ctx, tag)
        async with opener as rig:
            sentinel = await Sentinel().open(rig.urls[0])

            async def relay(i: int) -> None:
                await sentinel.send(_frame(i))

            try:
                yield Setup(rig, sentinel, relay)
            finally:
                await sentinel.close()
    elif system == "socketio":
        from labkit.bench.peers.socketio import SocketIOSentinel, emitter, socketio_rig

        async with socketio_rig(ctx, tag) as rig:
            assert rig.redis is not None
            manager = emitter(rig.redis.url)
            sio_sentinel = await SocketIOSentinel().open(rig.urls[0])

            async def emit(i: int) -> None:
                data = {
                    "type": "message",
                    "channel": CHANNEL,
                    "seq": i + 1,
                    "user": "driver",
                    "text": text(i),
                    "ts": time.time(),
                }
                await manager.emit("message", data, room=CHANNEL, namespace="/")

            try:
                yield Setup(rig, sio_sentinel, emit)
            finally:
                await sio_sentinel.close()
    else:
        raise ValueError(f"unknown system {system!r}")


class Measured:
    """One system's harness, warmed up, and the runs measured on it so far."""

    def __init__(self, ctx: Context, setup: Setup, label: str, conns: int, messages: int) -> None:
        self.ctx, self.setup, self.label = ctx, setup, label
        self.conns, self.messages = conns, messages
        self.runs: list[dict[str, Any]] = []
        self.harness: Child | None = None
        self.first = 0

    async def start(self, *, profile_clients: bool = False) -> None:
        rig = self.setup.rig
        spec: dict[str, Any] = {
            "protocol": rig.protocol,
            "urls": rig.urls,
            "count": self.conns,
            "tokens": rig.tokens,
            "parse": False,
            "ping_s": 5.0,  # heartbeats, as every client sends them
        }
        if profile_clients:
            spec["profile"] = str(self.ctx.logs / f"{self.label}-clients.prof")
        self.harness = harness = await start_harness(self.ctx.logs, f"{self.label}-clients", spec)
        if harness.ready["connected"] < self.conns:
            raise RuntimeError(
                f"only {harness.ready['connected']} of {self.conns} clients connected"
            )
        warm = min(10, self.messages)
        gate = ClientGate(harness, self.conns)
        await drive(self.setup.send, self.setup.sentinel, warm, window=WINDOW, gate=gate.start(0))
        await harness.request("wait", "report", 60, total=warm * self.conns)
        self.first = warm

    async def run_once(self, title: str) -> None:
        harness, rig, messages = self.harness, self.setup.rig, self.messages
        assert harness is not None
        await harness.request("reset", "reset", 10)
        gate = ClientGate(harness, self.conns)
        cpu0, client0 = rig.cpu_s(), harness.cpu_s()
        with self.ctx.progress(title, messages) as bar:
            await drive(
                self.setup.send,
                self.setup.sentinel,
                messages,
                window=WINDOW,
                first=self.first,
                progress=bar.update,
                gate=gate.start(0),
            )
            report = await harness.request("wait", "report", 120, total=messages * self.conns)
            cpu_s = rig.cpu_s() - cpu0
            client_cpu_s = harness.cpu_s() - client0
            bar.update(messages)
        self.first += messages
        total = report["total"]
        span = max(report["last_rx"] - report["first_rx"], 1e-9)
        self.runs.append(
            {
                "deliveries": total,
                "expected": messages * self.conns,
                "span_s": round(span, 4),
                "deliveries_per_s": round(total / span, 1),
                "server_cpu_s": round(cpu_s, 4),
                "cpu_s_per_1k": round(cpu_s / max(total / 1000, 1e-9), 5),
                "server_busy": round(cpu_s / span, 3),
                "client_cpu_s": round(client_cpu_s, 4),
                "client_busy": round(client_cpu_s / span, 3),
                "closed": report["closed"],
                "per_conn_min": report["per_conn_min"],
                "load": load_average(),
            }
        )

    async def stop(self) -> None:
        if self.harness is not None:
            await self.harness.stop()
            self.harness = None

    async def finish(self) -> dict[str, Any]:
        """Server counters, the harness stopped, and the median run as the figure."""
        rig, runs = self.setup.rig, self.runs
        stats = {}
        for server in rig.servers:
            with contextlib.suppress(Exception):
                stats[server.name] = await server.request("stats", "stats", 10)
        await self.stop()
        rates = [r["deliveries_per_s"] for r in runs]
        best = percentile(sorted(runs, key=lambda r: r["deliveries_per_s"]), 0.5)
        return {
            "status": "ok",
            "deliveries_per_s": best["deliveries_per_s"],
            "cpu_s_per_1k": best["cpu_s_per_1k"],
            "server_cpu_s": best["server_cpu_s"],
            "server_busy": best["server_busy"],
            "client_busy": best["client_busy"],
            "deliveries": best["deliveries"],
            "expected": best["expected"],
            "closed": best["closed"],
            "rates": rates,
            "spread": round((max(rates) - min(rates)) / best["deliveries_per_s"], 3),
            "runs": runs,
            "server_stats": stats,
            "server_processes": len(rig.servers),
        }


async def measure_interleaved(
    ctx: Context, systems: list[str], conns: int, messages: int, repeat: int
) -> dict[str, dict[str, Any]]:
    """Every system up at once, their runs taken in turn (A, B, A, B…), so a change in the
    machine's load during the benchmark touches each of them alike."""
    async with contextlib.AsyncExitStack() as stack:
        measured: dict[str, Measured] = {}
        try:
            for system in systems:
                setup = await stack.enter_async_context(open_system(ctx, system, conns))
                measured[system] = Measured(ctx, setup, f"fanout-{system}", conns, messages)
                await measured[system].start()
            for r in range(repeat):
                for system, m in measured.items():
                    await m.run_once(f"fanout-{system} run {r + 1}/{repeat}")
            return {system: await m.finish() for system, m in measured.items()}
        finally:
            for m in measured.values():
                await m.stop()


async def run(ctx: Context, result: Result) -> None:
    conns = ctx.size(1000, 20)
    messages = ctx.size(300, 20)
    repeat = 1 if ctx.quick else ctx.repeat
    result.params = {
        "connections": conns,
        "messages_per_run": messages,
        "text_bytes": 100,
        "window": WINDOW,
        "runs": repeat,
        "figure": "median run",
        "order": "labkit and the baseline up at once, runs alternated; then each peer",
    }
    result.systems.update(
        await measure_interleaved(ctx, ["labkit", BASELINE], conns, messages, repeat)
    )
    if ctx.peers and not ctx.quick:
        for system in ("socketio", "node-ws"):
            try:
                result.systems.update(
                    await measure_interleaved(ctx, [system], conns, messages, repeat)
                )
            except Skip as exc:
                result.systems[system] = {"status": "skipped", "reason": str(exc)}
                result.notes.append(f"{system} skipped: {exc}")
    if ctx.profile and not ctx.quick:
        async with open_system(ctx, "labkit", conns, profile=True) as setup:
            m = Measured(ctx, setup, "fanout-labkit-profile", conns, messages)
            try:
                await m.start(profile_clients=True)
                await m.run_once("fanout-labkit profile")
            finally:
                await m.stop()
        result.profile["labkit gateway"] = summarise(ctx.logs / "fanout-labkit-profile-gw1.prof")
        result.profile["clients"] = summarise(ctx.logs / "fanout-labkit-profile-clients.prof")
    labkit = result.systems["labkit"]["deliveries_per_s"]
    base = result.systems[BASELINE]["deliveries_per_s"]
    ratio = labkit / base if base else None
    base_cpu = result.systems[BASELINE]["cpu_s_per_1k"]
    result.headline = {
        "metric": "deliveries_per_s",
        "unit": "deliveries/s",
        "value": labkit,
        "baseline": base,
        "ratio": None if ratio is None else round(ratio, 3),
        "cpu_ratio": (
            round(result.systems["labkit"]["cpu_s_per_1k"] / base_cpu, 3) if base_cpu else None
        ),
    }
    result.set_target("labkit / websockets broadcast() ≥ 0.8", ratio, ">=", 0.8)
