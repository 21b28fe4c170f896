"""Server entry points the benchmarks spawn, each in its own process.

``python -m labkit.bench.servers gateway --redis URL --secret S [--port P] [--profile FILE]``
    One labkit gateway (exactly what ``labkit gateway`` runs, built by
    :func:`labkit.server.cluster.build_gateway`), which also answers ``stats`` on stdin with its
    counters and the store's read count, and writes a cProfile file at exit when asked.

``python -m labkit.bench.servers bare [--port P]``
    The baseline: a bare websockets server with the same settings (no compression, same
    backlog). Every text frame it receives is sent to every open connection with the library's
    own ``broadcast()``, pre-encoded once; ``{"type":"ping"}`` is answered with
    ``{"type":"pong"}``, as a gateway does.

Both print ``{"event": "ready", "port": P, ...}`` once listening and stop at ``quit`` or end
of stdin (see :mod:`labkit.bench.control`).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from labkit.bench.control import commands, emit, raise_nofile

PING = '{"type":"ping"}'
PONG = '{"type":"pong"}'
BACKLOG = 4096


_profiler: cProfile.Profile | None = None
_profile_path: str | None = None


def _dump_profile() -> None:
    """Write the profile now: what comes after ``quit`` (closing thousands of connections) is
    teardown, not the workload, and may be cut short by the parent."""
    global _profiler
    if _profiler is not None and _profile_path is not None:
        _profiler.disable()
        _profiler.dump_stats(_profile_path)
        _profiler = None


async def _serve_commands(stats: Any) -> None:
    async for command in commands():
        cmd = command.get("cmd")
        if cmd == "quit":
            _dump_profile()
            return
        if cmd == "gc":
            gc.collect()
            emit("gc")
        elif cmd == "stats":
            emit("stats", **stats())
        else:
            emit("error", message=f"unknown command {cmd!r}")


async def run_gateway(args: argparse.Namespace) -> int:
    from labkit.server.cluster import build_gateway
    from labkit.server.gateway import GatewayConfig
    from labkit.server.redis.store import connect

    def make_client() -> aioredis.Redis:
        return connect(args.redis)

    config = GatewayConfig(
        name=args.name,
        port=args.port,
        heartbeat_s=args.heartbeat_s,
        backlog=BACKLOG,
    )
    gateway = build_gateway(config, make_client, args.secret)
    await gateway.start()
    nofile = raise_nofile()
    emit("ready", port=gateway.port, pid=os.getpid(), nofile=nofile)

    def stats() -> dict[str, Any]:
        return {
            **gateway.stats,
            "store_reads": gateway.store.reads,
            "connections": len(gateway.conns),
            "bus_received": gateway.bus.received,
            "posts": gateway.messages.posts,
        }

    await _serve_commands(stats)
    await gateway.crash()
    return 0


async def run_bare(args: argparse.Namespace) -> int:
    from websockets.asyncio.server import ServerConnection, broadcast, serve

    conns: set[ServerConnection] = set()
    counts = {"received": 0, "deliveries": 0, "pongs": 0}

    async def handler(ws: ServerConnection) -> None:
        conns.add(ws)
        try:
            async for message in ws:
                if message == PING:
                    counts["pongs"] += 1
                    await ws.send(PONG)
                else:
                    counts["received"] += 1
                    counts["deliveries"] += len(conns)
                    broadcast(conns, message)
        except Exception:  # a dropped client is not the server's problem
            pass
        finally:
            conns.discard(ws)

    server = await serve(
        handler,
        "127.0.0.1",
        args.port,
        compression=None,
        max_size=64 * 1024,
        ping_interval=None,
        close_timeout=2,
        backlog=BACKLOG,
    )
    port = next(iter(server.sockets)).getsockname()[1]
    nofile = raise_nofile()
    emit("ready", port=port, pid=os.getpid(), nofile=nofile)
    await _serve_commands(lambda: {**counts, "connections": len(conns)})
    server.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m labkit.bench.servers")
    sub = parser.add_subparsers(dest="kind", required=True)
    gw = sub.add_parser("gateway", help="one labkit gateway")
    gw.add_argument("--name", default="gw-bench")
    gw.add_argument("--port", type=int, default=0)
    gw.add_argument("--redis", required=True)
    gw.add_argument("--secret", required=True)
    gw.add_argument("--heartbeat-s", type=float, default=10.0)
    gw.add_argument("--profile", default=None, help="write cProfile stats here at exit")
    bare = sub.add_parser("bare", help="a bare websockets broadcast server")
    bare.add_argument("--port", type=int, default=0)
    bare.add_argument("--profile", default=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    global _profiler, _profile_path
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    raise_nofile()
    run = run_gateway if args.kind == "gateway" else run_bare
    if args.profile:
        _profiler, _profile_path = cProfile.Profile(), args.profile
        _profiler.enable()
    try:
        return asyncio.run(run(args))
    finally:
        _dump_profile()


if __name__ == "__main__":
    sys.exit(main())
