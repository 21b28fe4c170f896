"""What the benchmarks feed the systems: users, tokens, texts, and the parent's own connections.

Every benchmark uses one channel, ``#bench``, whose members are ``u00000``, ``u00001``… (the
harness's connections) plus the parent's own users (``driver``, ``p0``, ``p1``…). Texts have a
fixed length, so every system carries frames of the same size; a text that starts with
``t=<unix time>`` lets the harness measure post → receive delay.

The parent paces what it sends with a :class:`Sentinel`: its own connection to the server under
test, which receives every message like any member. Sending message ``i`` waits until the
sentinel has received message ``i - window``, so a server is kept busy but never buried.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import redis.asyncio as aioredis

from labkit.core.auth import make_token
from labkit.server.redis.directory import CHANNELS_KEY, members_key, user_channels_key

CHANNEL = "bench"
TEXT_BYTES = 100
MESSAGE_PREFIX = '{"type":"message"'


def user_names(count: int, prefix: str = "u") -> list[str]:
    return [f"{prefix}{i:05d}" for i in range(count)]


def tokens(users: Iterable[str], secret: str) -> list[str]:
    now = time.time()
    return [make_token(u, secret, now=now, ttl_s=6 * 3600) for u in users]


def text(i: int, *, stamp: float | None = None) -> str:
    """A text of exactly :data:`TEXT_BYTES` characters; ``stamp`` puts ``t=<time>`` first."""
    head = f"t={stamp:.6f} m{i} " if stamp is not None else f"m{i} "
    return (head + "x" * TEXT_BYTES)[:TEXT_BYTES]


async def seed_members(redis: aioredis.Redis, channel: str, users: list[str]) -> None:
    """Make every user a member of ``channel`` (both directions of the directory), in bulk."""
    for start in range(0, len(users), 1000):
        chunk = users[start : start + 1000]
        async with redis.pipeline(transaction=False) as pipe:
            pipe.sadd(CHANNELS_KEY, channel)
            pipe.sadd(members_key(channel), *chunk)
            for user in chunk:
                pipe.sadd(user_channels_key(user), channel)
            await pipe.execute()


async def command_calls(redis: aioredis.Redis, *names: str) -> dict[str, int]:
    """How often Redis has run each command (INFO commandstats), for counting store reads."""
    info = await redis.info("commandstats")
    out = {}
    for name in names:
        entry = info.get(f"cmdstat_{name}")
        out[name] = int(entry["calls"]) if isinstance(entry, dict) else 0
    return out


class Sentinel:
    """The parent's own WebSocket: counts the ``message`` frames it receives."""

    def __init__(self) -> None:
        self.count = 0
        self.ws: Any = None
        self._changed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._beats: asyncio.Task[None] | None = None

    async def open(self, url: str, token: str | None = None) -> Sentinel:
        from websockets.asyncio.client import connect

        self.ws = await connect(
            url, compression=None, proxy=None, ping_interval=None, max_size=None
        )
        if token is not None:
            await self.ws.send(json.dumps({"type": "hello", "token": token}))
            while True:
                frame = json.loads(await self.ws.recv())
                if frame.get("type") == "welcome":
                    break
                if frame.get("type") == "error":
                    raise ConnectionError(f"sentinel refused: {frame.get('message')}")
        self._reader = asyncio.create_task(self._read())
        self._beats = asyncio.create_task(self._heartbeats())
        return self

    async def _heartbeats(self) -> None:
        """A ping every 5 s, as every client sends (a gateway closes a silent connection)."""
        with contextlib.suppress(Exception):
            while True:
                await asyncio.sleep(5.0)
                await self.ws.send('{"type":"ping"}')

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for data in self.ws:
                if isinstance(data, str) and data.startswith(MESSAGE_PREFIX):
                    self.count += 1
                    self._changed.set()

    def on_message(self) -> None:
        """For sentinels fed by a callback (Socket.IO)."""
        self.count += 1
        self._changed.set()

    async def wait_for(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.count < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"sentinel: {self.count} of {count} messages arrived")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def send(self, data: str) -> None:
        await self.ws.send(data)

    async def close(self) -> None:
        for task in (self._reader, self._beats):
            if task is not None:
                task.cancel()
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 2)


async def drive(
    send: Callable[[int], Awaitable[None]],
    sentinel: Sentinel,
    count: int,
    *,
    window: int,
    first: int = 0,
    progress: Callable[[int], None] | None = None,
    timeout: float = 60.0,
    gate: Callable[[int], Awaitable[None]] | None = None,
) -> None:
    """Send messages ``first .. first+count-1``, at most ``window`` ahead of the sentinel and,
    with ``gate``, of the clients: ``await gate(n)`` returns once every client has ``n`` of
    this call's messages (a server that queues without bound cannot run away from them)."""
    base = sentinel.count
    for i in range(count):
        if i >= window:
            await sentinel.wait_for(base + i - window + 1, timeout)
            if gate is not None:
                await gate(i - window + 1)
        await send(first + i)
        if progress is not None and i % 10 == 0:
            progress(i)
    await sentinel.wait_for(base + count, timeout)


class ClientGate:
    """The pacing gate of :func:`drive` over the harness: asks it only when it must."""

    def __init__(self, harness: Any, conns: int, timeout: float = 60.0) -> None:
        self.harness = harness
        self.conns = conns
        self.timeout = timeout
        self.base = 0
        self.known = 0

    def start(self, base_total: int) -> ClientGate:
        self.base = self.known = base_total
        return self

    async def __call__(self, messages: int) -> None:
        want = self.base + messages * self.conns
        if self.known >= want:
            return
        reply = await self.harness.request(
            "until", "total", self.timeout + 5, total=want, timeout=self.timeout
        )
        self.known = int(reply["total"])
        if self.known < want:
            raise TimeoutError(f"clients have {self.known} of {want} deliveries")


async def paced(
    send: Callable[[int], Awaitable[None]],
    rate: float,
    duration_s: float,
    *,
    first: int = 0,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Open loop: send at ``rate`` per second for ``duration_s``, on schedule whatever the
    replies (each send in its own task, so one slow send does not delay the next)."""
    count = max(1, round(rate * duration_s))
    start = time.monotonic()
    tasks: set[asyncio.Task[None]] = set()
    for i in range(count):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(_quietly(send(first + i)))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        if progress is not None and i % 5 == 0:
            progress(i)
    if tasks:
        await asyncio.wait(tasks, timeout=10)
    return count


async def _quietly(awaitable: Awaitable[None]) -> None:
    try:
        await awaitable
    except Exception as exc:  # a failed send is counted by the missing deliveries
        print(f"bench: a send failed: {exc!r}", file=sys.stderr, flush=True)
