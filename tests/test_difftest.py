"""Differential tests: the same scenarios through the simulator and through a live cluster.

The simulator's gateways and the live gateways drive one sans-I/O gateway machine, so every
scenario of client actions must leave every client with the same observations
(:mod:`labkit.lab.difftest.observe`). Hypothesis generates the scenarios from a model of the
system (who is connected where, who is a member of what, each channel's head), so each step is
one a client could take, and it shrinks a failure to a short scenario printed as Python.

``LABKIT_DIFFTEST_EXAMPLES`` sets the number of fakeredis examples (200 by default;
``make difftest`` runs 2,000) and ``LABKIT_DIFFTEST_REAL_EXAMPLES`` those on a private
``redis-server`` (20 by default).
"""

from __future__ import annotations

import asyncio
import os
import random
from dataclasses import dataclass, field
from typing import Any

import pytest
from conftest import open_backend
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labkit.lab.difftest import Transcript, compare, differences, observe
from labkit.lab.difftest import scenario as sc
from labkit.lab.difftest.live import run_live, run_live_sync
from labkit.lab.difftest.scenario import (
    Connect,
    CrashGateway,
    Cut,
    DropNext,
    DupNext,
    History,
    Join,
    Leave,
    Post,
    PresenceSub,
    Reconnect,
    RestartGateway,
    Scenario,
    Typing,
)
from labkit.lab.sim.clock import Scheduler
from labkit.lab.sim.network import Latency, SimBus
from labkit.lab.sim.scripted import ScriptedWorld, run_scripted
from labkit.server.redis_server import RedisServer

EXAMPLES = int(os.environ.get("LABKIT_DIFFTEST_EXAMPLES", "200"))
REAL_EXAMPLES = int(os.environ.get("LABKIT_DIFFTEST_REAL_EXAMPLES", "20"))
MAX_STEPS = 14


# --------------------------------------------------------------------------- generating scenarios


@dataclass
class Model:
    """What the generator knows of the system, so that it only takes steps a client could."""

    gateways: int
    alive: list[bool] = field(default_factory=list)
    conns: dict[str, tuple[str, int, bool]] = field(default_factory=dict)
    """conn → (user, gateway, connected)."""
    members: dict[str, set[str]] = field(default_factory=dict)
    heads: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.alive = [True] * self.gateways
        self.members = {ch: set(sc.INITIAL_MEMBERS.get(ch, ())) for ch in sc.CHANNELS}
        self.heads = dict.fromkeys(sc.CHANNELS, 0)

    def connected(self) -> list[str]:
        return [c for c, (_, _, up) in self.conns.items() if up]

    def disconnected(self) -> list[str]:
        return [c for c, (_, _, up) in self.conns.items() if not up]

    def up(self) -> list[int]:
        return [i for i, alive in enumerate(self.alive) if alive]

    def down(self) -> list[int]:
        return [i for i, alive in enumerate(self.alive) if not alive]

    def new_conns(self) -> list[tuple[str, str]]:
        """(conn, user) pairs not yet used: two devices per user."""
        return [
            (f"{user[0]}{device}", user)
            for user in sc.USERS
            for device in (1, 2)
            if f"{user[0]}{device}" not in self.conns
        ]

    def user(self, conn: str) -> str:
        return self.conns[conn][0]


KINDS = (
    ("connect", 2),
    ("post", 5),
    ("join", 2),
    ("leave", 1),
    ("history", 1),
    ("cut", 2),
    ("reconnect", 3),
    ("drop", 2),
    ("dup", 2),
    ("presence", 1),
    ("typing", 1),
    ("crash", 1),
    ("restart", 3),
)
"""Step kinds and their weights, ordered so that shrinking (towards the first kinds) keeps the
plainest steps."""


def _possible(model: Model, kind: str) -> bool:
    if kind == "connect":
        return bool(model.new_conns()) and bool(model.up())
    if kind in ("post", "join", "leave", "history", "cut", "presence", "typing"):
        return bool(model.connected())
    if kind == "reconnect":
        return bool(model.disconnected()) and bool(model.up())
    if kind == "crash":
        return len(model.up()) > 1
    if kind == "restart":
        return bool(model.down())
    return bool(_fault_targets(model))  # drop, dup


def _fault_targets(model: Model) -> list[tuple[str, str, int]]:
    """(poster, channel, gateway) where a post by ``poster`` would cross the bus to a member's
    connection on ``gateway``: the places where a named bus fault would fire."""
    targets = []
    for poster in model.connected():
        for channel in sc.CHANNELS:
            members = model.members[channel]
            if model.user(poster) not in members:
                continue
            for conn in model.connected():
                user, gateway, _ = model.conns[conn]
                if user in members and (poster, channel, gateway) not in targets:
                    targets.append((poster, channel, gateway))
    return targets


