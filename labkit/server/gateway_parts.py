"""The live gateway's parts that are not the driving itself: its settings, read-only views of
its connections, plain-HTTP routing and bounded closing.

:class:`GatewayConfig` holds the driver's settings (where to listen) and the machine's
(:class:`~labkit.core.gateway.MachineConfig`); :class:`Conn` is what widgets, fault injection and
tests see of one connection: the machine's state next to its WebSocket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request as HttpRequest
from websockets.http11 import Response
from websockets.protocol import State

from labkit.core.fanout import FanoutCore
from labkit.core.gateway import ConnState, GatewayMachine, MachineConfig
from labkit.core.gateway import events as ev
from labkit.core.typing_throttle import TypingThrottle
from labkit.server.redis.bus import Bus

log = logging.getLogger(__name__)

CLOSE_GRACE_S = 1.5
"""How long a connection being closed gets to read what is queued and the close frame, so it
learns *why* (4008, 4002, 1012); then it is cut off. Under the protocol's 2 s delivery bound: a
connection the gateway has stopped feeding must be gone by then."""

STOP_GRACE_S = 1.0
"""How long store and bus work in flight gets to finish when the gateway stops."""

BusFilter = Callable[[str, str, Callable[[str, str], None]], None]
"""Fault injection: ``filter(topic, payload, deliver)`` decides what the bus did."""

Route = Callable[[ServerConnection, HttpRequest], Response]
"""A plain-HTTP handler on the gateway's port (the classroom page, ``/metrics``)."""


class Requester(Protocol):
    """What answers the machine's store requests (:class:`labkit.server.requests.StoreRequests`
    or a wrapper around it)."""

    async def run(self, op: ev.StoreOp) -> object: ...


@dataclass(slots=True)
class GatewayConfig:
    """Everything a gateway can be tuned with; the defaults follow PROTOCOL.md."""

    name: str = "gw-1"
    host: str = "127.0.0.1"
    port: int = 0
    """0 picks a free port; read the chosen one from ``Gateway.port``."""
    heartbeat_s: float = 10.0
    hello_timeout_s: float = 5.0
    max_frame_bytes: int = 64 * 1024
    max_buffer_bytes: int = 1024 * 1024
    """Outgoing bytes a connection may have queued before it is a slow consumer (4008)."""
    head_check_s: float = 0.5
    fill_page: int = 200
    rate_per_s: float = 50.0
    rate_burst: float = 100.0
    typing_interval_s: float = 2.0
    backlog: int = 2048
    tick_s: float = 0.25
    """How often the machine hears the time (silence, head checks, digests, stalled readers)."""
    subscribe_first: bool = True
    """False only for the weaker ``history_before_subscribe`` design."""

    def machine(self) -> MachineConfig:
        """The machine's share of these settings."""
        return MachineConfig(
            name=self.name,
            heartbeat_s=self.heartbeat_s,
            hello_timeout_s=self.hello_timeout_s,
            max_buffer_bytes=self.max_buffer_bytes,
            head_check_s=self.head_check_s,
            fill_page=self.fill_page,
            rate_per_s=self.rate_per_s,
            rate_burst=self.rate_burst,
            typing_interval_s=self.typing_interval_s,
            subscribe_first=self.subscribe_first,
        )


@dataclass(frozen=True, slots=True)
class Conn:
    """One live connection: the machine's view of it and its WebSocket."""

    state: ConnState
    ws: ServerConnection

    @property
    def id(self) -> str:
        return self.state.id

    @property
    def user(self) -> str:
        return self.state.user

    @property
    def welcomed(self) -> bool:
        return self.state.welcomed

    def buffered(self) -> int:
        """Bytes waiting in the connection's outgoing buffer."""
        return buffered(self.ws)


def buffered(ws: ServerConnection) -> int:
    """Bytes waiting in a connection's outgoing buffer."""
    transport = ws.transport
    return transport.get_write_buffer_size() if transport is not None else 0


