"""Black-box helpers for the integration tests: a raw protocol speaker and the cluster fixture.

A test module imports the helpers it uses and binds the fixture at module level with
``cluster_factory = cluster_factory_fixture()``.

``RawConn``
    A WebSocket that knows only PROTOCOL.md: it sends JSON objects (or any bytes a test wants)
    and checks every frame it receives against what the test expects, in the manner of the
    500 Lines cluster chapter's ``assertMessage``: a frame the test did not ask for fails the
    test, so nothing slips by unlooked-at. Field values in an expectation are matched by
    equality, by type (``str``, ``int``, ``float``…), by a predicate, or with ``ANY`` (present,
    any value) and ``ABSENT`` (must not be present). ``raw_user`` opens one and says hello;
    ``post`` posts and takes the ack and the poster's own copy, in either order.
``Follower``
    Reads a ``RawConn`` in the background, failing on anything but the next ``message`` of one
    channel (for connections that must keep reading while the test does something else).
``cluster_factory`` (function, parametrized: ``fakeredis`` and ``redis-server``)
    A :class:`ClusterFactory`: ``async with cluster_factory(gateways=2, config=...) as c`` is a
    whole labkit system on the embedded fakeredis or on a private ``redis-server`` this test
    session started (a fresh database number per test, flushed at setup). ``store_down`` /
    ``store_up`` make the store unreachable and bring it back, and ``lose_channel`` loses a
    channel's stored sequence and history (a Redis without persistence restarting), for the
    tests that need a store of their own (``own_redis=...``). Never the Redis on 6379, never
    ``LABKIT_REDIS_URL``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import json
import math
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis.asyncio as aioredis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from labkit.server.cluster import Cluster
from labkit.server.redis_server import RedisServer

DEFAULT_TIMEOUT_S = 5.0


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


ANY = _Marker("ANY")
"""The field must be present; any value."""
ABSENT = _Marker("ABSENT")
"""The field must not be present."""


def is_number(value: object) -> bool:
    """A JSON number (int or float, not a boolean), finite."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def is_sentence(value: object) -> bool:
    """A human-readable message: a non-empty string with at least two words."""
    return isinstance(value, str) and len(value.split()) >= 2


def _field_matches(frame: dict[str, Any], key: str, want: object) -> bool:
    if want is ABSENT:
        return key not in frame
    if key not in frame:
        return False
    value = frame[key]
    if want is ANY:
        return True
    if isinstance(want, type):
        if want is int:
            return isinstance(value, int) and not isinstance(value, bool)
        return isinstance(value, want)
    if callable(want):
        return bool(want(value))
    if isinstance(want, bool) or isinstance(value, bool):
        return value is want  # JSON true is not 1
    return bool(value == want)


def matches(frame: dict[str, Any], spec: dict[str, Any]) -> bool:
    """Whether ``frame`` has every field ``spec`` asks for (see the module docstring)."""
    return all(_field_matches(frame, key, want) for key, want in spec.items())


def spec(type: str, **fields: Any) -> dict[str, Any]:
    """An expectation: a frame of ``type`` with ``fields``."""
    return {"type": type, **fields}


_followers: list[Follower] = []
"""Every follower started; the cluster fixture stops those still reading at teardown."""
_open_conns: list[RawConn] = []
"""Every raw connection opened; the cluster fixture aborts those still open at teardown."""