def _step(draw: Any, model: Model, index: int, kind: str) -> sc.Step:
    channel = draw(st.sampled_from(sc.CHANNELS))
    if kind == "connect":
        conn, user = draw(st.sampled_from(model.new_conns()))
        gateway = draw(st.sampled_from(model.up()))
        model.conns[conn] = (user, gateway, True)
        return Connect(conn, user, gateway)
    if kind == "reconnect":
        conn = draw(st.sampled_from(model.disconnected()))
        gateway = draw(st.sampled_from(model.up()))
        model.conns[conn] = (model.user(conn), gateway, True)
        return Reconnect(conn, gateway)
    if kind in ("crash", "restart"):
        gateway = draw(st.sampled_from(model.up() if kind == "crash" else model.down()))
        model.alive[gateway] = kind == "restart"
        if kind == "restart":
            return RestartGateway(gateway)
        for conn, (user, at, _) in list(model.conns.items()):
            if at == gateway:
                model.conns[conn] = (user, at, False)
        return CrashGateway(gateway)
    if kind in ("drop", "dup"):
        _, channel, gateway = draw(st.sampled_from(_fault_targets(model)))
        seq = model.heads[channel] + 1  # the next seq posted in that channel
        return (DropNext if kind == "drop" else DupNext)(channel, seq, gateway)
    conn = draw(st.sampled_from(model.connected()))
    user = model.user(conn)
    if kind == "post":
        if user in model.members[channel]:
            model.heads[channel] += 1
        return Post(conn, channel, f"t{index}")
    if kind == "join":
        model.members[channel].add(user)
        return Join(conn, channel)
    if kind == "leave":
        model.members[channel].discard(user)
        return Leave(conn, channel)
    if kind == "history":
        after = draw(st.integers(0, model.heads[channel] + 1))
        return History(conn, channel, after, draw(st.integers(1, 4)))
    if kind == "cut":
        model.conns[conn] = (user, model.conns[conn][1], False)
        return Cut(conn)
    if kind == "presence":
        users = draw(st.lists(st.sampled_from(sc.USERS), min_size=1, max_size=3, unique=True))
        return PresenceSub(conn, tuple(users))
    return Typing(conn, channel)


@st.composite
def scenarios(draw: Any, max_steps: int = MAX_STEPS) -> Scenario:
    """A scenario of steps each valid in the model's state when it is taken."""
    model = Model(draw(st.integers(2, 3)))
    steps: list[sc.Step] = []
    length = draw(st.integers(3, max_steps))
    while len(steps) < length:
        kinds = [k for k, weight in KINDS if _possible(model, k) for _ in range(weight)]
        if not model.connected() and "connect" in kinds:
            kind = "connect"  # nothing else is interesting yet
        else:
            kind = draw(st.sampled_from(kinds))
        step = _step(draw, model, len(steps), kind)
        steps.append(step)
        if isinstance(step, DropNext | DupNext) and draw(st.booleans()):
            # Usually the post the fault is named for comes next (else maybe later, or never).
            poster = draw(
                st.sampled_from([p for p, ch, _ in _fault_targets(model) if ch == step.channel])
            )
            model.heads[step.channel] += 1
            steps.append(Post(poster, step.channel, f"t{len(steps)}"))
    return Scenario(model.gateways, tuple(steps))


# --------------------------------------------------------------------------- running both sides


def assert_agree(scenario: Scenario, live: Transcript, sim: Transcript) -> None:
    diffs = compare(sim, live)
    assert not diffs, (
        "the live cluster (got) disagrees with the simulator (expected) on\n"
        + scenario.render()
        + "\n\n"
        + "\n".join(diffs)
    )


def check_fake(scenario: Scenario) -> Transcript:
    sim = run_scripted(scenario)
    live = run_live_sync(scenario, expect=sim.marks)
    assert_agree(scenario, live, sim)
    return sim


def check_real(scenario: Scenario, server: RedisServer) -> None:
    async def live(expect: list[dict[str, int]]) -> Transcript:
        async with open_backend("real", server) as backend:  # an empty database of our own
            return await run_live(scenario, redis_url=backend.url, expect=expect)

    sim = run_scripted(scenario)
    assert_agree(scenario, asyncio.run(live(sim.marks)), sim)


SETTINGS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=EXAMPLES,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@SETTINGS
@given(scenarios())
def test_live_cluster_agrees_with_the_simulator(scenario: Scenario) -> None:
    check_fake(scenario)


@pytest.mark.real_redis
@settings(SETTINGS, max_examples=REAL_EXAMPLES)
@given(scenario=scenarios())
def test_live_cluster_on_redis_server_agrees_with_the_simulator(
    real_redis: RedisServer, scenario: Scenario
) -> None:
    check_real(scenario, real_redis)


# --------------------------------------------------------------------------- fixed scenarios

REPAIRS = Scenario(
    gateways=2,
    steps=(
        Connect("a1", "alice", 0),
        Connect("b1", "bob", 1),
        Connect("b2", "bob", 0),
        Post("a1", "general", "hi"),
        DropNext("general", 2, 1),
        Post("a1", "general", "lost tail at gw-2"),
        DupNext("general", 3, 1),
        Post("b2", "general", "twice at gw-2"),
        Join("b1", "design"),
        Post("a1", "design", "not a member"),
        Post("b1", "design", "d1"),
        Cut("b1"),
        Post("a1", "general", "while b1 is away"),
        Reconnect("b1", 0),
        PresenceSub("a1", ("bob", "dave")),
        History("a1", "general", 1, 2),
        Leave("b2", "random"),
        Typing("b2", "random"),
        CrashGateway(1),
        Post("a1", "general", "gw-2 is down"),
        RestartGateway(1),
        Reconnect("b1", 1),
    ),
)
"""Every step kind once: a lost tail, a duplicate, a gap-fill after a cut and a crash."""


