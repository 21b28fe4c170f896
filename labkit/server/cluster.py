"""A whole labkit system inside the current event loop, for notebooks and tests.

::

    async with labkit.Cluster(gateways=3) as cluster:
        alice = await cluster.connect("alice")
        await alice.post("general", "hi")
        await cluster.stop_gateway(1)      # abrupt crash
        await cluster.drain_gateway(2)     # graceful: reconnect frame, close 1012

or, for a cluster that lives across notebook cells::

    cluster = await labkit.Cluster.start(gateways=3)
    ...
    await cluster.stop()

Gateways listen on free loopback ports. The store, directory, bus and presence run on the
embedded fakeredis (one ``FakeServer`` shared by every gateway, so they form one system) unless
``redis_url`` names a real Redis, or ``redis_server`` hands the cluster a private
:class:`~labkit.server.redis_server.RedisServer` it may crash and restart (the creator closes it).
Starting a cluster stops the one started before it in the same process, so re-running a notebook
cell never leaves servers or ports behind.

This cluster is the real design and nothing else: it knows nothing of faults, weaker designs
or learners' code (``labkit.server`` never imports ``labkit.lab``; pyproject.toml's import
contracts check it). What the lab changes comes in through the constructor: ``gateway_builder``
(how each gateway is built), ``gateway_hooks`` (wired to every gateway while it runs, e.g. the
lab's bus faults) and ``client_setup`` (applied to each new client). ``labkit.Cluster`` is
:class:`labkit.lab.cluster.Cluster`, which adds ``cluster.faults``, ``bus_faults``,
``variant=`` and ``impl=`` on top.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any, ClassVar, Protocol, Self

import fakeredis
import redis.asyncio as aioredis

from labkit.core.auth import DEFAULT_TTL_S, make_token
from labkit.core.fanout import FanoutCore
from labkit.core.records import Recording
from labkit.core.typing_throttle import TypingThrottle
from labkit.server.client import Client
from labkit.server.gateway import Gateway, GatewayConfig
from labkit.server.gateway_parts import Route
from labkit.server.redis.bus import Bus, RedisBus
from labkit.server.redis.directory import Directory
from labkit.server.redis.presence_store import PresenceStore
from labkit.server.redis.store import AppendImpl, Store, connect
from labkit.server.redis_server import RedisServer

log = logging.getLogger(__name__)

GatewayBuilder = Callable[..., Gateway]
"""``builder(config, make_client, secret, *, clock) -> Gateway``, like :func:`build_gateway`; a
cluster given ``routes`` also passes ``routes=``, which the builder hands to its gateway."""

ClientSetup = Callable[[Client], None]
"""Applied to each new client of a cluster before it connects."""


class GatewayHook(Protocol):
    """Something wired to every gateway of a cluster while it runs (the lab's bus faults are one).

    ``install`` is called before the gateway starts (and again on each restart), ``uninstall``
    when it is crashed, drained or stopped.
    """

    def install(self, gateway: Gateway) -> None: ...

    def uninstall(self, gateway: Gateway) -> None: ...


class GatewayPieces(Protocol):
    """Where a gateway's routing table, channel feeds and typing throttle come from: the
    reference classes' constructors, or a learner's (``labkit.lab.impl.Impl`` is one)."""

    @property
    def routing_table(self) -> Callable[..., Any]: ...

    @property
    def channel_feed(self) -> Callable[..., Any]: ...

    @property
    def typing_throttle(self) -> Callable[..., Any]: ...


def build_gateway(
    config: GatewayConfig,
    make_client: Callable[[], aioredis.Redis],
    secret: str,
    *,
    clock: Callable[[], float] = time.time,
    impl: GatewayPieces | None = None,
    append_impl: AppendImpl | None = None,
    routes: Mapping[str, Route] | None = None,
    bus_wrapper: Callable[[Bus], Bus] | None = None,
) -> Gateway:
    """A gateway wired to the Redis that ``make_client`` reaches (store, directory, bus, presence).

    The store, directory and presence share one client (a connection pool); the bus gets its
    own clients, since a subscribed connection can do nothing else. ``impl`` supplies the
    routing table, channel feed and typing throttle (a learner's, with ``--impl exercises``)
    and ``append_impl`` a learner's sequencing script. ``routes`` answer plain HTTP on the
    gateway's port by path (``/ws`` stays the WebSocket endpoint, other paths get 404), so a
    health check or a metrics page shares the port the clients reach. ``bus_wrapper`` wraps
    the gateway's bus (a routing design that counts or redirects what it carries).
    """
    client = make_client()
    bus: Bus = RedisBus(make_client)
    if bus_wrapper is not None:
        bus = bus_wrapper(bus)
    core: FanoutCore[str, str] | None = None
    throttle: TypingThrottle | None = None
    if impl is not None:
        core = FanoutCore(impl.routing_table, impl.channel_feed)
        throttle = impl.typing_throttle(config.typing_interval_s)
    return Gateway(
        config,
        store=Store(client, append_impl=append_impl),
        directory=Directory(client),
        bus=bus,
        secret=secret,
        presence=PresenceStore(client, heartbeat_s=config.heartbeat_s),
        clock=clock,
        core=core,
        typing_throttle=throttle,
        routes=routes,
    )


class Cluster:
    """N gateways around one Redis (embedded by default), plus helpers to connect clients.

    ``gateway_builder`` builds each gateway (:func:`build_gateway` unless told otherwise; it
    stays a public attribute, so a builder can be swapped before gateways are restarted),
    ``gateway_hooks`` are installed on every gateway while it runs, and ``client_setup`` is
    applied to each client :meth:`connect` makes, before it connects. ``routes`` (plain HTTP
    by path) go to every gateway the cluster builds; given none, the builder is called without
    ``routes=``, so a builder that takes no routes keeps working.
    """

    _current: ClassVar[Cluster | None] = None

    def __init__(
        self,
        gateways: int = 3,
        *,
        redis_url: str | None = None,
        secret: str | None = None,
        heartbeat_s: float | None = None,
        seed_demo: bool = True,
        config: GatewayConfig | None = None,
        clock: Callable[[], float] = time.time,
        seed: int = 0,
        port: int = 0,
        redis_server: RedisServer | None = None,
        gateway_builder: GatewayBuilder = build_gateway,
        gateway_hooks: Iterable[GatewayHook] = (),
        client_setup: Iterable[ClientSetup] = (),
        routes: Mapping[str, Route] | None = None,
    ) -> None:
        if gateways < 1:
            raise ValueError("a cluster needs at least one gateway")
        if redis_server is not None and redis_url is not None:
            raise ValueError("pass either redis_url or redis_server, not both")
        self.gateway_count = gateways
        self.redis_url = redis_url
        self.secret = secret or secrets.token_hex(16)
        config = config or GatewayConfig()
        # ``heartbeat_s`` overrides the config's; without it the config's value holds (it used
        # to be silently replaced by 10 s, so GatewayConfig(heartbeat_s=...) had no effect).
        self.heartbeat_s = config.heartbeat_s if heartbeat_s is None else heartbeat_s
        self.seed_demo = seed_demo
        self.base_config = replace(config, heartbeat_s=self.heartbeat_s)
        self.clock = clock
        self.seed = seed
        self.fake_server: fakeredis.FakeServer | None = None
        self.redis: aioredis.Redis | None = None
        self.store: Store | None = None
        self.directory: Directory | None = None
        self.gateways: list[Gateway | None] = []
        self._ports: list[int] = []
        self.first_port = port
        """Gateway ``i`` listens on ``port + i``; 0 picks free ports."""
        self.clients: list[Client] = []
        self.recording = Recording()
        self._client_numbers: dict[str, int] = {}
        self._next_gateway = 0
        self.redis_server = redis_server
        """A private redis-server this cluster may stop, kill and restart (faults use it)."""
        self.gateway_builder: GatewayBuilder = gateway_builder
        self.gateway_hooks: list[GatewayHook] = list(gateway_hooks)
        """Installed on every gateway before it starts, uninstalled when it stops."""
        self.client_setup: list[ClientSetup] = list(client_setup)
        """Applied to each new client before it connects."""
        self.routes: dict[str, Route] | None = None if routes is None else dict(routes)
        """Plain-HTTP routes passed to the builder of every gateway; None: no ``routes=``."""

    # -- lifecycle --------------------------------------------------------------------------

    @classmethod
    async def start(cls, gateways: int = 3, **kwargs: Any) -> Self:
        cluster = cls(gateways, **kwargs)
        await cluster.start_all()
        return cluster

    async def __aenter__(self) -> Self:
        await self.start_all()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def make_client(self) -> aioredis.Redis:
        """A new redis-py asyncio client on this cluster's Redis (real or embedded)."""
        if self.redis_url is not None:
            return connect(self.redis_url)
        return connect(None, fake_server=self.fake_server)

    async def start_all(self) -> None:
        """Start the store and every gateway (``start`` and ``async with`` call this)."""
        previous = Cluster._current
        if previous is not None and previous is not self:
            log.info("stopping the previous cluster first")
            await previous.stop()
        Cluster._current = self
        if self.redis_server is not None:
            if not self.redis_server.running:
                await asyncio.to_thread(self.redis_server.start)
            self.redis_url = self.redis_server.url
        if self.redis_url is None:
            self.fake_server = fakeredis.FakeServer()
        self.redis = self.make_client()
        self.store = Store(self.redis)
        self.directory = Directory(self.redis)
        if self.seed_demo:
            await self.directory.seed_demo()
        self.gateways = [None] * self.gateway_count
        self._ports = [
            self.first_port + i if self.first_port else 0 for i in range(self.gateway_count)
        ]
        for index in range(self.gateway_count):
            await self.start_gateway(index)

    async def stop(self) -> None:
        """Close every client and gateway (abruptly: nothing to drain for) and the Redis clients."""
        for client in self.clients:
            await client.close()
        self.clients.clear()
        for index, gateway in enumerate(self.gateways):
            if gateway is not None:
                self._unhook(gateway)
                await gateway.crash()
                self.gateways[index] = None
        if self.redis is not None:
            await self.redis.aclose()
            self.redis = None
        if Cluster._current is self:
            Cluster._current = None

    # -- gateways ---------------------------------------------------------------------------

    def _gateway(self, index: int) -> Gateway:
        if not 0 <= index < len(self.gateways):
            raise IndexError(f"gateway index {index} out of range 0..{len(self.gateways) - 1}")
        gateway = self.gateways[index]
        if gateway is None:
            raise RuntimeError(f"gateway {index} is not running; restart_gateway({index}) first")
        return gateway

    async def start_gateway(self, index: int) -> Gateway:
        """Start (or restart, on the same port) gateway ``index``."""
        if self.gateways[index] is not None:
            raise RuntimeError(f"gateway {index} is already running")
        config = replace(self.base_config, name=f"gw-{index + 1}", port=self._ports[index])
        extra: dict[str, Any] = {} if self.routes is None else {"routes": self.routes}
        gateway = self.gateway_builder(
            config, self.make_client, self.secret, clock=self.clock, **extra
        )
        for hook in self.gateway_hooks:
            hook.install(gateway)
        await gateway.start()
        self._ports[index] = gateway.port
        self.gateways[index] = gateway
        return gateway

    restart_gateway = start_gateway

    def _unhook(self, gateway: Gateway) -> None:
        for hook in reversed(self.gateway_hooks):
            hook.uninstall(gateway)

    async def stop_gateway(self, index: int) -> None:
        """Crash gateway ``index``: connections drop without a close frame."""
        gateway = self._gateway(index)
        self.gateways[index] = None
        self._unhook(gateway)
        await gateway.crash()

    async def drain_gateway(self, index: int) -> None:
        """Shut gateway ``index`` down gracefully: ``reconnect`` frame, then close 1012."""
        gateway = self._gateway(index)
        self.gateways[index] = None
        self._unhook(gateway)
        await gateway.drain()

    @property
    def urls(self) -> list[str]:
        """The URLs of every gateway slot (a stopped one keeps its URL: it may come back)."""
        return [f"ws://{self.base_config.host}:{port}/ws" for port in self._ports]

    # -- clients ----------------------------------------------------------------------------

    def token(self, user: str, ttl_s: float = DEFAULT_TTL_S) -> str:
        return make_token(user, self.secret, now=self.clock(), ttl_s=ttl_s)

    async def connect(
        self, user: str, *, gateway: int | None = None, **client_options: Any
    ) -> Client:
        """Connect ``user`` to gateway ``gateway`` (round-robin when None) and wait for welcome.

        The client knows every gateway's URL, starting with its own, so it fails over.
        """
        if gateway is None:
            gateway = self._next_gateway % len(self.gateways)
            self._next_gateway += 1
        urls = self.urls[gateway:] + self.urls[:gateway]
        number = self._client_numbers.get(user, 0) + 1
        self._client_numbers[user] = number
        client = Client(
            user,
            urls,
            lambda: self.token(user),
            name=f"{user}#{number}",
            recording=self.recording,
            clock=self.clock,
            seed=self.seed * 1000 + len(self.clients),
            **client_options,
        )
        for setup in self.client_setup:
            setup(client)
        self.clients.append(client)
        await client.connect()
        return client

    async def stored(self, channel: str) -> list[dict[str, Any]]:
        """Every message the store holds for ``channel``, as dicts (the checker's input)."""
        import json

        assert self.store is not None
        pairs = await self.store.history(channel, 0, 1_000_000)
        return [json.loads(raw) for _, raw in pairs]
