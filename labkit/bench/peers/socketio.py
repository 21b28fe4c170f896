"""python-socketio as a peer: N server processes around a private Redis, a driver, a sentinel.

The driver emits through a write-only Redis manager, exactly as a Socket.IO application emits
from outside its servers; the posters of the latency benchmark are Socket.IO clients sending
``post`` events to a server, which emits them to the room.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from labkit.bench.context import Context, Skip
from labkit.bench.procs import Child, python_module, stop_all
from labkit.bench.rigs import Rig, private_redis
from labkit.bench.workload import Sentinel

REDIS_CHANNEL = "labkit-bench-socketio"


def require() -> None:
    try:
        import aiohttp  # noqa: F401
        import socketio  # noqa: F401
    except ImportError as exc:
        raise Skip(f"python-socketio is not installed ({exc}); pip install -e '.[bench]'") from exc


@contextlib.asynccontextmanager
async def socketio_rig(ctx: Context, tag: str, *, processes: int = 1) -> AsyncIterator[Rig]:
    require()
    with private_redis() as redis:
        servers: list[Child] = []
        try:
            for i in range(processes):
                argv = python_module(
                    "labkit.bench.peers.socketio_server", "--redis", redis.url, "--port", "0"
                )
                servers.append(await Child.start(f"{tag}-sio{i + 1}", argv, ctx.logs))
            yield Rig(
                system="socketio",
                protocol="socketio",
                servers=servers,
                urls=[f"http://127.0.0.1:{s.ready['port']}" for s in servers],
                redis=redis,
            )
        finally:
            await stop_all(servers)


def emitter(redis_url: str) -> Any:
    """A write-only Redis manager: emits to the room from outside the servers."""
    import socketio

    return socketio.AsyncRedisManager(redis_url, channel=REDIS_CHANNEL, write_only=True)


class SocketIOSentinel(Sentinel):
    """The parent's own Socket.IO client, counting ``message`` events like :class:`Sentinel`."""

    client: Any = None

    async def open(self, url: str, token: str | None = None) -> SocketIOSentinel:
        from labkit.bench.peers.socketio_client import new_client

        self.client = new_client(lambda data: self.on_message(), shared=False)
        await self.client.connect(url, transports=["websocket"], wait_timeout=30)
        return self

    async def send(self, data: str) -> None:
        raise NotImplementedError("a Socket.IO sentinel does not send frames")

    async def emit(self, event: str, data: Any) -> None:
        await self.client.emit(event, data)

    async def close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                await self.client.disconnect()
