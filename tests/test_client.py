"""The asyncio client (``labkit.server.client.Client``) against real gateways: resume bookkeeping,
idempotent re-sending of pending posts, failover and refusal, on fakeredis and on a private
``redis-server`` (``cluster_factory``)."""

from __future__ import annotations

import asyncio
import time

import pytest
from wire import ClusterFactory, cluster_factory_fixture, raw_user

from labkit.core import protocol as p
from labkit.core.auth import make_token
from labkit.core.gateway.events import Appended
from labkit.server.client import Client, ClientError, Phase, Unauthorized
from labkit.server.cluster import Cluster

cluster_factory = cluster_factory_fixture()


def hellos(c: Cluster, client: Client) -> list[dict[str, object]]:
    return [
        r.frame
        for r in c.recording
        if r.client == client.name and r.kind == "out" and r.frame["type"] == "hello"
    ]


async def test_resume_bookkeeping(cluster_factory: ClusterFactory) -> None:
    async with cluster_factory(gateways=2) as c:
        bob = await c.connect("bob", gateway=1)
        await bob.post("general", "before alice")
        alice = await c.connect("alice", gateway=0)
        assert alice.welcome is not None
        epochs = {ch: info.epoch for ch, info in alice.welcome.channels.items()}
        assert alice.state.last_seen == {"general": 1, "random": 0, "eng": 0}
        assert alice.state.epochs == epochs
        assert hellos(c, alice)[0]["last_seen"] == {}  # the first hello knows nothing yet

        for n in range(3):
            await bob.post("general", f"m{n}")
        await bob.post("eng", "eng 1")
        await alice.wait_for_seq("general", 4)
        await alice.wait_for_seq("eng", 1)
        assert alice.state.last_seen == {"general": 4, "random": 0, "eng": 1}
        assert alice.seqs("general") == [2, 3, 4]  # live from head + 1 at welcome

        joined = await alice.join("design")
        assert (joined.channel, joined.head) == ("design", 0)
        assert alice.state.last_seen["design"] == 0
        assert alice.state.epochs["design"] == joined.epoch
        left = await alice.leave("design")
        assert left.channel == "design"
        assert "design" not in alice.state.last_seen and "design" not in alice.state.epochs

        await alice.drop()
        await bob.post("general", "while alice was away")
        await alice.wait_until(lambda: alice.session == 2 and alice.connected)
        resumed = hellos(c, alice)[-1]
        assert resumed["last_seen"] == {"general": 4, "random": 0, "eng": 1}
        assert resumed["epochs"] == epochs
        await alice.wait_for_seq("general", 5)
        assert alice.seqs("general") == [2, 3, 4, 5]
        assert alice.gaps == [] and alice.duplicates == [] and alice.resets == []

        # Requests resolve to their replies; a refused one raises the server's error.
        assert isinstance(await alice.ping(), p.Pong)
        page = await alice.history("general", after=1, limit=2)
        assert [m.seq for m in page.messages] == [2, 3] and page.head == 5
        dave = await c.connect("dave", gateway=1)
        with pytest.raises(ClientError) as refused:
            await dave.history("eng")
        assert refused.value.code == "not_member"
        with pytest.raises(ClientError) as refused:
            await dave.post("eng", "let me in")
        assert refused.value.code == "not_member"


async def test_pending_post_is_resent_with_the_same_id_after_reconnect(
    cluster_factory: ClusterFactory,
) -> None:
    async with cluster_factory(gateways=2) as c:
        gw = c.gateways[0]
        assert gw is not None
        alice = await c.connect("alice", gateway=0)
        bob = await c.connect("bob", gateway=1)

        # The post is stored, then the connection dies before the ack leaves the gateway.
        original = gw.messages.append

        async def store_then_cut(
            user: str, channel: str, post_id: str, text: str, now: float
        ) -> Appended:
            appended = await original(user, channel, post_id, text, now)
            gw.messages.append = original  # type: ignore[method-assign]
            for conn in list(gw.user_conns.get(user, ())):
                if conn.ws.transport is not None:
                    conn.ws.transport.abort()
            return appended

        gw.messages.append = store_then_cut  # type: ignore[method-assign]
        ack = await alice.post("general", "exactly once")
        assert alice.session == 2
        sent = [
            r.frame["id"]
            for r in c.recording
            if r.client == alice.name and r.kind == "out" and r.frame["type"] == "post"
        ]
        assert sent == [ack.id, ack.id]  # the same post, sent twice
        stored = await c.stored("general")
        assert [(m["seq"], m["text"]) for m in stored] == [(ack.seq, "exactly once")]
        await bob.wait_for_seq("general", ack.seq)
        for client in (alice, bob):
            await client.wait_for_seq("general", ack.seq)
            assert client.texts("general") == ["exactly once"], client.name
            assert client.duplicates == [], client.name

        # A post made while disconnected waits for the next welcome, then goes out once.
        await alice.drop()
        second = await alice.post("general", "sent after the reconnect")
        assert second.seq == ack.seq + 1
        assert [m["text"] for m in await c.stored("general")] == [
            "exactly once",
            "sent after the reconnect",
        ]


