"""A simulated gateway: the real gateway machine, driven by virtual time instead of asyncio.

Theory of operation
-------------------
:class:`SimGateway` is the simulator's driver of :class:`~labkit.core.gateway.GatewayMachine`,
the same machine ``labkit.server.gateway`` drives over websockets and Redis. It turns what
happens in the simulated world into the machine's events and carries out the actions it
returns, in order:

- ``Send`` / ``Broadcast``: a frame reaches the client one network latency later (consecutive
  sends to one connection travel together; a broadcast is parsed once for all its recipients);
- ``Request``: the simulated store (or shared presence) runs the operation one store latency
  later, at one instant of virtual time, and the ``Reply`` arrives one latency after that;
- ``Publish`` / ``Subscribe`` / ``Unsubscribe``: the simulated bus, with its injected faults;
- ``Close``: the client hears the close code one latency later, the machine ``Closed`` at once;
- ``WatchWritable``: simulated clients always read, so ``Writable`` follows at once.

A timer sends ``Tick`` every ``tick_s``. A crash drops the machine (memory lost), the bus
subscriptions and every connection without a close frame; a restart starts a fresh machine.
Every callback that crosses virtual time carries the gateway's *incarnation* and is ignored if
the gateway crashed meanwhile.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from labkit.core.gateway import (
    GatewayMachine,
    MachineConfig,
)
from labkit.core.gateway import events as ev
from labkit.core.gateway.bus_payloads import CONTROL_TOPIC, PRESENCE_TOPIC
from labkit.lab.sim.conns import SimConn, deliver_batch, deliver_many, sim_token_user
from labkit.lab.sim.network import Link
from labkit.lab.sim.store_ops import run_op

if TYPE_CHECKING:
    from labkit.lab.sim.client import SimClient
    from labkit.lab.sim.run import World

Frame = dict[str, Any]
PRESENCE_OPS = (ev.Heartbeat, ev.Disconnect, ev.ExpirePresence, ev.ReadPresence)


class SimGateway:
    """One gateway in virtual time."""

    def __init__(self, world: World, name: str) -> None:
        self.world = world
        self.name = name
        self.alive = True
        self.incarnation = 0
        config = world.config
        self.config = MachineConfig(
            name=name,
            heartbeat_s=config.heartbeat_s,
            head_check_s=config.head_check_s,
            fill_page=config.fill_page,
            subscribe_first=not world.design.history_first,
        )
        self.tick_s = min(0.25, config.head_check_s)
        self.machine = self._new_machine()
        self.conns: dict[str, SimConn] = {}
        """Connections accepted and not yet known to be closed."""
        self._ids = 0
        self.down = Link(world.net_latency, world.rng_net)
        self._retired: dict[str, int] = {}
        self.rng_presence = random.Random(f"{world.seed}/presence/{name}")

    def _new_machine(self) -> GatewayMachine:
        design = self.world.design
        return GatewayMachine(
            self.config, authenticate=sim_token_user, core=design.make_core(), plan=design.plan
        )

    @property
    def stats(self) -> dict[str, int]:
        """The machine's counters, over every incarnation."""
        total = dict(self._retired)
        for key, value in self.machine.stats.items():
            total[key] = total.get(key, 0) + value
        return total

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        bus = self.world.bus
        bus.subscribe(self, CONTROL_TOPIC)
        bus.subscribe(self, PRESENCE_TOPIC)
        self._tick()

    def crash(self) -> None:
        """Die at once: connections dropped without a close frame, memory lost."""
        world = self.world
        self.alive = False
        self.incarnation += 1
        world.bus.drop_subscriber(self)
        for conn in list(self.conns.values()):
            conn.gw_open = False
            conn.client_open = False  # what was in flight is lost with the TCP connection
            world.sched.after(
                world.net_latency.sample(world.rng_net), conn.client.on_closed, conn, 1006, ""
            )
        self.conns.clear()
        self._retired = self.stats
        self.machine = self._new_machine()
        world.say(self.name, "crashed")

    def restart(self) -> None:
        self.alive = True
        self.world.say(self.name, "restarted (empty)")
        self.start()

    def heal(self) -> None:
        """Back on the bus: the bus client's resync makes the machine look at the heads."""
        if self.alive:
            self.handle(ev.Resync(self.world.sched.now))

    def _tick(self) -> None:
        self.later(self.tick_s, self._tick)
        self.handle(ev.Tick(self.world.sched.now))

    # -- plumbing ---------------------------------------------------------------------------

    def later(self, delay: float, fn: Callable[..., object], *args: Any) -> None:
        """A timer that is dropped if the gateway crashes before it fires."""
        self.world.sched.after(delay, self._guard, self.incarnation, fn, args)

    def _guard(self, incarnation: int, fn: Callable[..., object], args: tuple[Any, ...]) -> None:
        if incarnation == self.incarnation and self.alive:
            fn(*args)

    def handle(self, event: ev.Event) -> None:
        """Hand one event to the machine and carry out its actions, in order."""
        actions = self.machine.handle(event)
        if actions:
            self._carry_out(actions)

    def _carry_out(self, actions: list[ev.Action]) -> None:
        sched = self.world.sched
        batch: list[str] = []
        batch_conn: SimConn | None = None
        for action in actions:
            if isinstance(action, ev.Send):
                conn = self.conns.get(action.conn)
                if conn is None:
                    continue
                if conn is not batch_conn:
                    self._flush(batch_conn, batch)
                    batch, batch_conn = [], conn
                batch.append(action.payload)
                continue
            self._flush(batch_conn, batch)
            batch, batch_conn = [], None
            if isinstance(action, ev.Broadcast):
                recipients = [c for c in map(self.conns.get, action.conns) if c is not None]
                sched.at(self.down.arrival(sched.now), deliver_batch, recipients, action.payload)
            elif isinstance(action, ev.Request):
                self._request(action)
            elif isinstance(action, ev.Publish):
                self.world.bus.publish(action.topic, action.seq or 0, action.payload)
            elif isinstance(action, ev.Subscribe):
                self.world.bus.subscribe(self, action.topic)
            elif isinstance(action, ev.Unsubscribe):
                self.world.bus.unsubscribe(self, action.topic)
            elif isinstance(action, ev.Close):
                self._close(action)
            elif isinstance(action, ev.WatchWritable):
                self.later(0.0, self.handle, ev.Writable(action.conn, sched.now))
        self._flush(batch_conn, batch)

    def _flush(self, conn: SimConn | None, payloads: list[str]) -> None:
        if conn is not None and payloads:
            sched = self.world.sched
            sched.at(self.down.arrival(sched.now), deliver_many, conn, payloads)

    def _request(self, request: ev.Request) -> None:
        """The store runs ``request`` one latency from now; the reply comes one latency later."""
        world = self.world
        delay = world.store_latency.sample(self._rng_for(request.op))
        world.sched.after(delay, self._at_store, self.incarnation, request)

    def _rng_for(self, op: ev.StoreOp) -> random.Random:
        """Presence has its own random stream: it never shifts the timing of messages, so a
        presence variant delivers exactly the same frames as the real design."""
        return self.rng_presence if isinstance(op, PRESENCE_OPS) else self.world.rng_net

    def _at_store(self, incarnation: int, request: ev.Request) -> None:
        world = self.world
        rng = self._rng_for(request.op)

        def reply(result: object) -> None:
            back = world.store_latency.sample(rng)
            world.sched.after(
                back, self._guard, incarnation, self.handle, (ev.Reply(request, result),)
            )

        # The request reached the store: it happens even if the gateway crashes now.
        run_op(world, self.name, request.op, reply)

    def _close(self, action: ev.Close) -> None:
        conn = self.conns.pop(action.conn, None)
        if conn is None:
            return
        world = self.world
        world.say(self.name, f"closes {conn.client.name} ({int(action.code)} {action.reason})")
        conn.gw_open = False
        world.sched.after(
            world.net_latency.sample(world.rng_net),
            conn.client.on_closed,
            conn,
            int(action.code),
            action.reason,
        )
        self.later(0.0, self.handle, ev.Closed(conn.id, world.sched.now))

    # -- what clients and the bus do --------------------------------------------------------

    def accept(self, client: SimClient) -> SimConn:
        self._ids += 1
        conn = SimConn(f"{self.name}:{self._ids}", client, self)
        self.conns[conn.id] = conn
        self.handle(ev.Opened(conn.id, self.world.sched.now))
        return conn

    def receive(self, conn: SimConn, frame: Frame) -> None:
        """A frame from a client arrived."""
        if self.alive and conn.gw_open:
            self.handle(ev.Received(conn.id, json.dumps(frame), self.world.sched.now))

    def closed_by_client(self, conn: SimConn) -> None:
        """The gateway notices that a connection was cut."""
        if not self.alive or not conn.gw_open:
            return
        conn.gw_open = False
        self.conns.pop(conn.id, None)
        self.handle(ev.Closed(conn.id, self.world.sched.now))

    def on_bus(self, topic: str, seq: int, payload: str) -> None:
        if self.alive:
            self.handle(ev.BusMessage(topic, payload, self.world.sched.now))
