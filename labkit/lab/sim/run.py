"""Running simulations: one seeded run (:func:`run`) or thousands of them (:func:`explore`)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from labkit.core.presence import ONLINE, Transition
from labkit.core.records import Recording
from labkit.lab.checker import LostEpoch, Report, check
from labkit.lab.sim.client import SimClient
from labkit.lab.sim.clock import Scheduler
from labkit.lab.sim.gateway import SimGateway
from labkit.lab.sim.network import Latency, SimBus
from labkit.lab.sim.scenario import (
    CRASH,
    CUT,
    DATA_LOSS,
    MEMBERSHIP,
    PARTITION,
    POST,
    Event,
    SimConfig,
    make_schedule,
)
from labkit.lab.sim.store import SimStore
from labkit.lab.variants import design


class World:
    """Everything one run is made of: clock, random streams, network, store, nodes, records."""

    def __init__(self, seed: int, config: SimConfig) -> None:
        self.seed = seed
        self.config = config
        self.design = design(config.variant)
        self.sched = Scheduler()
        # Independent streams, so that one part's use of randomness never shifts another's.
        self.rng_net = random.Random(f"{seed}/net")
        self.rng_bus = random.Random(f"{seed}/bus")
        self.rng_clients = random.Random(f"{seed}/clients")
        self.net_latency = Latency.ms(config.net_delay_ms)
        self.store_latency = Latency.ms(config.store_delay_ms)
        self.rw_gap = Latency.ms(config.rw_gap_ms)
        self.faults: dict[str, int] = {}
        self.stats: dict[str, int] = {}
        self.log: list[str] = []
        self.recording = Recording()
        self.users = [f"u{i:0{len(str(config.users - 1))}d}" for i in range(config.users)]
        self.store = SimStore(
            self.users, config.channels, read_then_write=self.design.read_then_write
        )
        self.bus = SimBus(
            self.sched,
            self.rng_bus,
            Latency.ms(config.bus_delay_ms),
            self.faults,
            loss=config.bus_loss,
            dup=config.bus_dup,
            reorder=config.bus_reorder,
        )
        self.presence = self.design.make_presence(config.heartbeat_s)
        self.presence_log: list[Transition] = []
        self.gateways = [SimGateway(self, f"gw-{i + 1}") for i in range(config.gateways)]
        devices = config.devices
        self.clients = [
            SimClient(self, user, i * devices + d, d + 1)
            for i, user in enumerate(self.users)
            for d in range(devices)
        ]
        """User-major: ``u0#1``, ``u0#2``, …, ``u1#1``, … (each starts on its own gateway)."""

    # -- helpers the nodes use ----------------------------------------------------------------

    def say(self, who: str, text: str) -> None:
        """One log line, stamped with virtual time."""
        if self.config.log:
            self.log.append(f"[{self.sched.now:9.4f}] {who}: {text}")

    def count(self, kind: str, n: int = 1) -> None:
        """Count a fault (or a reconnect, which faults cause)."""
        self.faults[kind] = self.faults.get(kind, 0) + n

    def tally(self, kind: str, n: int = 1) -> None:
        """Count something that is not a fault (posts, joins and leaves)."""
        self.stats[kind] = self.stats.get(kind, 0) + n

    def on_presence(self, transitions: list[Transition]) -> None:
        for t in transitions:
            self.presence_log.append(t)
            self.say("presence", f"{t.user} {t.status}")

    # -- the run -------------------------------------------------------------------------------

    def run(self) -> None:
        config = self.config
        sched = self.sched
        schedule = make_schedule(config, self.seed)
        for gateway in self.gateways:
            gateway.start()
        for client, t in zip(self.clients, schedule.connects, strict=True):
            sched.at(t, client.connect)
        for event in schedule.events:
            sched.at(event.t, self._fire, event)
        sched.run(config.duration_s)

    def _fire(self, event: Event) -> None:
        if event.kind == POST:
            self.clients[event.target].post_random()
        elif event.kind == CRASH:
            gateway = self.gateways[event.target]
            if gateway.alive:
                self.count("crash")
                gateway.crash()
                self.sched.after(event.length_s, gateway.restart)
        elif event.kind == PARTITION:
            gateway = self.gateways[event.target]
            if gateway.name not in self.bus.partitioned:
                self.count("partition")
                self.bus.partition(gateway.name)
                self.say(gateway.name, f"cut off from the bus for {event.length_s:.2f} s")
                self.sched.after(event.length_s, self._heal, gateway)
        elif event.kind == CUT:
            client = self.clients[event.target]
            if client.conn is not None:
                self.count("cut")
                client.cut()
        elif event.kind == MEMBERSHIP:
            self.clients[event.target].change_membership()
        elif event.kind == DATA_LOSS:
            self._lose_data(event.target)

    def _lose_data(self, target: int) -> None:
        channels = self.config.channels
        lost = list(channels) if target >= len(channels) else [channels[target]]
        self.count("data_loss")
        epochs = self.store.lose(lost, self.sched.now)
        for channel, epoch in zip(lost, epochs, strict=True):
            self.say("store", f"lost #{channel}: new epoch {epoch}, head 0")

    def _heal(self, gateway: SimGateway) -> None:
        self.bus.heal(gateway.name)
        self.say(gateway.name, "back on the bus")
        gateway.heal()


