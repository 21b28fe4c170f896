"""Fixtures shared by the whole suite: Redis backends.

Every Redis-backed test runs twice, on fakeredis and on a real ``redis-server``, because the
lab promises that one code path works on both. The real server is always one *we* started on a
free port: tests never touch the Redis on 127.0.0.1:6379 or ``LABKIT_REDIS_URL``.

Fixtures
--------
``redis_server_binary`` (session)
    Path of ``redis-server``. Skips the test when it is not installed, or fails it when the
    environment sets ``LABKIT_REQUIRE_REDIS=1`` (CI, where skipping would hide a broken setup).
``real_redis`` (session)
    A started :class:`labkit.server.redis_server.RedisServer` without persistence, stopped at the
    end
    of the session. Tests that crash or restart Redis start their own ``RedisServer`` instead.
``redis_backend`` (function, parametrized: ``fakeredis`` and ``redis-server``)
    A :class:`RedisFactory`: call it for a new ``redis.asyncio.Redis`` client
    (``decode_responses=True``); every client of one test sees the same data. fakeredis gets a
    fresh ``FakeServer`` per test. The real server isolates tests by database number (cycling
    1..15, flushed and checked empty at setup; key names are fixed so a prefix cannot be used).
    Pub/sub channels are not per database in Redis: a bus test sees only what it publishes
    because tests run one at a time. Clients are closed at teardown.

Helpers for test modules
------------------------
``RedisFactory`` (for annotations: ``from conftest import RedisFactory``) and
``open_backend(kind, server)``, an async context manager yielding a factory outside the
fixture, for a test that needs a backend of its own (Hypothesis examples, say).
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import fakeredis
import pytest
import redis.asyncio as aioredis

from labkit.server.redis_server import RedisServer, find_redis_server

BACKENDS = [
    pytest.param("fake", id="fakeredis"),
    pytest.param("real", id="redis-server", marks=pytest.mark.real_redis),
]
"""Use with ``indirect=True`` or read ``redis_backend.kind``; the fixture already uses it."""

_databases = itertools.cycle(range(1, 16))
"""DB 0 is left alone; each real-backend test takes the next of 1..15."""


@dataclass
class RedisFactory:
    """Makes clients of one backend; ``kind`` is "fake" or "real".

    ``url`` (real only) includes the test's database, so code under test that takes a URL, like
    ``labkit.server.redis.store.connect(url)``, lands in the same place; ``fake_server`` (fake
    only) is the
    shared ``FakeServer``, for ``connect(None, fake_server=...)``.
    """

    kind: str
    url: str | None = None
    fake_server: fakeredis.FakeServer | None = None
    clients: list[aioredis.Redis] = field(default_factory=list)

    def __call__(self) -> aioredis.Redis:
        client: aioredis.Redis
        if self.fake_server is not None:
            client = fakeredis.aioredis.FakeRedis(server=self.fake_server, decode_responses=True)
        else:
            assert self.url is not None
            client = aioredis.Redis.from_url(
                self.url, decode_responses=True, socket_timeout=5, socket_connect_timeout=5
            )
        self.clients.append(client)
        return client

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()
        self.clients.clear()


@asynccontextmanager
async def open_backend(kind: str, server: RedisServer | None = None) -> AsyncIterator[RedisFactory]:
    """A factory on a fresh fake server, or on an empty database of our own ``server``."""
    if kind == "fake":
        factory = RedisFactory(kind, fake_server=fakeredis.FakeServer())
    elif kind == "real":
        assert server is not None and server.running, "the real backend needs a started server"
        factory = RedisFactory(kind, url=f"redis://127.0.0.1:{server.port}/{next(_databases)}")
        admin = factory()
        await admin.flushdb()  # our own private server: flushing it harms nobody
        assert await admin.dbsize() == 0
    else:
        raise ValueError(f"unknown backend {kind!r}")
    try:
        yield factory
    finally:
        await factory.aclose()


@pytest.fixture(scope="session")
def redis_server_binary() -> str:
    path = find_redis_server()
    if path is None:
        if os.environ.get("LABKIT_REQUIRE_REDIS") == "1":
            pytest.fail("redis-server not found on PATH, and LABKIT_REQUIRE_REDIS=1 requires it")
        pytest.skip(
            "redis-server not found on PATH; install it (Debian: apt-get install redis-server)"
            " to run the real-Redis tests"
        )
    return path


@pytest.fixture(scope="session")
def real_redis(redis_server_binary: str) -> Iterator[RedisServer]:
    with RedisServer(binary=redis_server_binary) as server:
        yield server


@pytest.fixture(params=BACKENDS)
async def redis_backend(request: pytest.FixtureRequest) -> AsyncIterator[RedisFactory]:
    server = request.getfixturevalue("real_redis") if request.param == "real" else None
    async with open_backend(request.param, server) as factory:
        yield factory


# -- gateway processes --------------------------------------------------------------------

GATEWAY_SECRET = "multi-process-test-secret"
"""The token secret of the ``gateway_processes`` fixture's gateways."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[str], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"gateway on {port} exited early: {proc.stdout and proc.stdout.read()}"
            )
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"gateway on port {port} did not listen within {timeout} s")


@pytest.fixture
def gateway_processes(redis_server_binary: str) -> Iterator[list[str]]:
    """Two `labkit gateway` processes on a private redis-server; yields their URLs.

    They run with ``--heartbeat-s 1`` so presence expiry (3 heartbeats) is quick to observe.
    """
    with RedisServer() as server:
        procs = []
        urls = []
        env = {
            k: v for k, v in os.environ.items() if k not in ("LABKIT_REDIS_URL", "LABKIT_SECRET")
        }
        try:
            for _ in range(2):
                port = _free_port()
                proc = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "labkit.cli",
                        "gateway",
                        "--port",
                        str(port),
                        "--redis",
                        server.url,
                        "--secret",
                        GATEWAY_SECRET,
                        "--heartbeat-s",
                        "1",
                    ],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    env=env,
                )
                procs.append(proc)
                _wait_listening(port, proc)
                urls.append(f"ws://127.0.0.1:{port}/ws")
            yield urls
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
