"""The simulator in scripted mode: a scenario's steps instead of random clients.

Theory of operation
-------------------
:func:`run_scripted` builds a :class:`~labkit.lab.sim.run.World` (seeded clock, network,
:class:`~labkit.lab.sim.store.SimStore`, :class:`~labkit.lab.sim.network.SimBus`, shared
presence and N :class:`~labkit.lab.sim.gateway.SimGateway`, each the real gateway machine) but
replaces its random clients with :class:`ScriptedClient`, which does only what the scenario
says: ``hello`` with a ``sim:<user>`` token and the ``last_seen``/``epochs`` its
:class:`~labkit.core.client_state.ClientState` keeps, then the frames of
:func:`~labkit.lab.difftest.scenario.client_frame`. It never pings, never retries and never
reconnects by itself; every frame it receives goes into the shared
:class:`~labkit.lab.difftest.observe.Transcript`.

After each step the scheduler runs until the system is *quiet*: no client has received a frame
for ``settle_s`` virtual seconds (the gateways' periodic ticks keep firing meanwhile, so a lost
tail is repaired by the head check before the next step begins). Named bus faults go through
the bus's ``fault_hook``: each is used by the first delivery it names.

The heartbeat period is long (:data:`HEARTBEAT_S`) so that the virtual time a scenario spends
never makes anyone offline or silent, just as the live run's wall-clock time does not.
"""

from __future__ import annotations

from typing import Any, Literal

from labkit.core.gateway.bus_payloads import topic_channel
from labkit.lab.difftest import scenario as sc
from labkit.lab.difftest.observe import Transcript
from labkit.lab.sim.client import SimClient
from labkit.lab.sim.conns import SimConn
from labkit.lab.sim.gateway import SimGateway
from labkit.lab.sim.run import World
from labkit.lab.sim.scenario import SimConfig
from labkit.lab.sim.store import SimStore

Frame = dict[str, Any]

HEARTBEAT_S = 60.0
"""Long enough that no scenario's virtual time reaches 3 × heartbeat (offline, close 4002)."""
HEAD_CHECK_S = 0.05
SETTLE_S = 0.5
"""Virtual seconds without a frame to any client that count as quiet."""
STEP_S = 0.05
MAX_STEP_S = 20.0
"""A step that is not quiet after this long is reported (something keeps sending)."""


class ScriptedClient(SimClient):
    """One scenario client (``conn``): sends what it is told and records what it receives."""

    def __init__(self, world: ScriptedWorld, user: str, name: str) -> None:
        super().__init__(world, user, 0)
        self.name = name
        self.script = world
        self.refused = False

    def open(self, gateway: int) -> None:
        """Connect to gateway ``gateway`` and say hello (once the connection is up)."""
        self.gateway_index = gateway
        self.refused = False
        self.connect()

    def _retry(self) -> None:
        self.refused = True  # a scripted client never reconnects by itself

    def on_closed(self, conn: SimConn, code: int, reason: str) -> None:
        if conn is not self.conn:
            return
        conn.client_open = False
        self.conn = None
        self.welcomed = False

    def on_message(self, conn: SimConn, frame: Frame) -> None:
        """A fanout write: recorded like any other frame (no fast path needed here)."""
        self.on_frame(conn, frame)

    def on_frame(self, conn: SimConn, frame: Frame) -> None:
        if conn is not self.conn or not conn.client_open:
            return
        self.script.heard()
        self.script.transcript.record(self.name, frame)
        state = self.state
        kind = frame.get("type")
        if kind == "welcome":
            self.welcomed = True
            channels = frame["channels"]
            state.on_welcome({ch: (i["head"], i["epoch"]) for ch, i in channels.items()})
        elif kind == "message":
            state.on_message(frame["channel"], frame["seq"])
        elif kind == "reset":
            state.on_reset(frame["channel"], frame["head"], frame["epoch"])
        elif kind == "joined":
            state.on_joined(frame["channel"], frame["head"], frame["epoch"])
        elif kind == "left":
            state.on_left(frame["channel"])


class ScriptedWorld(World):
    """A :class:`World` whose clients are scripted and whose bus faults are named."""

    def __init__(self, gateways: int, seed: int = 0) -> None:
        config = SimConfig(
            users=1,
            gateways=gateways,
            channels=sc.CHANNELS[:1],
            posts=0,
            heartbeat_s=HEARTBEAT_S,
            head_check_s=HEAD_CHECK_S,
            log=False,
        )
        super().__init__(seed, config)
        self.clients = []
        self.store = SimStore((), ())
        for channel, members in sc.INITIAL_MEMBERS.items():
            for user in members:
                self.store.join(user, channel)
        self.transcript = Transcript()
        self.scripted: dict[str, ScriptedClient] = {}
        self.named_faults: dict[tuple[str, int, str], Literal["drop", "dup"]] = {}
        self.bus.fault_hook = self._fault
        self.last_heard = 0.0

    def heard(self) -> None:
        self.last_heard = self.sched.now

    def _fault(self, topic: str, seq: int, subscriber: str) -> Literal["drop", "dup"] | None:
        channel = topic_channel(topic)
        if channel is None or seq <= 0:
            return None
        kind = self.named_faults.pop((channel, seq, subscriber), None)
        if kind is not None:
            self.transcript.fired.append((kind, channel, seq, subscriber))
        return kind

    def gateway(self, index: int) -> SimGateway:
        return self.gateways[index]

    # -- steps ------------------------------------------------------------------------------

    def apply(self, index: int, step: sc.Step) -> None:
        """Carry out step ``index`` (not waiting for its effects: see :meth:`settle`)."""
        if isinstance(step, sc.Connect):
            client = ScriptedClient(self, step.user, step.conn)
            self.scripted[step.conn] = client
            self.transcript.start(step.conn)
            client.open(step.gateway)
        elif isinstance(step, sc.Reconnect):
            self.scripted[step.conn].open(step.gateway)
        elif isinstance(step, sc.Cut):
            self.scripted[step.conn].cut()
        elif isinstance(step, sc.CrashGateway):
            if self.gateway(step.gateway).alive:
                self.gateway(step.gateway).crash()
        elif isinstance(step, sc.RestartGateway):
            if not self.gateway(step.gateway).alive:
                self.gateway(step.gateway).restart()
        elif isinstance(step, sc.DropNext | sc.DupNext):
            kind: Literal["drop", "dup"] = "drop" if isinstance(step, sc.DropNext) else "dup"
            self.named_faults[(step.channel, step.seq, self.gateway(step.gateway).name)] = kind
        else:
            frame = sc.client_frame(index, step)
            conn = sc.sender(step)
            if frame is not None and conn is not None:
                self.scripted[conn].send(frame)

    def settle(self) -> None:
        """Run virtual time until no client has heard anything for :data:`SETTLE_S`."""
        start = self.sched.now
        self.last_heard = start
        while self.sched.now - self.last_heard < SETTLE_S:
            if self.sched.now - start > MAX_STEP_S:
                raise RuntimeError(f"not quiet after {MAX_STEP_S:g} virtual seconds")
            self.sched.run(self.sched.now + STEP_S)


def run_scripted(scenario: sc.Scenario, seed: int = 0) -> Transcript:
    """Run ``scenario`` in the simulator; every frame each client received."""
    world = ScriptedWorld(scenario.gateways, seed)
    for gateway in world.gateways:
        gateway.start()
    world.settle()
    for index, step in enumerate(scenario.steps):
        world.apply(index, step)
        world.settle()
        world.transcript.mark()
    return world.transcript
