"""Several `labkit gateway` processes around one real Redis form one system.

Users connected to different gateway *processes* post concurrently; every member must see every
channel complete, gap-free and in the same order, whichever process sequenced each post.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from labkit.auth import make_token
from labkit.client import Client
from labkit.redis_server import RedisServer

SECRET = "multi-process-test-secret"
pytestmark = pytest.mark.real_redis


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
    """Two `labkit gateway` processes on a private redis-server; yields their URLs."""
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
                        SECRET,
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


async def test_two_gateway_processes_agree_on_every_channel(gateway_processes: list[str]) -> None:
    seed = 20261128
    rng = random.Random(seed)
    users = ["alice", "bob", "carol", "dave", "erin"]
    clients = []
    for i, user in enumerate(users):
        url = gateway_processes[i % 2]
        token = make_token(user, SECRET, now=time.time())
        client = Client(user, [url], token, name=f"{user}#1", seed=i)
        await client.connect()
        clients.append(client)
    gateways_seen = {c.welcome.gateway for c in clients if c.welcome}
    assert len(gateways_seen) == 2, f"clients should span both processes, saw {gateways_seen}"

    posts_per_user = 40
    plan = {
        c.name: [rng.choice(["general", "random"]) for _ in range(posts_per_user)] for c in clients
    }

    async def post_all(client: Client) -> None:
        for n, channel in enumerate(plan[client.name]):
            await client.post(channel, f"{client.user} {n}")

    started = time.perf_counter()
    await asyncio.gather(*(post_all(c) for c in clients))
    totals = {ch: sum(p.count(ch) for p in plan.values()) for ch in ("general", "random")}
    for client in clients:
        for channel, total in totals.items():
            await client.wait_for_seq(channel, total, timeout=15)
    elapsed = time.perf_counter() - started
    try:
        for channel, total in totals.items():
            reference = [(m.seq, m.user, m.text) for m in clients[0].messages[channel]]
            assert [s for s, _, _ in reference] == list(range(1, total + 1)), (
                f"seed {seed}: #{channel} is not 1..{total} at {clients[0].name}"
            )
            for client in clients[1:]:
                seen = [(m.seq, m.user, m.text) for m in client.messages[channel]]
                assert seen == reference, f"seed {seed}: {client.name} saw #{channel} differently"
            for client in clients:
                assert not client.gaps and not client.duplicates, f"seed {seed}: {client.name}"
        deliveries = sum(totals.values()) * len(users)
        print(
            f"\n{sum(totals.values())} posts, {deliveries} deliveries across 2 processes "
            f"in {elapsed:.2f} s ({deliveries / elapsed:.0f} deliveries/s end to end)"
        )
    finally:
        for client in clients:
            await client.close()
