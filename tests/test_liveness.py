"""A reader that stops reading delays nobody: liveness over real sockets.

A gateway serves every connection from shared machinery: the periodic tick (silence closes,
presence expiry, digests), the bus relays (fanout, presence, membership changes) and drain. If
any of it waited for one connection's socket to drain, one client that stops reading would
hold up everyone on the gateway. PROTOCOL.md lets a slow reader cost only itself: its queue is
bounded (4008), and everyone else's frames, closes and shutdown stay on time.

The stalled readers here are :class:`~wire.RawConn` connections with a 4 KiB receive buffer and
a one-frame queue that say ``hello`` (and subscribe, where they need to) and then never read
again; they keep sending pings, so they are not silent, only deaf. Loopback TCP absorbs a few
MB of a gateway's output before the gateway's own write buffer grows (FACTS.md), so each is
pushed with 16 KB messages until the gateway's view of it (``Conn.buffered()``) is far past
websockets' 32 KiB write limit: from there on, an ``await send`` to it would never return.

The in-process tests run on the embedded fakeredis (what they test is the gateway's I/O, not
Redis); the process test runs ``labkit gateway`` on a private ``redis-server``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
from conftest import _free_port
from websockets.exceptions import ConnectionClosed
from wire import (
    ABSENT,
    Follower,
    RawConn,
    _cluster_factory,
    is_number,
    post,
    post_frame,
    raw_user,
)

from labkit.core.auth import make_token
from labkit.core.protocol import CloseCode
from labkit.core.protocol.frames import MAX_TEXT_CHARS, MIN_DIGEST_S
from labkit.server.cluster import Cluster
from labkit.server.gateway import GatewayConfig
from labkit.server.redis_server import RedisServer

cluster_factory = pytest.fixture(
    params=[pytest.param("fakeredis", id="fakeredis")], name="cluster_factory"
)(_cluster_factory)

HEARTBEAT_S = 0.5
"""A normal client is silent after 1.5 s."""
TICK_S = 0.25
"""How often the gateway hears the time (the old gateway: ``min(1, heartbeat_s / 2)``)."""
SLACK_S = 0.5
"""Scheduling allowance on a loaded 2-core machine, on top of every protocol bound."""
WRITE_LIMIT = 32 * 1024
"""websockets' default write limit: past it, ``await send`` on a connection waits."""
STALLED_BYTES = 8 * WRITE_LIMIT
"""A gateway-side backlog that proves a reader is stalled (eight times the write limit)."""
BIG_TEXT = "😀" * MAX_TEXT_CHARS
"""The longest text a post may carry: 16 KB of UTF-8 in every copy the gateway writes."""
CLOSE_GRACE_S = 1.5
"""How long a closing connection may take to read its close frame before it is cut off."""


def _config(**overrides: Any) -> GatewayConfig:
    """Short periods, no rate limit; ``tick_s`` where the gateway has it."""
    fields: dict[str, Any] = {
        "heartbeat_s": HEARTBEAT_S,
        "head_check_s": 0.25,
        "rate_per_s": 1e6,
        "rate_burst": 1e6,
    }
    if "tick_s" in {f.name for f in dataclasses.fields(GatewayConfig)}:
        fields["tick_s"] = TICK_S
    fields.update(overrides)
    return GatewayConfig(**fields)


async def stalled_reader(
    c: Cluster, user: str, *then: dict[str, Any], gateway: int = 0, ping: bool = True
) -> RawConn:
    """``user`` says hello (reading only the welcome), sends ``then``, and never reads again;
    it keeps pinging (it is deaf, not silent) unless ``ping`` is False."""
    conn = await raw_user(c, user, gateway, f"{user} (stalled)", rcvbuf=4096, max_queue=1)
    for frame in then:
        await conn.send(frame)
    if ping:
        conn.keepalive(HEARTBEAT_S / 3)
    return conn


async def normal(c: Cluster, user: str, name: str | None = None) -> RawConn:
    """A client that reads and stays alive (its pongs are skipped by ``recv``)."""
    conn = await raw_user(c, user, 0, name)
    conn.keepalive(HEARTBEAT_S / 3)
    return conn


