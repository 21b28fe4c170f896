"""Systems under test, started in their own processes and torn down afterwards.

:func:`labkit_rig` starts a private ``redis-server`` (never the machine's shared one), seeds
``#bench`` with the harness's users plus the parent's own, and starts N gateway processes.
:func:`bare_rig` starts the websockets baseline server. The peers live in
:mod:`labkit.bench.peers`.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis.asyncio as aioredis

from labkit.bench.context import Context, Skip
from labkit.bench.procs import Child, start_bare, start_gateway, stop_all
from labkit.bench.workload import CHANNEL, seed_members, tokens, user_names
from labkit.server.redis.store import connect
from labkit.server.redis_server import RedisServer, RedisServerError, find_redis_server


@dataclass
class Rig:
    """A running system: its server processes, the URLs clients use, and how to speak to it."""

    system: str
    protocol: str
    servers: list[Child]
    urls: list[str]
    tokens: list[str] = field(default_factory=list)
    secret: str = ""
    redis: RedisServer | None = None
    client: aioredis.Redis | None = None
    extra_tokens: dict[str, str] = field(default_factory=dict)
    profiles: dict[str, Path] = field(default_factory=dict)

    def cpu_s(self) -> float:
        return sum(s.cpu_s() for s in self.servers)


@contextlib.contextmanager
def private_redis() -> Iterator[RedisServer]:
    """A private ``redis-server`` on a free port (Skip when the binary is missing)."""
    if find_redis_server() is None:
        raise Skip("redis-server is not installed (Debian: apt-get install redis-server)")
    server = RedisServer()
    try:
        server.start()
    except RedisServerError as exc:
        raise Skip(f"could not start a private redis-server: {exc}") from exc
    try:
        yield server
    finally:
        server.close()


@contextlib.asynccontextmanager
async def labkit_rig(
    ctx: Context,
    tag: str,
    *,
    clients: int,
    gateways: int = 1,
    extra_users: Sequence[str] = (),
    profile: bool = False,
) -> AsyncIterator[Rig]:
    secret = secrets.token_hex(16)
    with private_redis() as redis:
        client = connect(redis.url)
        users = user_names(clients)
        await seed_members(client, CHANNEL, [*users, *extra_users])
        servers: list[Child] = []
        profiles: dict[str, Path] = {}
        try:
            for i in range(gateways):
                name = f"{tag}-gw{i + 1}"
                prof = ctx.logs / f"{name}.prof" if profile else None
                if prof is not None:
                    profiles[name] = prof
                servers.append(await start_gateway(ctx.logs, name, redis.url, secret, profile=prof))
            yield Rig(
                system="labkit",
                protocol="labkit",
                servers=servers,
                urls=[f"ws://127.0.0.1:{s.ready['port']}/ws" for s in servers],
                tokens=tokens(users, secret),
                secret=secret,
                redis=redis,
                client=client,
                extra_tokens=dict(zip(extra_users, tokens(extra_users, secret), strict=True)),
                profiles=profiles,
            )
        finally:
            await stop_all(servers)
            with contextlib.suppress(Exception):
                await client.aclose()


@contextlib.asynccontextmanager
async def bare_rig(ctx: Context, tag: str) -> AsyncIterator[Rig]:
    server = await start_bare(ctx.logs, f"{tag}-bare")
    try:
        yield Rig(
            system="websockets",
            protocol="raw",
            servers=[server],
            urls=[f"ws://127.0.0.1:{server.ready['port']}/"],
        )
    finally:
        await stop_all([server])