async def test_failover_to_the_next_url_after_a_crash(cluster_factory: ClusterFactory) -> None:
    async with cluster_factory(gateways=3) as c:
        alice = await c.connect("alice", gateway=0)
        bob = await c.connect("bob", gateway=2)
        assert alice.urls == c.urls and alice.gateway_url == c.urls[0]
        await c.stop_gateway(0)
        await bob.post("general", "during the failover")
        await alice.wait_until(lambda: alice.connected and alice.gateway_url == c.urls[1])
        assert alice.welcome is not None and alice.welcome.gateway == "gw-2"
        await alice.wait_for_seq("general", 1)
        await alice.post("general", "from gw-2")
        await bob.wait_for_seq("general", 2)
        # With gw-2 gone too, and gw-1 back, the client moves on around the list.
        await c.restart_gateway(0)
        await c.stop_gateway(1)
        await alice.wait_until(lambda: alice.connected and alice.gateway_url != c.urls[1])
        await bob.post("general", "still here")
        await alice.wait_for_seq("general", 3)
        assert alice.seqs("general") == [1, 2, 3]
        assert alice.gaps == [] and alice.duplicates == []


@pytest.mark.parametrize("kind", ["garbage", "wrong secret", "expired"])
async def test_unauthorized_is_final(cluster_factory: ClusterFactory, kind: str) -> None:
    async with cluster_factory(gateways=2) as c:
        token = {
            "garbage": "not-a-token",
            "wrong secret": make_token("alice", c.secret + "!", now=time.time()),
            "expired": make_token("alice", c.secret, now=time.time() - 60, ttl_s=30),
        }[kind]
        client = Client("alice", c.urls, token, name=f"alice ({kind})", backoff_s=(0.01, 0.02))
        c.clients.append(client)
        with pytest.raises(Unauthorized) as refused:
            await client.connect(timeout=5)
        assert refused.value.code == "unauthorized"
        assert client.phase == Phase.CLOSED
        assert client._runner is not None and client._runner.done()  # no retry loop left
        assert client.close_codes == [p.CloseCode.UNAUTHORIZED]
        assert [e.code for e in client.errors] == ["unauthorized"]


async def test_unauthorized_on_reconnect_stops_the_client(cluster_factory: ClusterFactory) -> None:
    async with cluster_factory(gateways=2) as c:
        tokens = iter([c.token("alice"), "revoked"])
        alice = Client("alice", c.urls, lambda: next(tokens), name="alice", backoff_s=(0.01, 0.02))
        c.clients.append(alice)
        await alice.connect()
        await alice.drop()
        await asyncio.wait_for(alice._runner, 5)  # type: ignore[arg-type]
        assert alice.phase == Phase.CLOSED
        assert alice.close_codes[-1] == p.CloseCode.UNAUTHORIZED and len(alice.close_codes) == 2
        with pytest.raises(Unauthorized):
            await alice.connect()


async def test_client_and_raw_connections_agree(cluster_factory: ClusterFactory) -> None:
    """The client's view of a channel is the wire's view: same frames, same order."""
    async with cluster_factory(gateways=2) as c:
        raw = await raw_user(c, "carol", 1)
        alice = await c.connect("alice", gateway=0)
        acks = [await alice.post("general", f"m{n}") for n in range(5)]
        frames = await raw.expect_messages("general", range(1, 6))
        await alice.wait_for_seq("general", 5)
        assert [p.frame_to_dict(m) for m in alice.messages["general"]] == frames
        assert [(a.seq, a.ts) for a in acks] == [(f["seq"], f["ts"]) for f in frames]