async def post_big(poster: RawConn, channel: str, count: int, first: int) -> int:
    """Post ``count`` 16 KB messages (ids from ``first``); read the acks and own copies."""
    for n in range(first, first + count):
        await poster.send(post_frame(f"big-{n}", channel, BIG_TEXT))
    acks = 0
    for _ in range(2 * count):  # acks and own copies, interleaved in any order
        frame = await poster.recv(timeout=10)
        assert frame["type"] in ("ack", "message") and frame["channel"] == channel, frame
        acks += frame["type"] == "ack"
    assert acks == count, f"{acks} acks for {count} posts"
    return first + count


async def flood(posters: list[RawConn], channel: str, count: int, first: int) -> int:
    """Like :func:`post_big`, by the next poster in turn; the others (members too) read their
    copies."""
    poster = posters[(first // count) % len(posters)]
    after = await post_big(poster, channel, count, first)
    for other in posters:
        if other is not poster:
            for _ in range(count):
                await other.expect("message", channel=channel, seq=int, timeout=10)
    return after


def backlogs(gw: Any, sockets: set[Any]) -> dict[str, int]:
    """The gateway's own write buffer of each of these connections still open, by user."""
    return {c.user: c.buffered() for c in gw.conns if c.ws in sockets}


async def within(seconds: float, what: str, aw: Awaitable[Any]) -> float:
    """Await ``aw``; fail unless it finished within ``seconds``. Returns the time it took."""
    start = time.monotonic()
    try:
        async with asyncio.timeout(seconds):
            await aw
    except TimeoutError:
        raise AssertionError(f"{what}: not within {seconds:g} s") from None
    return time.monotonic() - start


async def until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Wait for a state of the gateway that no frame reports; returns the time it took."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


async def http_get(port: int, path: str) -> tuple[int, str]:
    """A plain HTTP/1.1 GET on the gateway's port: the status code and the body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        async with asyncio.timeout(5):
            data = await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    head, _, body = data.decode("utf-8", "replace").partition("\r\n\r\n")
    status = head.split("\r\n", 1)[0].split(" ")
    assert status[0].startswith("HTTP/1.1"), f"not an HTTP response: {data[:200]!r}"
    return int(status[1]), body


def changes_are(*pairs: tuple[str, str]) -> Callable[[object], bool]:
    def check(value: object) -> bool:
        return isinstance(value, list) and [(c["user"], c["status"]) for c in value] == list(pairs)

    return check


# --------------------------------------------------------------------------- in one process


async def test_three_stalled_readers_delay_nobody_else(cluster_factory: Any) -> None:
    config = _config(max_buffer_bytes=16 * 2**20)  # they stay stalled, open, for the whole test
    async with cluster_factory(gateways=2, config=config) as c:
        gw = c.gateways[0]
        assert gw is not None
        watched = ["tia", "sam"]

        # 1. Three readers stall on gateway 0, all members of the demo's #general: a digest
        # subscriber (the shortest period allowed), a presence watcher and a plain member.
        dave = await stalled_reader(
            c, "dave", {"type": "presence_sub", "users": watched, "digest_s": MIN_DIGEST_S}
        )
        erin = await stalled_reader(c, "erin", {"type": "presence_sub", "users": watched})
        carol = await stalled_reader(c, "carol")
        stalled = {conn.ws for conn in gw.conns if conn.user in ("carol", "dave", "erin")}
        assert len(stalled) == 3, f"the gateway holds {len(stalled)} of the 3 stalled readers"

        alice = await raw_user(c, "alice", 1)  # the poster, on the other gateway, reads
        alice.keepalive(HEARTBEAT_S / 3)
        sent = 0
        start = time.monotonic()
        while True:
            queued = backlogs(gw, stalled)
            assert len(queued) == 3, (
                f"a stalled reader that still pings was cut off during the burst, after"
                f" {sent} posts (max_buffer_bytes is 16 MiB): still open {queued}"
            )
            if min(queued.values()) > STALLED_BYTES:
                break
            assert sent < 800, f"800 posts of 16 KB and the readers are not stalled: {queued}"
            sent = await post_big(alice, "general", 16, sent)
        print(f"stalled after {sent} posts in {time.monotonic() - start:.2f} s: {queued}")
        for conn in (dave, erin, carol):
            assert conn.ws.state.name == "OPEN", f"{conn.name} saw its connection close"

        # 2. While they stay stalled, everyone else's frames, closes and answers are on time.
        wes = await normal(c, "wes")
        await wes.send({"type": "presence_sub", "users": ["tia"]})
        await wes.expect("presence", user="tia", status="offline", last_active=None)
        dot = await normal(c, "dot")
        await dot.send({"type": "presence_sub", "users": ["tia"], "digest_s": MIN_DIGEST_S})
        await dot.expect("presence", user="tia", status="offline", last_active=None)
        erin1 = await normal(c, "erin", "erin#1")
        erin2 = await normal(c, "erin", "erin#2")
        bob = await normal(c, "bob")
        bob_eng = Follower(bob, "eng")

        async def silence_closes() -> None:
            sam = await raw_user(c, "sam", 0)  # says hello, then nothing
            bound = 3 * HEARTBEAT_S + TICK_S + SLACK_S
            took = await within(
                bound + 2, "sam's silence close", sam.expect_close(CloseCode.SILENT)
            )
            assert took <= bound, f"sam was closed 4002 after {took:.2f} s, bound {bound:.2f} s"
            print(f"silence close 4002 after {took:.2f} s (bound {bound:.2f} s)")

        async def presence_and_digest() -> None:
            await asyncio.sleep(0.3)  # tia comes online a little after sam's hello
            tia = await normal(c, "tia")
            online = time.monotonic()
            await wes.expect("presence", user="tia", status="online", last_active=is_number)
            took = time.monotonic() - online
            assert took < 1.0, f"wes saw tia online {took:.2f} s after her welcome"
            print(f"presence online after {took:.3f} s")
            bound = MIN_DIGEST_S + TICK_S + SLACK_S
            await dot.expect(
                "presence_digest",
                changes=changes_are(("tia", "online")),
                since=is_number,
                until=is_number,
                timeout=bound + 2,
            )
            took = time.monotonic() - online
            assert took <= bound, f"dot's digest came {took:.2f} s after tia's welcome"
            print(f"digest after {took:.2f} s (bound {bound:.2f} s)")
            await tia.ping("tia-alive")

        async def joined_reaches_the_other_connection() -> None:
            await erin1.send({"type": "join", "id": "j1", "channel": "erin-side"})
            started = time.monotonic()
            await erin1.expect("joined", id="j1", channel="erin-side", head=0, epoch=str)
            await erin2.expect("joined", id=ABSENT, channel="erin-side", head=0, epoch=str)
            took = time.monotonic() - started
            assert took < 1.0, f"erin#2 got joined {took:.2f} s after erin#1 joined"
            print(f"joined to the user's other connection after {took:.3f} s")

        async def fanout_goes_on() -> None:
            for n in range(1, 31):  # carol, stalled, is a member of #eng too
                await post(alice, f"eng-{n}", "eng", f"eng {n}")
                await asyncio.sleep(0.03)
            await bob_eng.until(30, timeout=2)

        async def http_answers() -> None:
            status, _ = await http_get(gw.port, "/nope")
            assert status == HTTPStatus.NOT_FOUND

        await within(
            8,
            "the checks while readers are stalled",
            asyncio.gather(
                silence_closes(),
                presence_and_digest(),
                joined_reaches_the_other_connection(),
                fanout_goes_on(),
                within(1, "GET /nope", http_answers()),
            ),
        )
        await bob_eng.stop()
        queued = backlogs(gw, stalled)
        print(f"still stalled after the checks: {queued}")
        assert len(queued) == 3 and min(queued.values()) > STALLED_BYTES, queued

        # 3. Drain with the stalled readers still there: reconnect and 1012 to every other
        # client, and the gateway is gone within 3 s.
        others = [wes, dot, erin1, erin2, bob]
        for conn in others:
            await conn.ping("before-drain")  # nothing unread before the drain's frames

        async def told_to_reconnect(conn: RawConn) -> None:
            await conn.expect("reconnect", reason="draining")
            await conn.expect_close(CloseCode.SERVICE_RESTART)

        drain = asyncio.create_task(c.drain_gateway(0))
        try:
            took = await within(
                3,
                "drain with three stalled readers",
                asyncio.gather(asyncio.shield(drain), *(told_to_reconnect(o) for o in others)),
            )
            print(f"drained in {took:.2f} s")
        finally:
            if not drain.done():  # cut the stalled readers off, so the drain can finish
                for conn in (dave, erin, carol):
                    await conn.abort()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(drain, 10)


async def test_a_stalled_reader_is_cut_off_after_the_traffic_stops(cluster_factory: Any) -> None:
    bound = 256 * 1024
    # Silence would close it only after 30 s: here it must be the backlog that cuts it off.
    config = _config(heartbeat_s=10.0, max_buffer_bytes=bound)
    async with cluster_factory(gateways=2, config=config) as c:
        gw = c.gateways[0]
        assert gw is not None
        carol = await stalled_reader(c, "carol", ping=False)
        (stalled,) = (conn.ws for conn in gw.conns if conn.user == "carol")
        alice = await raw_user(c, "alice", 1)
        sent, peak = 0, 0
        while True:
            queued = backlogs(gw, {stalled}).get("carol")
            if queued is None or queued > bound:
                break
            peak = max(peak, queued)
            assert sent < 800, f"800 posts of 16 KB and carol's backlog is {queued} bytes"
            sent = await post_big(alice, "general", 16, sent)
        print(f"after {sent} posts: carol's backlog {queued}, peak seen {peak}")

        # No more traffic anywhere: carol must still be cut off, and soon.
        took = await until(
            lambda: not [conn for conn in gw.conns if conn.user == "carol"],
            CLOSE_GRACE_S + TICK_S + 2.0,
            "carol, past the bound, gone from the gateway",
        )
        print(f"carol gone {took:.2f} s after the traffic stopped")

        # Her side sees the connection end (4008 if she got to read it, else a reset).
        async def read_to_the_end() -> None:
            with contextlib.suppress(ConnectionClosed):
                while True:
                    await carol.ws.recv()

        await within(5, "carol's client seeing the connection end", read_to_the_end())
        code = carol.ws.close_code
        print(f"carol's client saw close code {code}")
        assert code in (CloseCode.SLOW_CONSUMER, 1006), f"carol closed with {code}"


async def test_plain_http_gets_404_and_ws_still_upgrades(cluster_factory: Any) -> None:
    async with cluster_factory(gateways=1, config=_config()) as c:
        gw = c.gateways[0]
        assert gw is not None
        status, body = await http_get(gw.port, "/nope")
        assert status == HTTPStatus.NOT_FOUND, (status, body)
        status, _ = await http_get(gw.port, "/nope?x=/ws")
        assert status == HTTPStatus.NOT_FOUND, status
        conn = await raw_user(c, "alice", 0)
        await conn.ping()


def _health(connection: Any, request: Any) -> Any:
    return connection.respond(HTTPStatus.OK, f"ok {request.path}\n")


async def test_a_route_answers_plain_http_beside_ws(cluster_factory: Any) -> None:
    """Every gateway the cluster builds, a restarted one too, answers the cluster's routes."""
    async with cluster_factory(gateways=2, config=_config(), routes={"/health": _health}) as c:
        await c.stop_gateway(0)
        await c.restart_gateway(0)
        for gw in c.gateways:
            assert gw is not None
            status, body = await http_get(gw.port, "/health")
            assert (status, body) == (HTTPStatus.OK, "ok /health\n"), (gw.name, status, body)
            status, _ = await http_get(gw.port, "/nope")
            assert status == HTTPStatus.NOT_FOUND
        conn = await raw_user(c, "bob", 0)
        await conn.ping()


# --------------------------------------------------------------------------- as a process

SECRET = "liveness-test-secret"


def _tcp_send_queue(local_port: int, remote_port: int) -> int | None:
    """Bytes the kernel holds unsent for the loopback socket ``local_port`` → ``remote_port``
    (``tx_queue`` of /proc/net/tcp), or None when there is no such socket."""
    want = (f"0100007F:{local_port:04X}", f"0100007F:{remote_port:04X}")
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if (fields[1], fields[2]) == want:
            return int(fields[4].split(":")[0], 16)
    return None


KERNEL_HOLDS_AT_LEAST = 1_000_000
"""Loopback holds 2.4–2.9 MB of a stalled reader's backlog here before the process's own
buffer grows: the flood goes on at least until the kernel holds this much."""


async def _settled_send_queue(local_port: int, remote_port: int) -> int | None:
    """:func:`_tcp_send_queue` once it has stopped moving (the gateway process writes what it
    was sent a moment later, more so on a loaded machine), or after a second."""
    last = _tcp_send_queue(local_port, remote_port)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        now = _tcp_send_queue(local_port, remote_port)
        if now == last:
            return now
        last = now
    return last


@contextlib.asynccontextmanager
async def gateway_process(url: str, port: int) -> AsyncIterator[asyncio.subprocess.Process]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABKIT_")}
    env["PYTHONUNBUFFERED"] = "1"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "labkit.cli", "gateway", "--port", str(port), "--redis", url),
        *("--secret", SECRET),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(20):
            while b"labkit gateway" not in (line := await proc.stdout.readline()):
                assert line, "the gateway process ended before it listened"
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_a_gateway_process_drains_past_a_stalled_reader_on_sigterm(
    redis_server_binary: str,
) -> None:
    if not Path("/proc/net/tcp").exists():
        pytest.skip("needs Linux's /proc/net/tcp to see how much of the stall the kernel holds")
    with RedisServer(binary=redis_server_binary) as server:
        port = _free_port()
        url = f"ws://127.0.0.1:{port}/ws"
        async with gateway_process(server.url, port) as proc:

            async def hello(user: str, **options: Any) -> RawConn:
                conn = await RawConn.open(url, f"{user}@process", **options)
                await conn.hello(make_token(user, SECRET, now=time.time()), user=user)
                return conn

            carol = await hello("carol", rcvbuf=4096, max_queue=1)  # never reads again
            carol_port = carol.ws.transport.get_extra_info("sockname")[1]
            wes = await hello("wes")
            # Four posters share the flood: the process keeps its per-user rate limit.
            posters = [await hello(user) for user in ("alice", "bob", "dave", "erin")]

            # Push until the kernel holds no more of carol's backlog, then 256 KB more: the
            # gateway process itself now queues it (under the default 1 MiB bound).
            sent, held = 0, -1
            while True:
                sent = await flood(posters, "general", 16, sent)
                now_held = await _settled_send_queue(port, carol_port)
                assert now_held is not None, "carol's connection is gone on the gateway's side"
                if now_held > KERNEL_HOLDS_AT_LEAST and now_held - held < 16_000:
                    break
                held = now_held
                assert sent < 1200, f"1200 posts and the kernel still takes more ({held} bytes)"
            sent = await flood(posters, "general", 16, sent)
            print(f"{sent} posts; the kernel holds {now_held} bytes of carol's, the process more")

            await wes.ping()
            for poster in posters:
                await poster.close()
            assert _tcp_send_queue(port, carol_port), "carol is no longer stalled at SIGTERM"
            signalled = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            await wes.expect("reconnect", reason="draining", timeout=3)
            await wes.expect_close(CloseCode.SERVICE_RESTART, timeout=3)
            told = time.monotonic() - signalled
            await within(3.5, "the gateway process exiting", proc.wait())
            exited = time.monotonic() - signalled
            print(f"reconnect and 1012 after {told:.2f} s; process exited after {exited:.2f} s")
            assert exited <= 3.0, f"the process exited {exited:.2f} s after SIGTERM"
            assert proc.returncode == 0, f"exit status {proc.returncode}"