class RawConn:
    """One raw protocol connection; every received frame must be one the test expected."""

    def __init__(self, ws: ClientConnection, name: str) -> None:
        self.ws = ws
        self.name = name
        self.received: list[dict[str, Any]] = []
        """Every frame received, in order (for assertions over a whole run)."""
        self.welcome: dict[str, Any] = {}
        self.ignored: list[dict[str, Any]] = []
        """Specs of frames ``recv`` skips (the pongs of ``keepalive``)."""
        self._keepalive: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls, url: str, name: str = "raw", *, rcvbuf: int | None = None, **options: Any
    ) -> RawConn:
        """Connect to ``url``. ``rcvbuf`` shrinks the socket's receive buffer, so that a
        reader that stops reading makes the server's own buffer grow quickly."""
        sock = None
        if rcvbuf is not None:
            host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
        options.setdefault("max_size", 16 * 1024 * 1024)
        options.setdefault("ping_interval", None)
        ws = await connect(
            url, compression=None, proxy=None, open_timeout=5, close_timeout=2, sock=sock, **options
        )
        conn = cls(ws, name)
        _open_conns.append(conn)
        return conn

    # -- sending ----------------------------------------------------------------------------

    async def send(self, frame: dict[str, Any] | str | bytes) -> None:
        """Send a JSON object, or a text or binary frame exactly as given."""
        await self.ws.send(json.dumps(frame) if isinstance(frame, dict) else frame)

    async def hello(
        self,
        token: str,
        last_seen: dict[str, int] | None = None,
        epochs: dict[str, str] | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """Send ``hello`` and return the ``welcome`` (which must be the next frame)."""
        frame: dict[str, Any] = {"type": "hello", "token": token}
        if last_seen is not None:
            frame["last_seen"] = last_seen
        if epochs is not None:
            frame["epochs"] = epochs
        await self.send(frame)
        self.welcome = await self.expect("welcome", protocol=1, **fields)
        return self.welcome

    def keepalive(
        self,
        every_s: float,
        frame: dict[str, Any] | str | None = None,
        reply: dict[str, Any] | None = None,
    ) -> None:
        """Send ``frame`` (default: a ``ping``) every ``every_s`` seconds in the background, for
        a connection that must outlive 3 × heartbeat_s; ``recv`` skips the ``reply`` frames."""
        if frame is None:
            frame, reply = {"type": "ping", "id": "keepalive"}, spec("pong", id="keepalive")

        async def beat() -> None:
            with contextlib.suppress(ConnectionClosed):
                while True:
                    await self.send(frame)
                    await asyncio.sleep(every_s)

        if reply is not None:
            self.ignored.append(reply)
        self._keepalive = asyncio.create_task(beat())

    # -- receiving --------------------------------------------------------------------------

    async def recv(self, timeout: float = DEFAULT_TIMEOUT_S) -> dict[str, Any]:
        """The next frame, which must be a text frame holding a JSON object with a string type."""
        try:
            async with asyncio.timeout(timeout):  # not wait_for: it may swallow a cancel
                data = await self.ws.recv()
        except TimeoutError:
            raise AssertionError(f"{self.name}: no frame within {timeout:g} s") from None
        except ConnectionClosed:
            raise AssertionError(
                f"{self.name}: closed with {self.ws.close_code} ({self.ws.close_reason!r})"
                " while a frame was expected"
            ) from None
        assert isinstance(data, str), f"{self.name}: the server sent a binary frame {data!r}"
        frame = json.loads(data)
        assert isinstance(frame, dict), f"{self.name}: not a JSON object: {data}"
        assert isinstance(frame.get("type"), str), f"{self.name}: no string type: {data}"
        if any(matches(frame, skip) for skip in self.ignored):
            return await self.recv(timeout)
        self.received.append(frame)
        return frame

    async def expect(
        self, type: str, *, timeout: float = DEFAULT_TIMEOUT_S, **fields: Any
    ) -> dict[str, Any]:
        """The next frame must be a ``type`` frame with ``fields``; returns it."""
        want = spec(type, **fields)
        frame = await self.recv(timeout)
        assert matches(frame, want), f"{self.name}: expected {want}, got {frame}"
        return frame

    async def expect_all(
        self, *specs: dict[str, Any], timeout: float = DEFAULT_TIMEOUT_S
    ) -> list[dict[str, Any]]:
        """The next ``len(specs)`` frames must match ``specs`` in some order (for frames whose
        relative order the protocol leaves open, like a poster's ``ack`` and ``message``).
        Returns the frames in the order of ``specs``."""
        open_specs = list(enumerate(specs))
        found: list[dict[str, Any] | None] = [None] * len(specs)
        while open_specs:
            frame = await self.recv(timeout)
            for position, (index, want) in enumerate(open_specs):
                if matches(frame, want):
                    found[index] = frame
                    del open_specs[position]
                    break
            else:
                still = [want for _, want in open_specs]
                raise AssertionError(f"{self.name}: expected one of {still}, got {frame}")
        return [f for f in found if f is not None]

    async def expect_messages(
        self, channel: str, seqs: range | list[int], timeout: float = DEFAULT_TIMEOUT_S
    ) -> list[dict[str, Any]]:
        """The next frames must be ``message`` frames of ``channel`` with exactly ``seqs``."""
        frames = []
        for seq in seqs:
            frames.append(await self.expect("message", channel=channel, seq=seq, timeout=timeout))
        return frames

    async def expect_close(self, code: int | None, timeout: float = DEFAULT_TIMEOUT_S) -> int:
        """The connection must close with ``code`` (None: any code) before any other frame
        arrives; returns the close code."""
        try:
            async with asyncio.timeout(timeout):
                data = await self.ws.recv()
        except ConnectionClosed:
            pass
        except TimeoutError:
            raise AssertionError(f"{self.name}: not closed within {timeout:g} s") from None
        else:
            raise AssertionError(f"{self.name}: expected close {code}, got frame {data!r}")
        closed = self.ws.close_code
        assert closed is not None, f"{self.name}: no close code"
        assert code is None or closed == code, (
            f"{self.name}: closed with {closed} ({self.ws.close_reason!r}), expected {code}"
        )
        return closed

    async def expect_quiet(self, within: float = 0.2) -> None:
        """No frame arrives within ``within`` seconds (use sparingly: prefer a barrier frame)."""
        try:
            async with asyncio.timeout(within):
                data = await self.ws.recv()
        except TimeoutError:
            return
        except ConnectionClosed:
            raise AssertionError(f"{self.name}: closed with {self.ws.close_code}") from None
        raise AssertionError(f"{self.name}: expected no frame, got {data!r}")

    async def ping(self, id: str = "barrier") -> None:
        """A round trip: everything the server sent before the ``pong`` must already have been
        expected by the test (a cheap barrier)."""
        await self.send({"type": "ping", "id": id})
        await self.expect("pong", id=id)

    async def close(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
        await self.ws.close()

    async def abort(self) -> None:
        """Drop the connection without a close frame (a network failure). A connection left
        open by a test that did not use the cluster fixture belongs to that test's event loop,
        closed by now: there is nothing left to drop."""
        if self._keepalive is not None:
            self._keepalive.cancel()
        if self.ws.transport is not None:
            with contextlib.suppress(RuntimeError):  # "Event loop is closed"
                self.ws.transport.abort()


class Follower:
    """Reads one raw connection in the background: every frame must be the next ``message`` of
    ``channel`` (seq 1, 2, 3, … from ``first``); anything else fails ``until``."""

    def __init__(self, conn: RawConn, channel: str, first: int = 1) -> None:
        self.conn = conn
        self.channel = channel
        self.frames: list[dict[str, Any]] = []
        self.next = first
        self._progress = asyncio.Event()
        self._task = asyncio.create_task(self._read())
        _followers.append(self)

    async def _read(self) -> None:
        while True:
            frame = await self.conn.expect(
                "message", channel=self.channel, seq=self.next, timeout=3600
            )
            self.frames.append(frame)
            self.next += 1
            self._progress.set()

    async def until(self, seq: int, timeout: float = DEFAULT_TIMEOUT_S) -> list[dict[str, Any]]:
        """Wait until every seq up to ``seq`` arrived, in order; returns the frames so far."""
        try:
            async with asyncio.timeout(timeout):
                while self.next <= seq:
                    if self._task.done():
                        self._task.result()  # raises what the reader found wrong
                    self._progress.clear()
                    waiter = asyncio.ensure_future(self._progress.wait())
                    await asyncio.wait({waiter, self._task}, return_when=asyncio.FIRST_COMPLETED)
                    waiter.cancel()
        except TimeoutError:
            raise AssertionError(
                f"{self.conn.name}: #{self.channel} reached seq {self.next - 1} within"
                f" {timeout:g} s, not {seq}"
            ) from None
        return self.frames

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, AssertionError):
            await self._task


async def raw_user(
    cluster: Cluster,
    user: str,
    gateway: int = 0,
    name: str | None = None,
    *,
    last_seen: dict[str, int] | None = None,
    epochs: dict[str, str] | None = None,
    **options: Any,
) -> RawConn:
    """A raw connection of ``user`` to gateway ``gateway``, welcomed (``conn.welcome``)."""
    conn = await RawConn.open(cluster.urls[gateway], name or f"{user}@gw-{gateway + 1}", **options)
    await conn.hello(cluster.token(user), last_seen, epochs, user=user)
    return conn


def post_frame(id: str, channel: str, text: str) -> dict[str, Any]:
    return {"type": "post", "id": id, "channel": channel, "text": text}


async def post(conn: RawConn, id: str, channel: str, text: str) -> dict[str, Any]:
    """Post as a member of ``channel``: the next two frames are the ack and the poster's own
    copy of the message, in either order. Returns the message frame."""
    await conn.send(post_frame(id, channel, text))
    ack, message = await conn.expect_all(
        spec("ack", id=id, channel=channel, seq=int, ts=is_number),
        spec("message", channel=channel, seq=int, user=ANY, text=text, ts=is_number),
    )
    assert (ack["seq"], ack["ts"]) == (message["seq"], message["ts"]), (ack, message)
    return message


# --------------------------------------------------------------------------- clusters

_databases = itertools.cycle(range(1, 16))


@dataclass
class ClusterFactory:
    """Builds clusters on one backend; ``kind`` is "fakeredis" or "redis-server"."""

    kind: str
    shared: RedisServer | None = None
    db: int = 0
    clusters: list[Cluster] = field(default_factory=list)
    servers: dict[int, RedisServer] = field(default_factory=dict)
    """Private servers by ``id(cluster)``, for clusters built with ``own_redis``."""

    @property
    def real(self) -> bool:
        return self.kind == "redis-server"

    def __call__(
        self, gateways: int = 2, *, own_redis: str | None = None, **options: Any
    ) -> Cluster:
        """A cluster (not started; use ``async with``).

        ``own_redis`` ("durable": AOF on, survives a restart; "volatile": no persistence) gives
        a real-Redis cluster a private ``redis-server`` that ``store_down``/``store_up`` and
        ``lose_channel`` may stop and restart; fakeredis clusters always have a private store.
        """
        server: RedisServer | None = None
        if not self.real:
            url = None
        elif own_redis is not None:
            assert own_redis in ("durable", "volatile"), own_redis
            assert self.shared is not None
            server = RedisServer(appendonly=own_redis == "durable").start()
            url = server.url
        else:
            assert self.shared is not None
            url = f"redis://127.0.0.1:{self.shared.port}/{self.db}"
        cluster = Cluster(gateways, redis_url=url, **options)
        self.clusters.append(cluster)
        if server is not None:
            self.servers[id(cluster)] = server
        return cluster

    def server_of(self, cluster: Cluster) -> RedisServer:
        """The private ``redis-server`` of a cluster built with ``own_redis``."""
        return self._server(cluster)

    def _server(self, cluster: Cluster) -> RedisServer:
        server = self.servers.get(id(cluster))
        assert server is not None, "this needs a cluster built with own_redis=..."
        return server

    async def store_down(self, cluster: Cluster) -> None:
        """Make the cluster's Redis unreachable (a real one is stopped)."""
        if self.real:
            await asyncio.to_thread(self._server(cluster).stop)
        else:
            assert cluster.fake_server is not None
            cluster.fake_server.connected = False

    async def store_up(self, cluster: Cluster) -> None:
        """Bring the cluster's Redis back (a real one restarts on the same port)."""
        if self.real:
            await asyncio.to_thread(self._server(cluster).start)
        else:
            assert cluster.fake_server is not None
            cluster.fake_server.connected = True

    async def lose_channel(self, cluster: Cluster, channel: str) -> None:
        """Lose ``channel``'s stored sequence and history, keeping its members.

        fakeredis: delete the channel's keys ``labkit:ch:{C}:*`` and put the members back.
        redis-server: restart the private server, which has no persistence (everything is
        lost), and seed the demo workspace again (the members of the demo channels return).
        """
        assert cluster.redis is not None and cluster.directory is not None
        if self.real:
            server = self._server(cluster)
            assert not server.appendonly, "lose_channel needs own_redis='volatile'"
            await asyncio.to_thread(server.restart)
            await _retry_store(cluster.directory.seed_demo)
            return
        members = await cluster.directory.members(channel)
        keys = [key async for key in cluster.redis.scan_iter(match=f"labkit:ch:{{{channel}}}:*")]
        assert keys, f"no keys of #{channel} to delete"
        await cluster.redis.delete(*keys)
        for user in members:
            await cluster.directory.join(user, channel)

    async def aclose(self) -> None:
        while _followers:
            await _followers.pop().stop()
        while _open_conns:
            await _open_conns.pop().abort()
        for cluster in self.clusters:
            await cluster.stop()
        for server in self.servers.values():
            await asyncio.to_thread(server.close)
        self.clusters.clear()
        self.servers.clear()


async def _retry_store(action: Callable[[], Any], attempts: int = 20) -> Any:
    """Run ``action`` (an async callable), retrying while a restarted Redis is not yet reachable
    from a pooled connection."""
    from labkit.server.redis.store import StoreUnavailable

    for attempt in range(attempts):
        try:
            return await action()
        except StoreUnavailable:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.05)
    return None


