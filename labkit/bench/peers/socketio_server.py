"""A python-socketio server with its Redis manager, served by its asyncio (aiohttp) server.

``python -m labkit.bench.peers.socketio_server --redis URL [--port P]``

Every connection joins the room ``bench``. A ``post`` event is emitted to the room as a
``message`` event through the Redis manager, so several processes form one system, which is how
Socket.IO scales out. The line protocol of :mod:`labkit.bench.control` applies.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

from labkit.bench.control import commands, emit, raise_nofile

ROOM = "bench"
REDIS_CHANNEL = "labkit-bench-socketio"


async def amain(args: argparse.Namespace) -> int:
    import socketio
    from aiohttp import web

    manager = socketio.AsyncRedisManager(args.redis, channel=REDIS_CHANNEL)
    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        client_manager=manager,
        logger=False,
        engineio_logger=False,
        cors_allowed_origins=[],
        max_http_buffer_size=64 * 1024,
        # Generous heartbeats: a client busy counting a backlog must not be dropped mid-run.
        ping_interval=60,
        ping_timeout=120,
    )
    counts = {"connections": 0, "posts": 0}

    @sio.event  # type: ignore[untyped-decorator]
    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        counts["connections"] += 1
        await sio.enter_room(sid, ROOM)

    @sio.event  # type: ignore[untyped-decorator]
    async def disconnect(sid: str, *reason: Any) -> None:
        counts["connections"] -= 1

    @sio.on("post")  # type: ignore[untyped-decorator]
    async def post(sid: str, data: Any) -> None:
        counts["posts"] += 1
        await sio.emit("message", data, room=ROOM)

    app = web.Application()
    sio.attach(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port, backlog=4096)
    await site.start()
    port = runner.addresses[0][1]
    emit("ready", port=port, pid=os.getpid(), nofile=raise_nofile())
    async for command in commands():
        if command.get("cmd") == "quit":
            break
        if command.get("cmd") == "stats":
            emit("stats", **counts)
    await runner.cleanup()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labkit.bench.peers.socketio_server")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--redis", required=True)
    args = parser.parse_args(argv)
    raise_nofile()
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