class ConnectionViews:
    """Read-only views of a gateway's state, for widgets, fault injection and tests."""

    machine: GatewayMachine
    sockets: dict[str, ServerConnection]
    config: GatewayConfig
    port: int

    @property
    def url(self) -> str:
        return f"ws://{self.config.host}:{self.port}/ws"

    @property
    def conns(self) -> list[Conn]:
        """Open connections, with the machine's view of each."""
        return [
            Conn(state, ws)
            for state in self.machine.connections()
            if (ws := self.sockets.get(state.id)) is not None
        ]

    @property
    def user_conns(self) -> dict[str, list[Conn]]:
        by_user: dict[str, list[Conn]] = {}
        for conn in self.conns:
            if conn.user:
                by_user.setdefault(conn.user, []).append(conn)
        return by_user

    @property
    def core(self) -> FanoutCore[str, str]:
        return self.machine.core

    @property
    def typing(self) -> TypingThrottle:
        return self.machine.st.typing

    @property
    def epochs(self) -> dict[str, str]:
        return self.machine.st.epochs

    @property
    def stats(self) -> dict[str, int]:
        return self.machine.stats


def write_many(ws: ServerConnection, payloads: list[str]) -> None:
    """Write frames to one connection without waiting, in one system call (a gap-fill page is a
    hundred frames): what ``websockets.broadcast`` does for one frame, through the connection's
    sans-I/O protocol, which frames each message, and its transport, which sends them together.
    A connection that is not open, or is in the middle of a fragmented send, is skipped, as
    ``broadcast`` skips it."""
    if ws.protocol.state is not State.OPEN or ws.send_in_progress is not None:
        return
    try:
        for payload in payloads:
            ws.protocol.send_text(payload.encode())
        chunks = ws.protocol.data_to_send()
        ws.transport.writelines([chunk for chunk in chunks if chunk])
    except Exception as exc:  # a write to a broken connection: its reader sees it close
        log.warning("skipped a write to %s: %s", ws.id, exc)


def route(
    routes: Mapping[str, Route], connection: ServerConnection, request: HttpRequest
) -> Response | None:
    """``/ws`` is the WebSocket endpoint (None: go on with the handshake); a path in ``routes``
    is answered by its handler; anything else gets 404."""
    path = urlsplit(request.path).path
    if path == "/ws":
        return None
    handler = routes.get(path)
    if handler is not None:
        return handler(connection, request)
    return connection.respond(HTTPStatus.NOT_FOUND, "labkit gateways serve WebSockets at /ws\n")


async def close_within_grace(ws: ServerConnection, code: int, reason: str) -> None:
    """Close with ``code``; a peer that has not answered within ``CLOSE_GRACE_S`` is cut off,
    and so is one whose close is cancelled (the gateway stopping) before it finished."""
    closed = False
    try:
        async with asyncio.timeout(CLOSE_GRACE_S):
            await ws.close(code, reason)
        closed = True
    except (TimeoutError, ConnectionClosed, OSError):
        pass
    finally:
        if not closed and ws.transport is not None:
            ws.transport.abort()


class BusWriter:
    """The gateway's writes to the bus, in the order its machine decided them: publishes go
    out one at a time (a channel's seqs reach the other gateways in order, sparing them repair
    fetches), and a subscription change finishes before the next one starts."""

    def __init__(self, bus: Bus, name: str) -> None:
        self.bus = bus
        self.name = name
        self.queue: asyncio.Queue[ev.Publish] = asyncio.Queue()

    def publish(self, action: ev.Publish) -> None:
        self.queue.put_nowait(action)

    async def run(self) -> None:
        while True:
            action = await self.queue.get()
            try:
                await self.bus.publish(action.topic, action.payload)
            except Exception as exc:  # stored already: the head checks repair a lost publish
                log.warning("%s: publish on %s failed: %s", self.name, action.topic, exc)

    async def subscription(
        self, action: ev.Subscribe | ev.Unsubscribe, after: asyncio.Future[Any] | None
    ) -> None:
        if after is not None:
            with contextlib.suppress(Exception):
                await after
        try:
            if isinstance(action, ev.Subscribe):
                await self.bus.subscribe(action.topic)
            else:
                await self.bus.unsubscribe(action.topic)
        except Exception:  # the bus reconnects and resubscribes by itself
            log.warning("%s: %s failed", self.name, action, exc_info=True)


async def close_clients(*clients: Any) -> None:
    """Close each distinct Redis client once, ignoring errors (their sockets must not leak)."""
    for client in {id(c): c for c in clients}.values():
        with contextlib.suppress(Exception):
            await client.aclose()
