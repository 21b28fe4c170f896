"""The gateway over real loopback WebSockets, checked frame by frame against PROTOCOL.md.

Every test runs twice (``cluster_factory``): on the embedded fakeredis and on a private
``redis-server``. The connections are raw (``wire.RawConn``): they know only the contract, and
any frame a test did not expect fails it. "Nothing else arrived" is shown with a barrier: a
later frame that must come next (a message on another channel, a ``pong``).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus
from wire import (
    ABSENT,
    ClusterFactory,
    Follower,
    RawConn,
    cluster_factory_fixture,
    is_number,
    is_sentence,
    matches,
    post,
    post_frame,
    raw_user,
    spec,
)

from labkit.core.auth import make_token
from labkit.core.protocol import CloseCode
from labkit.lab.checker import check
from labkit.server.client import Client
from labkit.server.gateway import GatewayConfig
from labkit.server.redis.store import ChannelState, StoreUnavailable, idem_key

cluster_factory = cluster_factory_fixture()

ALICE_CHANNELS = {"general", "random", "eng"}
DAVE_CHANNELS = {"general", "random"}
FAST = GatewayConfig(rate_per_s=1e6, rate_burst=1e6)
"""No rate limit: for tests that post in bulk."""


def error(code: str, id: object = ABSENT) -> dict[str, object]:
    return spec("error", code=code, message=is_sentence, id=id)


# --------------------------------------------------------------------------- transport


async def test_only_the_ws_path_is_served(cluster_factory: ClusterFactory) -> None:
    async with cluster_factory(gateways=1) as c:
        base = c.urls[0].removesuffix("/ws")
        for path in ("/", "/chat", "/ws/extra", "/wss"):
            with pytest.raises(InvalidStatus) as refused:
                await RawConn.open(base + path)
            assert refused.value.response.status_code == 404, path
        conn = await RawConn.open(base + "/ws?client=test")  # a query string is fine
        await conn.hello(c.token("alice"))


# --------------------------------------------------------------------------- session start


async def test_anything_but_a_valid_hello_first_is_unauthorized(
    cluster_factory: ClusterFactory,
) -> None:
    async with cluster_factory(gateways=1) as c:
        now = time.time()
        good = c.token("alice")

        def hello(**fields: object) -> dict[str, object]:
            return {"type": "hello", "token": good, **fields}

        first_frames: dict[str, object] = {
            "ping": {"type": "ping", "id": "p1"},
            "post": post_frame("m1", "general", "hi"),
            "unknown type": {"type": "shout"},
            "binary hello": json.dumps({"type": "hello", "token": good}).encode(),
            "not JSON": "hello?",
            "JSON array": json.dumps([{"type": "hello", "token": good}]),
            "no type": {"token": good},
            "token missing": {"type": "hello"},
            "token not a string": {"type": "hello", "token": 42},
            "token empty": {"type": "hello", "token": ""},
            "token garbage": {"type": "hello", "token": "not-a-token"},
            "token expired": {
                "type": "hello",
                "token": make_token("alice", c.secret, now=now - 120, ttl_s=60),
            },
            "token of another secret": {
                "type": "hello",
                "token": make_token("alice", c.secret + "x", now=now),
            },
            "token forged": {
                "type": "hello",
                # bob's payload with alice's signature
                "token": c.token("bob").split(".")[0] + "." + good.split(".")[1],
            },
            "last_seen not an object": hello(last_seen=[1]),
            "last_seen seq a string": hello(last_seen={"general": "3"}),
            "last_seen seq negative": hello(last_seen={"general": -1}),
            "last_seen seq a float": hello(last_seen={"general": 1.5}),
            "last_seen seq a boolean": hello(last_seen={"eng": True}),
            "last_seen bad channel": hello(last_seen={"Eng": 1}),
            "epochs not an object": hello(epochs="k3x9"),
            "epoch a number": hello(epochs={"general": 7}),
        }
        for case, frame in first_frames.items():
            conn = await RawConn.open(c.urls[0], f"first frame: {case}")
            await conn.send(json.dumps(frame) if isinstance(frame, dict) else frame)  # type: ignore[arg-type]
            await conn.expect("error", code="unauthorized", message=is_sentence)
            await conn.expect_close(CloseCode.UNAUTHORIZED)


async def test_no_hello_in_time_is_unauthorized(cluster_factory: ClusterFactory) -> None:
    async with cluster_factory(gateways=1, config=GatewayConfig(hello_timeout_s=0.3)) as c:
        conn = await RawConn.open(c.urls[0], "silent")
        started = time.monotonic()
        await conn.expect("error", code="unauthorized", message=is_sentence, timeout=3)
        await conn.expect_close(CloseCode.UNAUTHORIZED)
        assert time.monotonic() - started >= 0.25
        # A hello in time is still welcome.
        conn = await RawConn.open(c.urls[0], "prompt")
        await conn.hello(c.token("alice"))


async def test_welcome_lists_every_membership_with_head_and_epoch(
    cluster_factory: ClusterFactory,
) -> None:
    async with cluster_factory(gateways=2) as c:
        poster = await raw_user(c, "bob", 0)
        for n in range(3):
            await post(poster, f"b{n}", "general", f"message {n}")
        await post(poster, "b3", "eng", "eng message")

        alice = await raw_user(c, "alice", 1)
        assert matches(
            alice.welcome,
            spec("welcome", protocol=1, user="alice", gateway="gw-2", heartbeat_s=c.heartbeat_s),
        ), alice.welcome
        channels = alice.welcome["channels"]
        assert set(channels) == ALICE_CHANNELS
        assert {name: info["head"] for name, info in channels.items()} == {
            "general": 3,
            "random": 0,
            "eng": 1,
        }
        for name, info in channels.items():
            assert isinstance(info["epoch"], str) and info["epoch"], (name, info)
            assert (await c.store.state(name)).epoch == info["epoch"]

        dave = await raw_user(c, "dave", 0)
        assert dave.welcome["gateway"] == "gw-1"
        assert set(dave.welcome["channels"]) == DAVE_CHANNELS
        for name in DAVE_CHANNELS:
            assert dave.welcome["channels"][name] == channels[name]

        # A user of no channel is welcome too, with none listed, and may join one.
        zoe = await raw_user(c, "zoe", 1)
        assert zoe.welcome["channels"] == {}
        await zoe.send({"type": "join", "id": "j", "channel": "general"})
        await zoe.expect(
            "joined", id="j", channel="general", head=3, epoch=channels["general"]["epoch"]
        )


async def _labkit_token(*args: str, env: dict[str, str]) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "labkit.cli", "token", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode().strip()


async def test_tokens_printed_by_the_cli_are_accepted(
    cluster_factory: ClusterFactory, tmp_path: Path
) -> None:
    secret = "a-secret-shared-with-the-cli"
    env = {k: v for k, v in os.environ.items() if k != "LABKIT_SECRET"}
    env["LABKIT_HOME"] = str(tmp_path)  # never the user's own ~/.labkit
    async with cluster_factory(gateways=1, secret=secret) as c:
        tokens = {
            "alice": await _labkit_token("alice", "--secret", secret, env=env),
            "bob": await _labkit_token("bob", "--ttl", "60", env={**env, "LABKIT_SECRET": secret}),
        }
        for user, token in tokens.items():
            conn = await RawConn.open(c.urls[0], f"{user} with a CLI token")
            await conn.hello(token, user=user)
        forged = await _labkit_token("alice", "--secret", secret + "?", env=env)
        conn = await RawConn.open(c.urls[0], "CLI token of another secret")
        await conn.send({"type": "hello", "token": forged})
        await conn.expect(**error("unauthorized"))
        await conn.expect_close(CloseCode.UNAUTHORIZED)


async def test_token_expiring_after_hello_does_not_cut_the_connection(
    cluster_factory: ClusterFactory,
) -> None:
    async with cluster_factory(gateways=1) as c:
        conn = await RawConn.open(c.urls[0], "short-lived token")
        await conn.hello(make_token("alice", c.secret, now=time.time(), ttl_s=0.3))
        await asyncio.sleep(0.4)  # the token is now expired: only time can show this
        await conn.ping()
        await post(conn, "late", "general", "still here")


async def test_last_seen_of_a_foreign_channel_is_not_member(
    cluster_factory: ClusterFactory,
) -> None:
    async with cluster_factory(gateways=1) as c:
        bob = await raw_user(c, "bob", 0)
        await post(bob, "b1", "general", "one")
        dave = await RawConn.open(c.urls[0], "dave")
        await dave.hello(c.token("dave"), last_seen={"eng": 0, "general": 1, "no-such": 4})
        assert set(dave.welcome["channels"]) == DAVE_CHANNELS
        await dave.expect_all(error("not_member"), error("not_member"))
        await dave.ping()  # the connection stays open, and #general needed no gap-fill
        await post(bob, "b2", "general", "two")
        await dave.expect("message", channel="general", seq=2, user="bob", text="two")


# --------------------------------------------------------------------------- messages


async def test_post_reaches_every_connection_of_every_member(
    cluster_factory: ClusterFactory,
) -> None:
    async with cluster_factory(gateways=2) as c:
        alice1 = await raw_user(c, "alice", 0, "alice#1@gw-1")
        alice2 = await raw_user(c, "alice", 1, "alice#2@gw-2")
        alice3 = await raw_user(c, "alice", 0, "alice#3@gw-1")
        bob = await raw_user(c, "bob", 1)
        carol = await raw_user(c, "carol", 0)
        dave = await raw_user(c, "dave", 1)  # not a member of #eng

        mine = await post(alice1, "a-1", "eng", "ship it")
        assert matches(
            mine, spec("message", channel="eng", seq=1, user="alice", text="ship it", ts=is_number)
        ), mine
        for conn in (alice2, alice3, bob, carol):
            assert await conn.expect("message", channel="eng", seq=1) == mine, conn.name

        # Barrier: dave's next frame is this #general message, so nothing of #eng reached him.
        theirs = await post(carol, "c-1", "general", "lunch?")
        for conn in (alice1, alice2, alice3, bob, dave):
            assert await conn.expect("message", channel="general", seq=1) == theirs, conn.name

        # What was delivered is what was stored.
        history = await c.stored("eng")
        assert history == [mine]


async def test_post_retry_is_idempotent_and_refused_ids_are_not_used_up(
    cluster_factory: ClusterFactory,
) -> None:
    async with cluster_factory(gateways=2) as c:
        alice = await raw_user(c, "alice", 0)
        alice_elsewhere = await raw_user(c, "alice", 1, "alice@gw-2")
        bob = await raw_user(c, "bob", 1)
        dave = await raw_user(c, "dave", 0)

        first = await post(alice, "p-1", "general", "once")
        # Remembered for at least 10 minutes.
        assert c.redis is not None
        assert await c.redis.ttl(idem_key("alice", "p-1")) >= 600
        await alice_elsewhere.expect("message", seq=1)
        await bob.expect("message", seq=1)
        await dave.expect("message", seq=1)

        # The same post again, on the same and on another connection: the same ack, nothing new.
        for conn in (alice, alice_elsewhere):
            await conn.send(post_frame("p-1", "general", "once"))
            await conn.expect("ack", id="p-1", channel="general", seq=1, ts=first["ts"])
        # The same id with another text or channel is invalid; nothing is stored.
        await alice.send(post_frame("p-1", "general", "twice"))
        await alice.expect(**error("invalid", "p-1"))
        await alice.send(post_frame("p-1", "random", "once"))
        await alice.expect(**error("invalid", "p-1"))
        assert [m["seq"] for m in await c.stored("general")] == [1]
        assert await c.stored("random") == []

        # Barrier: the next message everyone sees is seq 2, so no duplicate of seq 1 came.
        second = await post(alice, "p-2", "general", "next")
        assert second["seq"] == 2
        for conn in (alice_elsewhere, bob, dave):
            assert await conn.expect("message", channel="general", seq=2) == second

        # A refused post does not use its id up.
        await dave.send(post_frame("d-1", "eng", "let me in"))
        await dave.expect(**error("not_member", "d-1"))
        await dave.send(post_frame("d-2", "general", "x" * 4001))
        await dave.expect(**error("invalid", "d-2"))
        await post(dave, "d-1", "general", "elsewhere then")
        await post(dave, "d-2", "general", "shorter")
        assert [m["text"] for m in await c.stored("general")][2:] == ["elsewhere then", "shorter"]


async def test_history_pages_by_after_and_limit(cluster_factory: ClusterFactory) -> None:
    async with cluster_factory(gateways=1) as c:
        alice = await raw_user(c, "alice", 0)
        live = [await post(alice, f"a{n}", "general", f"m{n}") for n in range(1, 6)]

        async def history(**fields: object) -> dict[str, object]:
            await alice.send({"type": "history", "id": "h", "channel": "general", **fields})
            return await alice.expect("history", id="h", channel="general", head=5)

        assert (await history())["messages"] == live  # defaults: after 0, limit 100
        assert (await history(after=2, limit=2))["messages"] == live[2:4]
        assert (await history(after=4, limit=1000))["messages"] == live[4:]
        assert (await history(after=5))["messages"] == []
        assert (await history(after=500))["messages"] == []
        assert (await history(after=0, limit=1))["messages"] == live[:1]
        await alice.send({"type": "history", "channel": "random"})  # no id: reply without one
        await alice.expect("history", id=ABSENT, channel="random", head=0, messages=[])

        for bad in (
            {"limit": 0},
            {"limit": 1001},
            {"limit": "5"},
            {"limit": 2.5},
            {"limit": True},
            {"limit": None},
            {"after": -1},
            {"after": "3"},
            {"after": 1.0},
            {"channel": "General"},
            {"channel": "general\n"},
            {"channel": 5},
        ):
            await alice.send({"type": "history", "id": "bad", "channel": "general", **bad})
            await alice.expect(**error("invalid", "bad"))

        dave = await raw_user(c, "dave", 0)
        await dave.send({"type": "history", "id": "h-eng", "channel": "eng"})
        await dave.expect(**error("not_member", "h-eng"))
        await dave.send({"type": "history", "id": "h-none", "channel": "no-such-channel"})
        await dave.expect(**error("not_member", "h-none"))
        await alice.ping()
        await dave.ping()


# --------------------------------------------------------------------------- membership


async def test_join_and_leave_reach_every_connection_of_the_user(
    cluster_factory: ClusterFactory,
) -> None:
    async with cluster_factory(gateways=2) as c:
        alice1 = await raw_user(c, "alice", 0, "alice#1@gw-1")
        alice2 = await raw_user(c, "alice", 0, "alice#2@gw-1")
        alice3 = await raw_user(c, "alice", 1, "alice#3@gw-2")
        alices = (alice1, alice2, alice3)
        bob = await raw_user(c, "bob", 1)
        assert c.directory is not None
        assert "design" not in await c.directory.all_channels()

        # Joining creates the channel; the user's other connections hear of it without an id.
        await alice1.send({"type": "join", "id": "j1", "channel": "design"})
        joined = await alice1.expect("joined", id="j1", channel="design", head=0, epoch=str)
        for conn in (alice2, alice3):
            await conn.expect("joined", id=ABSENT, channel="design", head=0, epoch=joined["epoch"])
        assert "design" in await c.directory.all_channels()
        await bob.send({"type": "join", "id": "j2", "channel": "design"})
        await bob.expect("joined", id="j2", channel="design", head=0, epoch=joined["epoch"])

        # Then every connection of the user receives the channel's messages.
        first = await post(bob, "b1", "design", "mockups")
        for conn in alices:
            assert await conn.expect("message", channel="design", seq=1) == first

        # Joining again only replies: the other connections get nothing (barrier: seq 2).
        await alice1.send({"type": "join", "id": "j3", "channel": "design"})
        await alice1.expect("joined", id="j3", channel="design", head=1, epoch=joined["epoch"])
        second = await post(bob, "b2", "design", "v2")
        for conn in alices:
            assert await conn.expect("message", channel="design", seq=2) == second

        # Leaving: "left" to the requester, "left" without id to the other connections.
        await alice2.send({"type": "leave", "id": "l1", "channel": "design"})
        await alice2.expect("left", id="l1", channel="design")
        for conn in (alice1, alice3):
            await conn.expect("left", id=ABSENT, channel="design")
        # Nothing of #design reaches any of alice's connections any more.
        await post(bob, "b3", "design", "alice will not see this")
        await bob.send({"type": "typing", "channel": "design"})
        barrier = await post(bob, "b4", "general", "barrier")
        for conn in alices:
            assert await conn.expect("message", channel="general", seq=1) == barrier
        for request in (
            post_frame("a1", "design", "hi"),
            {"type": "history", "id": "a2", "channel": "design"},
            {"type": "typing", "id": "a3", "channel": "design"},
        ):
            await alice1.send(request)
            await alice1.expect(**error("not_member", request["id"]))

        # Joining again resumes from the head of that moment.
        await alice3.send({"type": "join", "id": "j4", "channel": "design"})
        await alice3.expect("joined", id="j4", channel="design", head=3, epoch=joined["epoch"])
        for conn in (alice1, alice2):
            await conn.expect("joined", id=ABSENT, channel="design", head=3)
        fourth = await post(bob, "b5", "design", "welcome back")
        for conn in alices:
            assert await conn.expect("message", channel="design", seq=4) == fourth

        await alice1.send({"type": "join", "id": "j5", "channel": "Design!"})
        await alice1.expect(**error("invalid", "j5"))
        for conn in (*alices, bob):
            await conn.ping()


# --------------------------------------------------------------------------- ephemeral events


async def test_typing_reaches_other_members_only_and_is_never_stored(
    cluster_factory: ClusterFactory,
) -> None:
    async with cluster_factory(gateways=2) as c:
        alice1 = await raw_user(c, "alice", 0, "alice#1@gw-1")
        alice2 = await raw_user(c, "alice", 1, "alice#2@gw-2")
        bob = await raw_user(c, "bob", 0)
        carol = await raw_user(c, "carol", 1)
        dave = await raw_user(c, "dave", 0)  # not in #eng

        await alice1.send({"type": "typing", "channel": "eng"})
        for conn in (bob, carol):
            await conn.expect("typing", channel="eng", user="alice")
        barrier = await post(carol, "c1", "general", "barrier")
        for conn in (alice1, alice2, bob, dave):
            # Neither of the typist's connections, nor a non-member, got the typing event.
            assert await conn.expect("message", channel="general", seq=1) == barrier

        # Typing again at once may be throttled, silently: never an error.
        for _ in range(3):
            await alice2.send({"type": "typing", "channel": "eng"})
        await alice2.ping()
        barrier = await post(dave, "d1", "general", "barrier 2")
        for conn in (bob, carol):
            while (frame := await conn.recv())["type"] == "typing":  # up to the barrier
                assert matches(frame, spec("typing", channel="eng", user="alice")), frame
            assert frame == barrier, (conn.name, frame)
        for conn in (alice1, alice2):
            assert await conn.expect("message", channel="general", seq=2) == barrier

        await dave.send({"type": "typing", "id": "t1", "channel": "eng"})
        await dave.expect(**error("not_member", "t1"))
        await dave.send({"type": "typing", "id": "t2", "channel": "Eng"})
        await dave.expect(**error("invalid", "t2"))

        # Typing has no seq and no history: the next post in #eng is seq 1, history is empty.
        await bob.send({"type": "history", "id": "h", "channel": "eng"})
        await bob.expect("history", id="h", channel="eng", head=0, messages=[])
        msg = await post(bob, "b1", "eng", "first")
        assert msg["seq"] == 1
        assert [m["text"] for m in await c.stored("eng")] == ["first"]


async def test_ping_gets_pong_with_the_same_id(cluster_factory: ClusterFactory) -> None:
    async with cluster_factory(gateways=1) as c:
        conn = await raw_user(c, "erin", 0)
        await conn.send({"type": "ping", "id": "p-42"})
        await conn.expect("pong", id="p-42")
        await conn.send({"type": "ping"})
        await conn.expect("pong", id=ABSENT)
        await conn.send({"type": "ping", "id": "x" * 65})
        await conn.expect(**error("invalid"))
        for id in ("x" * 64, "é" * 64, "😀" * 64, "1"):  # 1..64 code points
            await conn.send({"type": "ping", "id": id})
            await conn.expect("pong", id=id)
        for bad in ("", 7, None, ["p"]):
            await conn.send({"type": "ping", "id": bad})
            await conn.expect(**error("invalid"))


async def test_presence_subscription(cluster_factory: ClusterFactory) -> None:
    heartbeat_s = 0.5
    async with cluster_factory(gateways=2, config=GatewayConfig(heartbeat_s=heartbeat_s)) as c:
        bob = await raw_user(c, "bob", 1)
        erin = await raw_user(c, "erin", 1)
        alice = await raw_user(c, "alice", 0)
        assert alice.welcome["heartbeat_s"] == heartbeat_s
        alice.keepalive(heartbeat_s / 2)

        await alice.send({"type": "presence_sub", "users": ["dave"]})
        await alice.expect("presence", user="dave", status="offline", last_active=None, id=ABSENT)
        # A new subscription replaces the previous one.
        await alice.send({"type": "presence_sub", "users": ["bob", "erin"]})
        bob_on, erin_on = await alice.expect_all(
            spec("presence", user="bob", status="online", last_active=is_number, id=ABSENT),
            spec("presence", user="erin", status="online", last_active=is_number, id=ABSENT),
        )
        dave = await raw_user(c, "dave", 0)  # alice no longer watches dave: no frame
        dave.keepalive(heartbeat_s / 2)

        # bob's connection breaks and he is back at once: he never appears offline. erin leaves
        # for good: she goes offline within 3 × heartbeat_s of her last frame. (erin's last
        # heartbeat is later than bob's old connection's, so bob's offline, were it announced,
        # would come first and fail the expectation below.)
        await bob.abort()
        bob_again = await raw_user(c, "bob", 0, "bob again")
        bob_again.keepalive(heartbeat_s / 2)
        await erin.close()
        closed = time.monotonic()
        erin_off = await alice.expect(
            "presence", user="erin", status="offline", last_active=erin_on["last_active"]
        )
        assert erin_off["last_active"] >= bob_on["last_active"]
        assert time.monotonic() - closed <= 3 * heartbeat_s + 1.0

        # erin comes back: online again.
        erin = await raw_user(c, "erin", 1, "erin again")
        await alice.expect("presence", user="erin", status="online", last_active=is_number)
        await alice.send({"type": "presence_sub", "users": "bob"})
        await alice.expect(**error("invalid"))
        await alice.ping()


# --------------------------------------------------------------------------- errors


async def test_bad_frames_get_errors_and_the_connection_stays_open(
    cluster_factory: ClusterFactory,
) -> None:
    async with cluster_factory(gateways=1) as c:
        alice = await raw_user(c, "alice", 0)
        cases: list[tuple[str | bytes | dict[str, object], dict[str, object]]] = [
            ("not json", error("bad_frame")),
            ('{"type": "ping", "id": NaN}', error("bad_frame")),
            ("[1, 2]", error("bad_frame")),
            ('"ping"', error("bad_frame")),
            ({"id": "x1"}, error("bad_frame", "x1")),
            ({"type": 3, "id": "x2"}, error("bad_frame", "x2")),
            (b'{"type": "ping", "id": "x3"}', error("bad_frame")),
            ({"type": "shout", "id": "u1"}, error("unknown_type", "u1")),
            ({"type": "shout"}, error("unknown_type")),
            ({"type": "hello", "id": "h2", "token": c.token("alice")}, error("invalid", "h2")),
            ({"type": "post", "channel": "general", "text": "no id"}, error("invalid")),
            (post_frame("", "general", "empty id"), error("invalid")),
            (post_frame("i" * 65, "general", "long id"), error("invalid")),
            ({"type": "post", "id": 7, "channel": "general", "text": "hi"}, error("invalid")),
            (post_frame("v1", "general", ""), error("invalid", "v1")),
            (post_frame("v2", "general", "a" * 4001), error("invalid", "v2")),
            ({"type": "post", "id": "v3", "channel": "general", "text": 5}, error("invalid", "v3")),
            ({"type": "post", "id": "v4", "channel": "general"}, error("invalid", "v4")),
            (post_frame("v5", "General", "hi"), error("invalid", "v5")),
            (post_frame("v6", "general\n", "hi"), error("invalid", "v6")),
            (post_frame("v7", "-general", "hi"), error("invalid", "v7")),
            (post_frame("v8", "g" * 81, "hi"), error("invalid", "v8")),
            (post_frame("v9", "g" * 80, "hi"), error("not_member", "v9")),
            ({"type": "join", "id": "v10"}, error("invalid", "v10")),
            ({"type": "presence_sub", "id": "v11", "users": [1]}, error("invalid", "v11")),
        ]
        for frame, expected in cases:
            await alice.send(json.dumps(frame) if isinstance(frame, dict) else frame)
            got = await alice.recv()
            assert matches(got, expected), f"sent {frame!r}: expected {expected}, got {got}"
        # 4000 characters, counted in code points (each of these is 4 bytes in UTF-8).
        longest = "😀" * 4000
        msg = await post(alice, "ok", "general", longest)
        assert msg["text"] == longest and msg["seq"] == 1
        await alice.ping()


async def test_rate_limited_then_recovers(cluster_factory: ClusterFactory) -> None:
    config = GatewayConfig(rate_per_s=1, rate_burst=2)
    async with cluster_factory(gateways=1, config=config) as c:
        alice = await raw_user(c, "alice", 0)
        for n in (1, 2, 3):
            await alice.send(post_frame(f"r{n}", "general", f"burst {n}"))
        await alice.expect_all(
            spec("ack", id="r1", seq=1),
            spec("ack", id="r2", seq=2),
            spec("message", seq=1),
            spec("message", seq=2),
            error("rate_limited", "r3"),
        )
        await alice.send({"type": "typing", "channel": "general"})  # dropped silently
        await alice.ping()  # still open, and the typing got no error
        # The refused id is not used up: retried once the bucket refills, it gets seq 3.
        deadline = time.monotonic() + 5
        while True:
            await alice.send(post_frame("r3", "general", "burst 3"))
            frame = await alice.recv()
            if frame["type"] != "error":
                break
            assert frame["code"] == "rate_limited" and frame["id"] == "r3", frame
            assert time.monotonic() < deadline, "still rate limited after 5 s at 1 frame/s"
            await asyncio.sleep(0.25)
        second = await alice.recv()
        (ack,) = [f for f in (frame, second) if f["type"] == "ack"]
        assert matches(ack, spec("ack", id="r3", channel="general", seq=3, ts=is_number)), ack
        assert [m["seq"] for m in await c.stored("general")] == [1, 2, 3]


async def test_unavailable_store_then_recovery(cluster_factory: ClusterFactory) -> None:
    async with cluster_factory(gateways=2, own_redis="durable") as c:
        alice = await raw_user(c, "alice", 0)
        bob = await raw_user(c, "bob", 1)
        await post(alice, "u0", "general", "before")
        await bob.expect("message", seq=1)

        await cluster_factory.store_down(c)
        for request in (
            post_frame("u1", "general", "during"),
            {"type": "history", "id": "u2", "channel": "general"},
            {"type": "join", "id": "u3", "channel": "design"},
            {"type": "leave", "id": "u4", "channel": "random"},
            {"type": "presence_sub", "id": "u5", "users": ["bob"]},
        ):
            await alice.send(request)
            await alice.expect(**error("unavailable", request["id"]), timeout=10)
        await alice.ping()  # the connection stays open
        # A new connection cannot be welcomed now; it is told so, but not as unauthorized
        # (4001 would make a client give up for good).
        late = await RawConn.open(c.urls[1], "late")
        await late.send({"type": "hello", "token": c.token("carol")})
        await late.expect(**error("unavailable"), timeout=10)
        assert await late.expect_close(None) != CloseCode.UNAUTHORIZED

        await cluster_factory.store_up(c)
        # Retrying the refused post with the same id is safe, and now works.
        deadline = time.monotonic() + 10
        while True:
            await alice.send(post_frame("u1", "general", "during"))
            frame = await alice.recv(timeout=10)
            if frame["type"] != "error":
                break
            assert matches(frame, error("unavailable", "u1")), frame
            assert time.monotonic() < deadline, "the store did not come back within 10 s"
            await asyncio.sleep(0.1)
        rest = await alice.recv()
        got = {f["type"]: f for f in (frame, rest)}
        assert got["ack"]["seq"] == 2 and got["message"]["seq"] == 2, (frame, rest)
        assert await bob.expect("message", seq=2, timeout=5) == got["message"]
        carol = await raw_user(c, "carol", 1)
        assert carol.welcome["channels"]["general"]["head"] == 2


async def test_acked_posts_survive_a_redis_crash_with_aof(cluster_factory: ClusterFactory) -> None:
    if not cluster_factory.real:
        pytest.skip("the embedded fakeredis cannot crash; gateway crashes are tested on both")
    async with cluster_factory(gateways=2, own_redis="durable") as c:
        alice = await c.connect("alice", gateway=0)
        bob = await raw_user(c, "bob", 1)
        acked = [await post(bob, f"b{n}", "general", f"before {n}") for n in range(10)]
        server = cluster_factory.server_of(c)
        await asyncio.to_thread(server.kill)  # SIGKILL: only what is on disk survives
        await asyncio.to_thread(server.start)
        assert await c.stored("general") == acked  # guarantee 4, with appendfsync always

        deadline = time.monotonic() + 10
        while True:  # the first tries may meet connections broken by the crash
            await bob.send(post_frame("after", "general", "after the crash"))
            frame = await bob.recv(timeout=10)
            if frame["type"] != "error":
                break
            assert matches(frame, error("unavailable", "after")), frame
            assert time.monotonic() < deadline, "Redis did not come back within 10 s"
            await asyncio.sleep(0.1)
        await bob.recv()
        await alice.wait_for_seq("general", 11, timeout=5)
        assert alice.seqs("general") == list(range(1, 12))
        assert alice.resets == [] and alice.gaps == []  # same epoch: nothing was lost


async def test_oversized_frame_closes_with_1009(cluster_factory: ClusterFactory) -> None:
    async with cluster_factory(gateways=1) as c:
        alice = await raw_user(c, "alice", 0)
        frame = {"type": "ping", "id": "big", "pad": ""}
        frame["pad"] = "x" * (64 * 1024 - len(json.dumps(frame)))
        assert len(json.dumps(frame).encode()) == 64 * 1024
        await alice.send(frame)  # exactly the maximum: fine (unknown fields are ignored)
        await alice.expect("pong", id="big")
        frame["pad"] += "x"
        await alice.send(frame)
        await alice.expect_close(CloseCode.MESSAGE_TOO_BIG)


async def test_slow_consumer_is_closed_4008_and_others_get_everything(
    cluster_factory: ClusterFactory,
) -> None:
    config = GatewayConfig(max_buffer_bytes=64 * 1024, rate_per_s=1e6, rate_burst=1e6)
    async with cluster_factory(gateways=2, config=config) as c:
        gw = c.gateways[0]
        assert gw is not None
        slow = await c.connect("alice", gateway=0)
        carol = Follower(await raw_user(c, "carol", 0), "general")  # same gateway, reads
        bob = await raw_user(c, "bob", 1)
        slow.pause_reading()

        async def resume_when_closed() -> None:
            # The gateway gives a closing reader CLOSE_GRACE_S to read what is queued and the
            # close frame, then cuts it off: resume reading as soon as the close begins.
            while not gw.stats["slow_closed"]:
                await asyncio.sleep(0.005)
            slow.resume_reading()

        watcher = asyncio.create_task(resume_when_closed())
        text = "😀" * 4000
        sent = 0
        while not watcher.done():
            assert sent < 5_000, "5,000 posts and the paused reader was not closed"
            batch = range(sent + 1, sent + 51)
            for n in batch:
                await bob.send(post_frame(f"b{n}", "general", text))
            for _ in batch:  # bob's acks and his own copies, in any order
                await bob.recv()
                await bob.recv()
            sent = batch[-1]
        await slow.wait_until(lambda: CloseCode.SLOW_CONSUMER in slow.close_codes, timeout=5)
        for n in range(sent + 1, sent + 11):  # more after the close
            await bob.send(post_frame(f"b{n}", "general", "after"))
        sent += 10
        frames = await carol.until(sent, timeout=10)
        assert [f["text"] for f in frames] == [text] * (sent - 10) + ["after"] * 10
        # The slow reader resumes through last_seen like any other and misses nothing.
        await slow.wait_for_seq("general", sent, timeout=10)
        assert slow.seqs("general") == list(range(1, sent + 1))
        assert slow.gaps == [] and slow.duplicates == []
        assert slow.session >= 2


async def test_drain_sends_reconnect_then_1012_and_clients_resume(
    cluster_factory: ClusterFactory,
) -> None:
    async with cluster_factory(gateways=2) as c:
        raw = await raw_user(c, "erin", 0)
        alice = await c.connect("alice", gateway=0)
        bob = await c.connect("bob", gateway=1)
        for n in range(5):
            await bob.post("eng", f"before {n}")
        await alice.wait_for_seq("eng", 5)

        posting = asyncio.create_task(_post_many(bob, "eng", "during", 20))
        await c.drain_gateway(0)
        await raw.expect("reconnect", reason="draining")
        await raw.expect_close(CloseCode.SERVICE_RESTART)
        await posting
        for n in range(5):
            await bob.post("eng", f"after {n}")

        await alice.wait_for_seq("eng", 30, timeout=10)
        assert alice.seqs("eng") == list(range(1, 31))
        assert alice.gaps == [] and alice.duplicates == [] and alice.resets == []
        assert alice.gateway_url == c.urls[1]
        assert alice.welcome is not None and alice.welcome.gateway == "gw-2"
        with pytest.raises(OSError):
            await RawConn.open(c.urls[0], "to the drained gateway")


async def test_crash_clients_fail_over_and_resume(cluster_factory: ClusterFactory) -> None:
    async with cluster_factory(gateways=3) as c:
        raw = await raw_user(c, "erin", 0)
        alice = await c.connect("alice", gateway=0)
        carol = await c.connect("carol", gateway=0)
        bob = await c.connect("bob", gateway=1)
        acks = [await bob.post("eng", f"before {n}") for n in range(5)]
        posting = asyncio.create_task(_post_many(bob, "eng", "during", 20))
        await c.stop_gateway(0)
        await raw.expect_close(1006)  # no close frame: the gateway died
        acks += await posting
        acks += [await bob.post("eng", f"after {n}") for n in range(5)]
        assert [a.seq for a in acks] == list(range(1, 31))
        for client in (alice, carol):
            await client.wait_for_seq("eng", 30, timeout=10)
            assert client.seqs("eng") == list(range(1, 31)), client.name
            assert client.gaps == [] and client.duplicates == [], client.name
            assert client.gateway_url != c.urls[0]
        # Every acked message survived the crash.
        assert [m["seq"] for m in await c.stored("eng")] == list(range(1, 31))
        await c.restart_gateway(0)
        back = await raw_user(c, "dave", 0)
        assert back.welcome["gateway"] == "gw-1"


async def test_silent_connection_is_closed_4002(cluster_factory: ClusterFactory) -> None:
    heartbeat_s = 0.3
    async with cluster_factory(gateways=1, config=GatewayConfig(heartbeat_s=heartbeat_s)) as c:
        started = time.monotonic()
        silent = await raw_user(c, "alice", 0, "silent")
        # WebSocket-level pings are not heartbeats.
        ws_pings = await raw_user(c, "bob", 0, "websocket pings only", ping_interval=0.1)
        chatty = await raw_user(c, "carol", 0, "chatty")
        chatty.keepalive(heartbeat_s / 2)
        # Any text frame is a heartbeat, even one the server refuses.
        babbling = await raw_user(c, "dave", 0, "babbling")
        babbling.keepalive(heartbeat_s / 2, "babble", error("bad_frame"))
        await silent.expect_close(CloseCode.SILENT, timeout=5)
        await ws_pings.expect_close(CloseCode.SILENT, timeout=5)
        assert time.monotonic() - started >= 3 * heartbeat_s
        await asyncio.sleep(heartbeat_s)  # the others have now outlived the silent ones
        await chatty.ping()
        await babbling.ping()


# --------------------------------------------------------------------------- guarantees


async def _post_many(client: Client, channel: str, prefix: str, n: int) -> list[object]:
    return [await client.post(channel, f"{prefix} {i}") for i in range(n)]


@pytest.mark.parametrize("seed", [1, 2])
async def test_guarantees_with_concurrent_posters_on_every_gateway(
    cluster_factory: ClusterFactory, seed: int
) -> None:
    rng = random.Random(seed)
    async with cluster_factory(gateways=3, config=FAST) as c:
        clients = [
            await c.connect(user, gateway=gateway)
            for user, gateway in [
                ("alice", 0),
                ("alice", 2),
                ("bob", 1),
                ("carol", 2),
                ("dave", 0),
                ("erin", 1),
            ]
        ]

        async def poster(client: Client, plan: list[str]) -> None:
            for n, channel in enumerate(plan):
                for _ in range(rng.randrange(3)):
                    await asyncio.sleep(0)
                await client.post(channel, f"{client.name} {n}")

        plans = []
        for client in clients:
            mine = ["general", "random"] + (["eng"] if client.user in ("alice", "bob") else [])
            plans.append([rng.choice(mine) for _ in range(25)])
        await asyncio.gather(*(poster(cl, plan) for cl, plan in zip(clients, plans, strict=True)))

        stored = {ch: await c.stored(ch) for ch in ("general", "random", "eng")}
        for channel, frames in stored.items():  # guarantee 1
            assert [m["seq"] for m in frames] == list(range(1, len(frames) + 1)), (seed, channel)
        assert sum(len(f) for f in stored.values()) == 25 * len(clients), seed
        for client in clients:
            for channel in client.welcome.channels if client.welcome else ():
                head = len(stored[channel])
                await client.wait_for_seq(channel, head, timeout=10)
                # guarantees 2 and 3: 1..head, in order, once each; 5: the store's order
                assert client.seqs(channel) == list(range(1, head + 1)), (seed, client.name)
                said = [(m.user, m.text) for m in client.messages[channel]]
                assert said == [(m["user"], m["text"]) for m in stored[channel]], (seed, channel)
            assert client.gaps == [] and client.duplicates == [], (seed, client.name)
            ts = [m.ts for ch in client.messages.values() for m in ch]
            assert all(isinstance(t, float) for t in ts)
        for channel, frames in stored.items():
            ts = [m["ts"] for m in frames]
            assert ts == sorted(ts), (seed, channel, "ts decreased")
        report = check(c.recording, stored)
        assert report.ok, f"seed {seed}:\n{report.render()}"


async def test_a_store_blip_while_joining_loses_no_messages(
    cluster_factory: ClusterFactory,
) -> None:
    """The store fails once while a gateway sets up a channel another connection joined: the
    ``joined`` frame was sent, so the messages must follow once the store answers again."""
    async with cluster_factory(gateways=2) as c:
        gw = c.gateways[1]
        assert gw is not None
        alice1 = await raw_user(c, "alice", 0, "alice#1@gw-1")
        alice2 = await raw_user(c, "alice", 1, "alice#2@gw-2")
        bob = await raw_user(c, "bob", 0)
        original = gw.store.states
        failures = []

        async def states_once_unavailable(channels: Iterable[str]) -> dict[str, ChannelState]:
            channels = list(channels)
            if channels == ["design"] and not failures:  # the new channel's first head read
                failures.append("design")
                raise StoreUnavailable("injected: Redis did not answer")
            return await original(channels)

        gw.store.states = states_once_unavailable  # type: ignore[method-assign]
        await alice1.send({"type": "join", "id": "j1", "channel": "design"})
        joined = await alice1.expect("joined", id="j1", channel="design", head=0)
        await alice2.expect("joined", id=ABSENT, channel="design", head=0, epoch=joined["epoch"])
        await bob.send({"type": "join", "id": "j2", "channel": "design"})
        await bob.expect("joined", id="j2", channel="design")
        assert failures == ["design"]
        first = await post(bob, "b1", "design", "are you there?")
        for conn in (alice1, alice2):
            assert await conn.expect("message", channel="design", seq=1, timeout=5) == first


async def test_membership_changes_during_a_welcome_reach_the_new_connection(
    cluster_factory: ClusterFactory,
) -> None:
    """alice joins one channel and leaves another while her new connection on another gateway
    is between reading her channels and its ``welcome``: that connection must still hear of
    both changes (``joined`` / ``left`` after its ``welcome``), and act on them."""
    async with cluster_factory(gateways=2) as c:
        gw = c.gateways[1]
        assert gw is not None
        alice1 = await raw_user(c, "alice", 0, "alice#1@gw-1")
        alice3 = await raw_user(c, "alice", 1, "alice#3@gw-2")
        bob = await raw_user(c, "bob", 0)
        await bob.send({"type": "join", "id": "j", "channel": "design"})
        await bob.expect("joined", id="j", channel="design", head=0)

        # Hold gw-2's head reads (the last step before a welcome) until the changes are done.
        release = asyncio.Event()
        original = gw.store.states

        async def held_states(channels: Iterable[str]) -> dict[str, ChannelState]:
            await release.wait()
            return await original(channels)

        gw.store.states = held_states  # type: ignore[method-assign]
        alice2 = await RawConn.open(c.urls[1], "alice#2@gw-2 (welcome held)")
        await alice2.send({"type": "hello", "token": c.token("alice")})
        assert c.directory is not None
        while not any(conn.user == "alice" and not conn.welcomed for conn in gw.conns):
            await asyncio.sleep(0.005)  # until alice#2's welcome has begun

        await alice1.send({"type": "join", "id": "j1", "channel": "design"})
        await alice1.expect("joined", id="j1", channel="design", head=0)
        await alice1.send({"type": "leave", "id": "l1", "channel": "random"})
        await alice1.expect("left", id="l1", channel="random")
        await alice3.expect("joined", id=ABSENT, channel="design", head=0)
        await alice3.expect("left", id=ABSENT, channel="random")
        await alice3.ping()
        release.set()

        welcome = await alice2.expect("welcome", user="alice")
        listed = set(welcome["channels"])
        frames = []
        if "design" not in listed:
            frames.append(spec("joined", id=ABSENT, channel="design", head=0))
        if "random" in listed:
            frames.append(spec("left", id=ABSENT, channel="random"))
        await alice2.expect_all(*frames)
        await alice2.ping()
        in_design = await post(bob, "b1", "design", "for alice")
        await post(bob, "b2", "random", "not for alice any more")
        barrier = await post(bob, "b3", "general", "barrier")
        for conn in (alice1, alice2, alice3):
            assert await conn.expect("message", channel="design", seq=1) == in_design
            assert await conn.expect("message", channel="general", seq=1) == barrier