def test_a_scenario_renders_as_python_that_rebuilds_it() -> None:
    namespace: dict[str, Any] = {name: getattr(sc, name) for name in sc.__all__}
    assert eval(REPAIRS.render(), namespace) == REPAIRS  # our own text


def test_the_simulator_repairs_named_faults_and_resumes_after_a_cut() -> None:
    sim = run_scripted(REPAIRS)
    assert sim.fired == [("drop", "general", 2, "gw-2"), ("dup", "general", 3, "gw-2")]
    seen = observe(sim)
    b1 = seen["b1"]["channels"]["general"]
    assert [e[1] for e in b1 if e[0] == "message"] == [1, 2, 3, 4, 5]
    assert ("welcome", 4) in b1  # resumed from last_seen 3: seq 4 came by gap-fill
    assert seen["a1"]["presence"] == {"bob": "online", "dave": "offline"}
    assert ("error", "not_member", "s9") in seen["a1"]["replies"]
    assert (
        "history",
        "s15",
        "general",
        4,
        ((2, "alice", "lost tail at gw-2"), (3, "bob", "twice at gw-2")),
    ) in seen["a1"]["replies"]
    assert len(sim.marks) == len(REPAIRS.steps)


def test_a_fixed_scenario_agrees_on_fakeredis() -> None:
    sim = check_fake(REPAIRS)
    assert sim.fired  # the faults fired, on both sides (compare checks they match)


def test_live_without_hints_waits_for_quiet_and_agrees() -> None:
    short = Scenario(2, REPAIRS.steps[:8])
    assert_agree(short, run_live_sync(short), run_scripted(short))


LEFT = Scenario(
    gateways=2,
    steps=(
        Connect("a1", "alice", 0),
        Connect("b1", "bob", 1),
        Cut("b1"),
        PresenceSub("a1", ("bob",)),
    ),
)
"""Bob's only connection drops: he stays online until his heartbeats are 3 periods old."""


@pytest.mark.parametrize(
    ("variant", "scenario", "where"),
    [("no_bus_repair", REPAIRS, "b1 #general"), ("flapping_presence", LEFT, "a1 presence")],
    ids=["no_bus_repair", "flapping_presence"],
)
def test_a_weaker_live_design_disagrees_with_the_simulator(
    variant: str, scenario: Scenario, where: str
) -> None:
    """The comparison has teeth: a live cluster that never repairs a lost tail, or that
    announces offline at a disconnect, shows what the simulator's real design does not."""
    sim = run_scripted(scenario)
    diffs = compare(sim, run_live_sync(scenario, expect=sim.marks, variant=variant))
    assert diffs and diffs[0].startswith(where), diffs


def test_compare_reports_a_missing_message_and_a_different_fault() -> None:
    sim = run_scripted(REPAIRS)
    broken = Transcript(
        frames={conn: list(frames) for conn, frames in sim.frames.items()}, fired=sim.fired[:1]
    )
    index = next(i for i, f in enumerate(broken.frames["b1"]) if f.get("seq") == 2)
    del broken.frames["b1"][index]
    diffs = compare(sim, broken)
    assert len(diffs) == 2
    assert diffs[0].startswith("b1 #general:")
    assert "named bus faults fired" in diffs[1]
    assert differences(observe(sim), observe(sim)) == []


def test_the_bus_fault_hook_drops_and_duplicates_exactly_the_named_delivery() -> None:
    sched = Scheduler()
    faults: dict[str, int] = {}
    asked: list[tuple[str, int, str]] = []

    def hook(topic: str, seq: int, name: str) -> Any:
        asked.append((topic, seq, name))
        return {2: "drop", 3: "dup"}.get(seq) if name == "gw-2" else None

    bus = SimBus(sched, random.Random(1), Latency.ms((1, 2)), faults, fault_hook=hook)
    got: dict[str, list[int]] = {"gw-1": [], "gw-2": []}

    @dataclass(frozen=True)
    class Sub:
        name: str

        def on_bus(self, channel: str, seq: int, frame: Any) -> None:
            got[self.name].append(seq)

    for name in got:
        bus.subscribe(Sub(name), "t")
    for seq in (1, 2, 3, 4):
        bus.publish("t", seq, {})
    sched.run(1.0)
    assert got == {"gw-1": [1, 2, 3, 4], "gw-2": [1, 3, 3, 4]}
    assert faults == {"bus_loss": 1, "bus_dup": 1}
    assert len(asked) == 8


def test_the_scripted_world_starts_with_the_scenario_memberships() -> None:
    world = ScriptedWorld(2)
    for channel, users in sc.INITIAL_MEMBERS.items():
        assert sorted(world.store.members[channel]) == sorted(users)
    assert "design" not in world.store.members