@dataclass
class SimResult:
    """One run: what every client recorded, what the store holds, and the checker's verdict."""

    seed: int
    config: SimConfig
    recording: Recording
    store: dict[str, list[dict[str, Any]]]
    """Channel → the frames stored in its current epoch."""
    faults: dict[str, int]
    bus_messages: int
    deliveries: int
    """``message`` frames received by clients."""
    log: list[str]
    report: Report
    wall_s: float
    """Wall-clock seconds the simulation took (not counting the check)."""
    check_s: float = 0.0
    presence: list[Transition] = field(default_factory=list)
    """Every presence transition announced, in order."""
    stats: dict[str, int] = field(default_factory=dict)
    """Posts attempted and skipped, joins and leaves, gateway counters."""
    events: int = 0
    """Timers run by the scheduler."""
    epochs: dict[str, str] = field(default_factory=dict)
    """Channel → its current epoch (the one ``store`` holds)."""
    lost: list[LostEpoch] = field(default_factory=list)
    """The epochs data losses ended, with what the store held under each."""

    @property
    def ok(self) -> bool:
        return self.report.ok

    @property
    def deliveries_per_s(self) -> float:
        """Simulated deliveries per second of wall time."""
        return self.deliveries / self.wall_s if self.wall_s > 0 else float("inf")

    def presence_flaps(self) -> int:
        """How often a user was announced online again after having been announced offline."""
        return presence_flaps(self.presence)

    def replay_text(self, last: int | None = None) -> str:
        lines = self.log if last is None else self.log[-last:]
        return "\n".join(lines)


def _stats(world: World) -> dict[str, int]:
    stats = dict(world.stats)
    for gateway in world.gateways:
        for key, value in gateway.stats.items():
            stats[f"gateway_{key}"] = stats.get(f"gateway_{key}", 0) + value
    stats["bus_published"] = world.bus.published
    return dict(sorted(stats.items()))


def presence_flaps(transitions: Iterable[Transition]) -> int:
    """Count offline → online transitions of the same user."""
    offline: dict[str, None] = {}
    flaps = 0
    for t in transitions:
        if t.status == ONLINE:
            if t.user in offline:
                flaps += 1
                del offline[t.user]
        else:
            offline[t.user] = None
    return flaps


_DEFAULT = SimConfig()


def run(seed: int, config: SimConfig = _DEFAULT) -> SimResult:
    """Simulate ``config`` with ``seed`` and check the result. Same seed, same run."""
    world = World(seed, config)
    started = time.perf_counter()
    world.run()
    wall = time.perf_counter() - started
    store = world.store.snapshot()
    epochs = world.store.epoch_names()
    lost = list(world.store.lost)
    faults = dict(sorted(world.faults.items()))
    checked = time.perf_counter()
    report = check(
        world.recording,
        store,
        faults=faults,
        bus_messages=world.bus.messages,
        settle_s=config.settle_s,
        end_t=config.duration_s,
        epochs=epochs,
        lost=lost,
    )
    return SimResult(
        seed=seed,
        config=config,
        recording=world.recording,
        store=store,
        faults=faults,
        bus_messages=world.bus.messages,
        deliveries=sum(c.deliveries for c in world.clients),
        log=world.log,
        report=report,
        wall_s=wall,
        check_s=time.perf_counter() - checked,
        presence=world.presence_log,
        stats=_stats(world),
        events=world.sched.events,
        epochs=epochs,
        lost=lost,
    )


@dataclass
class ExploreSummary:
    """Many seeded runs, added up."""

    schedules: int = 0
    failed: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    messages_checked: int = 0
    posts_acked: int = 0
    deliveries: int = 0
    violations: dict[str, int] = field(default_factory=dict)
    """Violations by kind, over all schedules."""
    first_failing_seed: int | None = None
    first_failure: SimResult | None = None
    failing_seeds: list[int] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def render(self) -> str:
        lines = [
            f":valid? {'true' if self.ok else 'false'}",
            f":schedules {self.schedules}",
            f":failed {self.failed}",
            f":messages-checked {self.messages_checked}",
            f":posts-acked {self.posts_acked}",
            f":deliveries {self.deliveries}",
            ":faults {" + " ".join(f":{k} {v}" for k, v in sorted(self.faults.items())) + "}",
            ":violations {"
            + " ".join(f":{k} {v}" for k, v in sorted(self.violations.items()))
            + "}",
            f":wall-s {self.wall_s:.2f}",
        ]
        if self.first_failure is not None:
            lines.append(f":first-failing-seed {self.first_failing_seed}")
            lines.append(self.first_failure.report.render())
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()


def explore(seeds: Iterable[int], config_for_seed: Callable[[int], SimConfig]) -> ExploreSummary:
    """Run one simulation per seed (with the config the seed asks for) and add them up."""
    summary = ExploreSummary()
    started = time.perf_counter()
    for seed in seeds:
        result = run(seed, config_for_seed(seed))
        report = result.report
        summary.schedules += 1
        summary.messages_checked += report.messages_checked
        summary.posts_acked += report.posts_acked
        summary.deliveries += result.deliveries
        for kind, n in result.faults.items():
            summary.faults[kind] = summary.faults.get(kind, 0) + n
        if not report.ok:
            summary.failed += 1
            summary.failing_seeds.append(seed)
            for v in report.violations:
                summary.violations[v.kind] = summary.violations.get(v.kind, 0) + 1
            if summary.first_failure is None:
                summary.first_failing_seed = seed
                summary.first_failure = result
    summary.wall_s = time.perf_counter() - started
    return summary