CLUSTER_BACKENDS = [
    pytest.param("fakeredis", id="fakeredis"),
    pytest.param("redis-server", id="redis-server", marks=pytest.mark.real_redis),
]


async def _cluster_factory(request: pytest.FixtureRequest) -> AsyncIterator[ClusterFactory]:
    if request.param == "fakeredis":
        factory = ClusterFactory("fakeredis")
    else:
        shared: RedisServer = request.getfixturevalue("real_redis")
        factory = ClusterFactory("redis-server", shared=shared, db=next(_databases))
        admin = aioredis.Redis(host="127.0.0.1", port=shared.port, db=factory.db)
        try:
            await admin.flushdb()  # our own private server: flushing it harms nobody
            assert await admin.dbsize() == 0
        finally:
            await admin.aclose()
    try:
        yield factory
    finally:
        await factory.aclose()
        _collect_garbage()


_gc_frozen = False


def _collect_garbage() -> None:
    """Collect a test's garbage (sockets, loops, tasks) at its teardown.

    Left for later, their finalizers can run inside an unrelated ``ast.parse`` (pytest rewriting
    a module it imports) and trip a CPython 3.11 bug, "SystemError: AST constructor recursion
    depth mismatch", that aborts the whole pytest run. A full collection scans every object of
    the process (0.1 s here), so the first one also freezes what is alive then (modules and
    such, live for good anyway): later collections scan only what the tests made since.
    """
    global _gc_frozen
    gc.collect()
    if not _gc_frozen:
        gc.freeze()
        _gc_frozen = True


def cluster_factory_fixture() -> Any:
    """The ``cluster_factory`` fixture, for a test module to bind at module level::

    cluster_factory = cluster_factory_fixture()
    """
    return pytest.fixture(params=CLUSTER_BACKENDS, name="cluster_factory")(_cluster_factory)
