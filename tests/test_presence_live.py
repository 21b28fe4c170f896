"""Presence and typing across two gateway processes and a real Redis, over real WebSockets.

bob, on gateway 2, watches alice with ``presence_sub``; alice connects to gateway 1 and leaves
again. The gateways share presence through Redis and announce each transition once on the
presence topic; typing travels the channel's bus topic and is never stored.
"""

from __future__ import annotations

import time

import pytest
from conftest import GATEWAY_SECRET

from labkit.core.auth import make_token
from labkit.server.client import Client

pytestmark = pytest.mark.real_redis


def _client(user: str, url: str) -> Client:
    return Client(user, [url], make_token(user, GATEWAY_SECRET, now=time.time()), seed=1)


async def test_bob_sees_alice_come_online_and_go_offline_across_processes(
    gateway_processes: list[str],
) -> None:
    gw1, gw2 = gateway_processes
    bob = _client("bob", gw2)
    alice = _client("alice", gw1)
    await bob.connect()
    try:
        await bob.presence_sub(["alice"])
        await bob.wait_until(lambda: "alice" in bob.presence)
        assert bob.presence["alice"].status == "offline"
        assert bob.presence["alice"].last_active is None

        await alice.connect()
        await bob.wait_until(lambda: bob.presence["alice"].status == "online", timeout=5)
        went_online_at = time.time()
        assert bob.presence["alice"].last_active is not None

        await alice.close()
        # heartbeat_s is 1 on these gateways: offline within 3 heartbeats plus one expiry tick.
        await bob.wait_until(lambda: bob.presence["alice"].status == "offline", timeout=8)
        assert time.time() - went_online_at >= 2.0, "offline came before the expiry window"
        statuses = [
            r.frame["status"]
            for r in bob.recording.received(type="presence")
            if r.frame["user"] == "alice"
        ]
        assert statuses == ["offline", "online", "offline"], statuses
    finally:
        await alice.close()
        await bob.close()


async def test_typing_reaches_other_members_and_never_history(
    gateway_processes: list[str],
) -> None:
    gw1, gw2 = gateway_processes
    alice = _client("alice", gw1)
    alice_phone = _client("alice", gw2)
    bob = _client("bob", gw2)
    carol = _client("carol", gw1)
    for client in (alice, alice_phone, bob, carol):
        await client.connect()
    try:
        await alice.typing("eng")
        await bob.wait_until(lambda: any(e.user == "alice" for e in bob.typing_events))
        await carol.wait_until(lambda: any(e.user == "alice" for e in carol.typing_events))
        # A ping round trip after the typing relay: alice's own connections got nothing.
        await alice.ping()
        await alice_phone.ping()
        assert alice.typing_events == [] and alice_phone.typing_events == []
        history = await bob.history("eng")
        assert history.head == 0 and history.messages == ()
        ack = await alice.post("eng", "shipping it")
        assert ack.seq == 1, "typing must not have taken a seq"
    finally:
        for client in (alice, alice_phone, bob, carol):
            await client.close()
