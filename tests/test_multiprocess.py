"""Several `labkit gateway` processes around one real Redis form one system.

Users connected to different gateway *processes* post concurrently; every member must see every
channel complete, gap-free and in the same order, whichever process sequenced each post.
"""

from __future__ import annotations

import asyncio
import random
import time

import pytest
from conftest import GATEWAY_SECRET as SECRET

from labkit.core.auth import make_token
from labkit.server.client import Client

pytestmark = pytest.mark.real_redis


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
