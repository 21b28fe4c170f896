"""What a simulated run does: its configuration and its seeded schedule of posts and faults.

The schedule is drawn up front from its own random stream (``seed/schedule``), so changing how
a gateway uses randomness never moves a crash or a post, and the same seed run with a weaker
design (``variant=...``) faces exactly the same posts and faults.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from labkit.lab.variants import check_variant

POST = "post"
CRASH = "crash"
PARTITION = "partition"
CUT = "cut"
MEMBERSHIP = "membership"
DATA_LOSS = "data_loss"


@dataclass
class SimConfig:
    """Everything a run can be tuned with; every field has a teaching-friendly default."""

    users: int = 5
    devices: int = 1
    """Clients per user (``u0#1``, ``u0#2``, …), each its own connection, possibly to another
    gateway, recorded under the same user. Posts, cuts and membership changes pick a random
    client; a join or leave made on one device reaches the user's others as ``joined``/``left``."""
    gateways: int = 3
    channels: tuple[str, ...] = ("general", "random", "eng")
    posts: int = 200
    """Posts over the run, by random users at random times."""
    bus_loss: float = 0.0
    """Probability that one subscriber's copy of a bus message is lost."""
    bus_dup: float = 0.0
    """Probability that one subscriber gets a bus message twice."""
    bus_reorder: float = 0.0
    """Probability that one subscriber's copy is held back (and may be overtaken)."""
    bus_delay_ms: tuple[float, float] = (1.0, 5.0)
    crashes: int = 0
    """Gateway crashes (each followed by a restart)."""
    partitions: int = 0
    """Times a gateway is cut off from the bus (and later healed)."""
    cuts: int = 0
    """Client connections cut (the client reconnects and resumes)."""
    variant: str | None = None
    """A weaker design from :data:`labkit.lab.variants.VARIANTS`, or None for the real one."""
    duration_s: float = 20.0
    """Virtual seconds; posts and faults stop ``quiet_s`` before the end."""
    membership_changes: int = 0
    """Joins and leaves by random users."""
    data_losses: int = 0
    """Times the store loses data, as a Redis restart without persistence does: one random
    channel's history, head and post ids (or, one time in ``len(channels) + 1``, every
    channel's) are gone, and the channel starts again at seq 1 under a new epoch. Gateways
    notice the new epoch at their next head check and send ``reset`` (``epoch_changed``)."""
    data_loss_from_s: float = 1.0
    """Data losses fall at random times from here to the end of the faults. Until its next
    head check a gateway can take a new epoch's message from the bus as the old one's (a bus
    message carries no epoch; history reads do), which two members can see as different
    messages under one seq when a channel is lost while its head is low (docs/reliability.md);
    a later start keeps that case out."""
    net_delay_ms: tuple[float, float] = (0.5, 2.0)
    """Client ↔ gateway latency."""
    store_delay_ms: tuple[float, float] = (0.1, 0.5)
    """Gateway ↔ store latency (one way)."""
    crash_down_s: tuple[float, float] = (0.5, 3.0)
    partition_s: tuple[float, float] = (0.3, 3.0)
    rw_gap_ms: tuple[float, float] = (2.0, 20.0)
    """``read_then_write_sequencer`` only: time between reading the head and writing it."""
    heartbeat_s: float = 10.0
    head_check_s: float = 0.5
    fill_page: int = 200
    backoff_s: tuple[float, float] = (0.05, 2.0)
    settle_s: float = 2.0
    """The checker's bound: an acked message reaches every connected member within this."""
    quiet_s: float = 3.0
    connect_within_s: float = 0.5
    """Clients start connecting at random times in ``[0, connect_within_s)``."""
    log: bool = True
    """Keep the human-readable log (turn off for the fastest benchmark runs)."""

    def __post_init__(self) -> None:
        check_variant(self.variant)
        if self.users < 1 or self.gateways < 1 or not self.channels or self.devices < 1:
            raise ValueError("a simulation needs at least one user, device, gateway and channel")
        if self.duration_s <= self.quiet_s + 1.0:
            raise ValueError(f"duration_s must exceed quiet_s + 1 s, got {self.duration_s!r}")
        for name in (
            "posts",
            "crashes",
            "partitions",
            "cuts",
            "membership_changes",
            "data_losses",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")


@dataclass(frozen=True, slots=True)
class Event:
    """One scheduled thing: ``kind`` at ``t`` on ``target``: a client index (user-major, so
    ``users × devices`` of them), a gateway index, or for a data loss a channel index (the
    number of channels meaning all of them)."""

    t: float
    kind: str
    target: int
    length_s: float = 0.0
    """How long a crash or partition lasts."""


@dataclass
class Schedule:
    connects: list[float] = field(default_factory=list)
    """When each client first connects, by client index."""
    events: list[Event] = field(default_factory=list)


def make_schedule(config: SimConfig, seed: int) -> Schedule:
    """Draw the run's posts, faults and first connections from ``seed``."""
    rng = random.Random(f"{seed}/schedule")
    start = 1.0
    end = config.duration_s - config.quiet_s
    fault_end = max(start, end - 1.0)
    sched = Schedule()
    clients = config.users * config.devices
    sched.connects = [rng.random() * config.connect_within_s for _ in range(clients)]

    def when(hi: float, lo: float = start) -> float:
        return lo + (hi - lo) * rng.random()

    def span(bounds: tuple[float, float]) -> float:
        lo, hi = bounds
        return lo + (hi - lo) * rng.random()

    events = sched.events
    for _ in range(config.posts):
        events.append(Event(when(end), POST, rng.randrange(clients)))
    for _ in range(config.crashes):
        events.append(
            Event(when(fault_end), CRASH, rng.randrange(config.gateways), span(config.crash_down_s))
        )
    for _ in range(config.partitions):
        events.append(
            Event(
                when(fault_end),
                PARTITION,
                rng.randrange(config.gateways),
                span(config.partition_s),
            )
        )
    for _ in range(config.cuts):
        events.append(Event(when(fault_end), CUT, rng.randrange(clients)))
    for _ in range(config.membership_changes):
        events.append(Event(when(fault_end), MEMBERSHIP, rng.randrange(clients)))
    for _ in range(config.data_losses):  # drawn last: adding them moves no other event
        events.append(
            Event(
                when(fault_end, min(fault_end, max(start, config.data_loss_from_s))),
                DATA_LOSS,
                rng.randrange(len(config.channels) + 1),
            )
        )
    events.sort(key=lambda e: (e.t, e.kind, e.target))
    return sched
