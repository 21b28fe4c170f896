"""The live executor: a scenario's steps on a real cluster, over real WebSockets.

Theory of operation
-------------------
:func:`run_live` starts a :class:`labkit.Cluster` (embedded fakeredis, or a real Redis by URL)
with the memberships of :data:`~labkit.lab.difftest.scenario.INITIAL_MEMBERS`, and plays each
step with :class:`LiveClient`, a bare protocol client: it sends exactly the frames of
:func:`~labkit.lab.difftest.scenario.client_frame` (the simulator's scripted clients send the
same), reads every frame in the background into the shared
:class:`~labkit.lab.difftest.observe.Transcript`, and keeps a
:class:`~labkit.core.client_state.ClientState` for the ``hello`` of a ``Reconnect``. It never
pings, retries or reconnects by itself.

*Quiet*, live: after each step, wait until no client has received a frame for ``quiet_s`` and
at least two head-check periods have passed (so a lost tail has been looked for), bounded by
:data:`MAX_STEP_S`. The gateways run with a short head check and a long heartbeat (the same
values the simulator uses), so repairs are quick and nobody goes offline during a scenario.

Waiting ~100 ms per step makes a few hundred scenarios take minutes, so :func:`run_live` takes
an optional ``expect``: how many frames each client had after each step in another run of the
same scenario (the simulator's :attr:`~labkit.lab.difftest.observe.Transcript.marks`). Then a
step waits until every client has received at least as many frames *during the step* as there
(or :data:`EXPECT_WAIT_S` passed), and then for ``quiet_s`` of silence, which catches frames
beyond the expected ones. The hint only decides how long to wait, never what is compared: a
missing frame costs one :data:`EXPECT_WAIT_S` and shows up in the comparison; an extra one
arrives within the quiet window (or, late, still before the end: the last step waits
:data:`FINAL_QUIET_S`).

Named bus faults: :class:`NamedBusFaults` is one of the cluster's ``gateway_hooks``; it wraps
each gateway's ``bus_filter`` and drops, or delivers twice, exactly the named
``(channel, seq, gateway)`` delivery, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any, Literal

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from labkit.core.client_state import ClientState
from labkit.lab.cluster import Cluster
from labkit.lab.difftest import scenario as sc
from labkit.lab.difftest.observe import Frame, Transcript
from labkit.lab.sim.scripted import HEAD_CHECK_S, HEARTBEAT_S
from labkit.server.gateway import Gateway, GatewayConfig
from labkit.server.redis.bus import topic_channel

Deliver = Callable[[str, str], None]
BusFilter = Callable[[str, str, Deliver], None]

QUIET_S = 0.1
"""Wall-clock seconds without a frame to any client that count as quiet (no ``expect``)."""
HINTED_QUIET_S = 0.02
"""The same once the expected frames have arrived."""
FINAL_QUIET_S = 0.1
"""After the last step, always wait for this much quiet, hints or not: a straggler there would
be missed by the comparison (two head-check periods, the time a repair takes)."""
EXPECT_WAIT_S = 1.0
"""How long a step waits for the frames another run says are coming (repairs take < 0.2 s)."""
MAX_STEP_S = 10.0


class NamedBusFaults:
    """A gateway hook that drops or duplicates named deliveries (see the module docstring)."""

    def __init__(self, transcript: Transcript) -> None:
        self.pending: dict[tuple[str, int, str], Literal["drop", "dup"]] = {}
        self.transcript = transcript
        self._previous: dict[str, BusFilter | None] = {}

    def name(self, channel: str, seq: int, gateway: str, kind: Literal["drop", "dup"]) -> None:
        self.pending[(channel, seq, gateway)] = kind

    def install(self, gateway: Gateway) -> None:
        previous = gateway.bus_filter
        self._previous[gateway.name] = previous
        name = gateway.name

        def forward(topic: str, payload: str, deliver: Deliver) -> None:
            if previous is not None:
                previous(topic, payload, deliver)
            else:
                deliver(topic, payload)

        def bus_filter(topic: str, payload: str, deliver: Deliver) -> None:
            kind = self._decide(name, topic, payload)
            if kind != "drop":
                forward(topic, payload, deliver)
            if kind == "dup":
                forward(topic, payload, deliver)

        gateway.bus_filter = bus_filter

    def uninstall(self, gateway: Gateway) -> None:
        gateway.bus_filter = self._previous.pop(gateway.name, None)

    def _decide(self, gateway: str, topic: str, payload: str) -> Literal["drop", "dup"] | None:
        channel = topic_channel(topic)
        if channel is None or not self.pending:
            return None
        with contextlib.suppress(ValueError, AttributeError):
            frame = json.loads(payload)
            seq = frame.get("seq")
            if frame.get("type") == "message" and isinstance(seq, int):
                kind = self.pending.pop((channel, seq, gateway), None)
                if kind is not None:
                    self.transcript.fired.append((kind, channel, seq, gateway))
                return kind
        return None


class LiveClient:
    """One scenario client (``conn``) over a real WebSocket."""

    def __init__(self, run: LiveRun, user: str, name: str) -> None:
        self.run = run
        self.user = user
        self.name = name
        self.state = ClientState()
        self.ws: ClientConnection | None = None
        self.reader: asyncio.Task[None] | None = None

    async def open(self, url: str) -> None:
        """Connect, say hello with what this client has seen, and wait for the answer."""
        await self.close()
        ws = await connect(
            url, compression=None, proxy=None, open_timeout=5, ping_interval=None, max_size=None
        )
        self.ws = ws
        answered = asyncio.Event()
        self.reader = asyncio.create_task(self._read(ws, answered))
        last_seen, epochs = self.state.hello_fields()
        token = self.run.cluster.token(self.user)
        hello = {"type": "hello", "token": token, "last_seen": last_seen, "epochs": epochs}
        await ws.send(json.dumps(hello))
        async with asyncio.timeout(MAX_STEP_S):
            await answered.wait()

    async def _read(self, ws: ClientConnection, answered: asyncio.Event) -> None:
        try:
            async for data in ws:
                frame = json.loads(data)
                self.run.heard()
                self.run.transcript.record(self.name, frame)
                self._track(frame)
                answered.set()
        except ConnectionClosed:
            pass
        finally:
            answered.set()

    def _track(self, frame: Frame) -> None:
        state = self.state
        kind = frame.get("type")
        if kind == "welcome":
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

    async def send(self, frame: dict[str, object]) -> None:
        if self.ws is not None:
            with contextlib.suppress(ConnectionClosed):
                await self.ws.send(json.dumps(frame))

    async def cut(self) -> None:
        """Drop the connection without a close frame (as a network failure does)."""
        if self.ws is not None and self.ws.transport is not None:
            self.ws.transport.abort()
        await self.close()

    async def close(self) -> None:
        ws, reader = self.ws, self.reader
        self.ws = self.reader = None
        if ws is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await ws.close()
        if reader is not None:
            with contextlib.suppress(Exception):
                await reader


class LiveRun:
    """One scenario on one live cluster."""

    def __init__(self, cluster: Cluster, faults: NamedBusFaults, *, quiet_s: float) -> None:
        self.cluster = cluster
        self.faults = faults
        self.transcript = faults.transcript
        self.quiet_s = quiet_s
        self.clients: dict[str, LiveClient] = {}
        self.last_heard = 0.0

    def heard(self) -> None:
        self.last_heard = asyncio.get_running_loop().time()

    async def apply(self, index: int, step: sc.Step) -> None:
        """Carry out step ``index`` (not waiting for its effects: see :meth:`settle`)."""
        cluster = self.cluster
        if isinstance(step, sc.Connect):
            client = self.clients[step.conn] = LiveClient(self, step.user, step.conn)
            self.transcript.start(step.conn)
            await client.open(cluster.urls[step.gateway])
        elif isinstance(step, sc.Reconnect):
            await self.clients[step.conn].open(cluster.urls[step.gateway])
        elif isinstance(step, sc.Cut):
            await self.clients[step.conn].cut()
        elif isinstance(step, sc.CrashGateway):
            if cluster.gateways[step.gateway] is not None:
                await cluster.stop_gateway(step.gateway)
        elif isinstance(step, sc.RestartGateway):
            if cluster.gateways[step.gateway] is None:
                await cluster.restart_gateway(step.gateway)
        elif isinstance(step, sc.DropNext | sc.DupNext):
            kind: Literal["drop", "dup"] = "drop" if isinstance(step, sc.DropNext) else "dup"
            self.faults.name(step.channel, step.seq, f"gw-{step.gateway + 1}", kind)
        else:
            frame = sc.client_frame(index, step)
            conn = sc.sender(step)
            if frame is not None and conn is not None:
                await self.clients[conn].send(frame)

    async def settle(
        self, quiet_s: float | None = None, expect: dict[str, int] | None = None
    ) -> None:
        """Wait until no client has heard anything for ``quiet_s`` (and two head checks), or,
        with ``expect``, until each client has that many frames and then ``quiet_s``."""
        quiet = self.quiet_s if quiet_s is None else quiet_s
        loop = asyncio.get_running_loop()
        start = loop.time()
        self.last_heard = start
        least = 2 * HEAD_CHECK_S
        if expect is not None:
            await self._until_counts(expect)
            least = 0.0
        while True:
            now = loop.time()
            if now - self.last_heard >= quiet and now - start >= least:
                return
            if now - start > MAX_STEP_S:
                raise TimeoutError(f"not quiet after {MAX_STEP_S:g} s")
            await asyncio.sleep(quiet / 4)

    async def _until_counts(self, expect: dict[str, int]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + EXPECT_WAIT_S
        while loop.time() < deadline:
            counts = self.transcript.counts()
            if all(counts.get(conn, 0) >= n for conn, n in expect.items()):
                return
            await asyncio.sleep(0.002)


def live_config() -> GatewayConfig:
    """Short head checks (quick repairs), a long heartbeat (nobody goes offline or silent)."""
    return GatewayConfig(heartbeat_s=HEARTBEAT_S, head_check_s=HEAD_CHECK_S)


async def run_live(
    scenario: sc.Scenario,
    *,
    redis_url: str | None = None,
    quiet_s: float | None = None,
    expect: list[dict[str, int]] | None = None,
    variant: str | None = None,
) -> Transcript:
    """Run ``scenario`` on a live cluster; every frame each client received.

    ``redis_url`` must name an empty database: the scenario's memberships are created there.
    ``expect`` is another run's :attr:`~labkit.lab.difftest.observe.Transcript.marks` (see the
    module docstring): it shortens the waits, never changes what is compared. ``variant``
    runs one of the weaker designs of :mod:`labkit.lab.weak` instead of the real one (to show
    that a comparison catches what it gets wrong).
    """
    if quiet_s is None:
        quiet_s = QUIET_S if expect is None else HINTED_QUIET_S
    transcript = Transcript()
    faults = NamedBusFaults(transcript)
    cluster = Cluster(
        gateways=scenario.gateways,
        redis_url=redis_url,
        seed_demo=False,
        config=live_config(),
        gateway_hooks=[faults],
        variant=variant,
    )
    run = LiveRun(cluster, faults, quiet_s=quiet_s)
    async with cluster:
        assert cluster.directory is not None
        for channel, members in sc.INITIAL_MEMBERS.items():
            for user in members:
                await cluster.directory.join(user, channel)
        for index, step in enumerate(scenario.steps):
            before = transcript.counts()
            await run.apply(index, step)
            if isinstance(step, sc.DropNext | sc.DupNext):
                pass  # nothing happens until a later post: nothing to wait for
            elif expect is None:
                await run.settle()
            else:
                # As many new frames as the other run got in this step, so that one missing
                # frame delays this step only.
                previous = expect[index - 1] if index else {}
                await run.settle(
                    expect={
                        conn: before.get(conn, 0) + n - previous.get(conn, 0)
                        for conn, n in expect[index].items()
                    }
                )
            transcript.mark()
        await run.settle(FINAL_QUIET_S)
        for client in run.clients.values():
            await client.close()
    return transcript


def run_live_sync(scenario: sc.Scenario, **options: Any) -> Transcript:
    """:func:`run_live` from synchronous code (a Hypothesis test, a script)."""
    return asyncio.run(run_live(scenario, **options))
