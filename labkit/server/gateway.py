"""A connection gateway: the asyncio driver of the gateway machine (websockets + Redis).

Every decision is made by :class:`~labkit.core.gateway.GatewayMachine`; this module moves bytes
and time in and out of it and carries out its actions in order:

* **Events in:** a connection opening, each frame it sends, its close; each bus message; the
  reply to each store request; a tick every ``tick_s``; write-buffer levels over the bound.
* **Writes never wait.** ``Send`` and ``Broadcast`` go out with ``websockets.broadcast``, then
  the buffer-bound check: a reader that stops reading delays nobody, and the machine cuts it
  off (4008). Gap-fill goes at the reader's pace: ``WatchWritable`` waits in its own task.
* **Requests** run as tasks; a ``Subscribe`` completes before any later request of its batch
  (subscribe, *then* read the head). Publishes go out in order, one at a time.
* **Closing** has a bounded grace (``CLOSE_GRACE_S``), so ``drain`` (``reconnect`` and 1012 to
  everyone) finishes within it. **HTTP:** ``routes`` answer plain requests; ``/ws`` is the
  WebSocket endpoint; other paths get 404.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

from labkit.core.fanout import FanoutCore
from labkit.core.gateway import GatewayMachine, Observer, token_checker
from labkit.core.gateway import events as ev
from labkit.core.gateway.bus_payloads import CONTROL_TOPIC, PRESENCE_TOPIC
from labkit.core.resume import ResumePlan, plan_resume
from labkit.core.typing_throttle import TypingThrottle
from labkit.server import gateway_parts as parts
from labkit.server.gateway_parts import CLOSE_GRACE_S, Conn, GatewayConfig, close_within_grace
from labkit.server.message_server import MessageServer
from labkit.server.redis.bus import Bus
from labkit.server.redis.directory import Directory
from labkit.server.redis.presence_store import PresenceStore
from labkit.server.redis.store import Store, StoreUnavailable
from labkit.server.requests import StoreRequests

log = logging.getLogger(__name__)


class Gateway(parts.ConnectionViews):
    """One gateway: a websockets server and a bus subscription set around one machine.

    Swappable pieces, all through the constructor: ``core`` (routing table and feeds),
    ``plan`` (where a connection resumes), ``typing_throttle``, ``messages`` (the message
    server that sequences posts), ``requests`` (a wrapper around the store requests), the
    ``routes`` of plain HTTP, and an ``observer`` of every event and its actions.
    """

    def __init__(
        self,
        config: GatewayConfig,
        *,
        store: Store,
        directory: Directory,
        bus: Bus,
        secret: str,
        presence: PresenceStore,
        clock: Callable[[], float] = time.time,
        core: FanoutCore[str, str] | None = None,
        plan: Callable[..., ResumePlan] = plan_resume,
        typing_throttle: TypingThrottle | None = None,
        messages: MessageServer | None = None,
        requests: Callable[[StoreRequests], parts.Requester] | None = None,
        routes: Mapping[str, parts.Route] | None = None,
        observer: Observer | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.store, self.directory, self.presence, self.bus = store, directory, presence, bus
        self.messages = messages or MessageServer(store, directory, bus, clock=clock)
        own = StoreRequests(store, directory, presence, self.messages)
        self.requests: parts.Requester = requests(own) if requests is not None else own
        self.clock = clock
        self.routes = dict(routes or {})
        self.machine = GatewayMachine(
            config.machine(), authenticate=token_checker(secret), core=core, plan=plan,
            typing_throttle=typing_throttle, observer=self._observe,
        )  # fmt: skip
        self.observers: list[Observer] = [observer] if observer is not None else []
        """Called with every event and the actions decided (widgets, logs, tests)."""
        self.sockets: dict[str, ServerConnection] = {}
        self.bus_filter: parts.BusFilter | None = None
        """Fault injection: ``filter(topic, payload, deliver)`` decides what the bus did."""
        self.port = config.port
        self._server: Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._service: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()
        """Tasks that never end by themselves (ticker, publisher, writability watchers)."""
        self.bus_writer = parts.BusWriter(bus, self.name)
        self._stopping = False
        self._ids = itertools.count(1)

    def _observe(self, event: ev.Event, actions: list[ev.Action]) -> None:
        for observer in self.observers:
            observer(event, actions)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        await self.bus.start(self._on_bus, on_resync=self._on_resync)
        for topic in (CONTROL_TOPIC, PRESENCE_TOPIC):
            await self.bus.subscribe(topic)
        self._server = await serve(
            self._serve,
            self.config.host,
            self.config.port,
            process_request=lambda conn, request: parts.route(self.routes, conn, request),
            compression=None,
            max_size=self.config.max_frame_bytes,
            ping_interval=None,
            close_timeout=2,
            backlog=self.config.backlog,
        )
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        self._service.add(self._spawn(self._ticker()))
        self._service.add(self._spawn(self.bus_writer.run()))
        log.info("%s listening on %s", self.name, self.url)

    async def drain(self) -> None:
        """Graceful shutdown: ``reconnect`` and 1012 to every connection, within the grace."""
        if self._server is not None:
            self._server.close(close_connections=False)
        self.handle(ev.Drain(self.clock()))
        deadline = time.monotonic() + CLOSE_GRACE_S + 0.5
        while self.sockets and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await self._stop()

    async def crash(self) -> None:
        """Abrupt death: connections dropped without a close frame, nothing tidied."""
        for ws in list(self.sockets.values()):
            if ws.transport is not None:
                ws.transport.abort()
        if self._server is not None:
            self._server.close(close_connections=False)
        await self._stop()

    async def _stop(self) -> None:
        """Stop every task: the endless ones at once; store and bus work in flight gets a
        moment to finish first, since a Redis command cancelled half-way can leave its
        connection unusable (redis-py's pub/sub, fakeredis)."""
        self._stopping = True
        for task in self._service:
            task.cancel()
        work = [t for t in self._tasks if t not in self._service]
        if work:
            await asyncio.wait(work, timeout=parts.STOP_GRACE_S)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=parts.STOP_GRACE_S)
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
        await self.bus.close()
        # The Redis clients are the gateway's own, like the bus (see ``build_gateway``).
        await parts.close_clients(self.store.redis, self.directory.redis, self.presence.redis)

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _ticker(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.config.tick_s)
            now = self.clock()
            for conn_id, ws in list(self.sockets.items()):
                self._check_buffer(conn_id, ws, now)
            self.handle(ev.Tick(now))

    # -- events in ----------------------------------------------------------------------------

    async def _serve(self, ws: ServerConnection) -> None:
        conn_id = f"{self.name}:{next(self._ids)}"
        self.sockets[conn_id] = ws
        self.handle(ev.Opened(conn_id, self.clock()))
        try:
            async for data in ws:
                self.handle(ev.Received(conn_id, data, self.clock()))
        except ConnectionClosed:
            pass
        finally:
            self.sockets.pop(conn_id, None)
            self.handle(ev.Closed(conn_id, self.clock()))

    def _on_bus(self, topic: str, payload: str) -> None:
        if self.bus_filter is not None:
            self.bus_filter(topic, payload, self.deliver_bus_message)
        else:
            self.deliver_bus_message(topic, payload)

    def deliver_bus_message(self, topic: str, payload: str) -> None:
        """One bus message, after any fault injection decided that it arrived."""
        self.handle(ev.BusMessage(topic, payload, self.clock()))

    async def _on_resync(self) -> None:
        self.handle(ev.Resync(self.clock()))

    def handle(self, event: ev.Event) -> None:
        """Hand one event to the machine and carry out its actions, in order."""
        if not self._stopping:
            self._carry_out(self.machine.handle(event))

    # -- actions out --------------------------------------------------------------------------

    def _carry_out(self, actions: list[ev.Action]) -> None:
        written: dict[str, ServerConnection] = {}
        subscribed: asyncio.Task[Any] | None = None
        sends: list[str] = []  # consecutive frames to one connection go out in one write
        for i, action in enumerate(actions):
            if isinstance(action, ev.Send):  # a reply, or a gap-fill page (paced)
                sends.append(action.payload)
                following = actions[i + 1] if i + 1 < len(actions) else None
                if not isinstance(following, ev.Send) or following.conn != action.conn:
                    if (ws := self.sockets.get(action.conn)) is not None:
                        parts.write_many(ws, sends)
                    sends = []
            elif isinstance(action, ev.Broadcast):
                targets = self._targets(action.conns, action.droppable_above, written)
                broadcast(targets, action.payload)
            elif isinstance(action, ev.Request):
                self._spawn(self._request(action, subscribed))
            elif isinstance(action, ev.Publish):
                self.bus_writer.publish(action)
            elif isinstance(action, ev.Subscribe | ev.Unsubscribe):
                subscribed = self._spawn(self.bus_writer.subscription(action, subscribed))
            elif isinstance(action, ev.Close):
                ws = self.sockets.get(action.conn)
                if ws is not None:
                    self._spawn(close_within_grace(ws, int(action.code), action.reason))
            elif isinstance(action, ev.WatchWritable):
                ws = self.sockets.get(action.conn)
                if ws is not None:
                    self._service.add(self._spawn(self._watch_writable(action.conn, ws)))
        now = self.clock()
        for conn_id, ws in written.items():
            self._check_buffer(conn_id, ws, now, live_write=True)

    def _targets(
        self, conns: tuple[str, ...], droppable_above: int | None, written: dict[str, Any]
    ) -> list[ServerConnection]:
        sockets = self.sockets
        targets = []
        for conn_id in conns:
            ws = sockets.get(conn_id)
            if ws is None:
                continue
            if droppable_above is not None and parts.buffered(ws) > droppable_above:
                continue
            targets.append(ws)
            written[conn_id] = ws
        return targets

    def _check_buffer(
        self, conn_id: str, ws: ServerConnection, now: float, *, live_write: bool = False
    ) -> None:
        queued = parts.buffered(ws)
        if queued > self.config.max_buffer_bytes:
            self.handle(ev.BufferLevel(conn_id, queued, now, live_write))

    async def _request(self, request: ev.Request, after: asyncio.Task[Any] | None) -> None:
        if after is not None:
            with contextlib.suppress(Exception):
                await after
        try:
            result = await self.requests.run(request.op)
        except StoreUnavailable as exc:
            self.handle(ev.Reply(request, error=str(exc)))
            return
        except Exception:  # never leave the machine waiting for an answer
            log.exception("%s: %s failed", self.name, request.op)
            self.handle(ev.Reply(request, error="internal error"))
            return
        self.handle(ev.Reply(request, result))

    async def _watch_writable(self, conn_id: str, ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed, RuntimeError, AttributeError):
            await ws.drain()
            self.handle(ev.Writable(conn_id, self.clock()))


__all__ = ["CLOSE_GRACE_S", "Conn", "Gateway", "GatewayConfig", "close_within_grace"]
