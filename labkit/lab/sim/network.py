"""The simulated network: latency distributions, FIFO links, and a lossy pub/sub bus.

Theory of operation
-------------------
Nothing here touches a socket. A *link* is a FIFO pipe with a latency distribution: a frame sent
at ``now`` arrives at ``max(now + latency, arrival of the previous frame)``, because a
WebSocket or a Redis connection is one TCP stream and TCP keeps order. The :class:`SimBus` is
Redis pub/sub as a gateway sees it: a message published on a channel's topic reaches every
gateway subscribed *at that moment*, at most once, in order, unless a fault says otherwise:

- **loss** (``bus_loss``): the copy for one subscriber vanishes;
- **duplication** (``bus_dup``): one subscriber gets it twice;
- **reordering** (``bus_reorder``): the copy for one subscriber is held back (jitter) and may
  overtake, or be overtaken by, later messages;
- **partition**: a gateway is cut off from the bus; whatever would reach it meanwhile is lost;
- **named faults** (``fault_hook``): a function of ``(topic, seq, subscriber name)`` returning
  ``"drop"``, ``"dup"`` or None decides one delivery exactly, before any random fault is drawn,
  so a scripted scenario can say "seq 4 of #general never reaches gw-2" (and a differential
  test can do the very same thing to a live cluster).

Every fault is counted in the shared ``faults`` dict, so a report can say what the run survived.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from labkit.core.gateway.bus_payloads import CHANNEL_PREFIX
from labkit.lab.sim.clock import Scheduler


@dataclass(frozen=True, slots=True)
class Latency:
    """A uniform latency distribution, in seconds."""

    lo_s: float
    hi_s: float

    @classmethod
    def ms(cls, bounds: tuple[float, float]) -> Latency:
        lo, hi = bounds
        if lo < 0 or hi < lo:
            raise ValueError(f"latency bounds must satisfy 0 <= lo <= hi, got {bounds!r} ms")
        return cls(lo / 1000.0, hi / 1000.0)

    def sample(self, rng: random.Random) -> float:
        return self.lo_s + (self.hi_s - self.lo_s) * rng.random()


class Link:
    """A FIFO pipe: arrivals never overtake each other."""

    __slots__ = ("last", "latency", "rng")

    def __init__(self, latency: Latency, rng: random.Random) -> None:
        self.latency = latency
        self.rng = rng
        self.last = 0.0

    def arrival(self, now: float) -> float:
        """When a frame sent at ``now`` arrives."""
        t = now + self.latency.sample(self.rng)
        if t < self.last:
            t = self.last
        self.last = t
        return t


FaultHook = Callable[[str, int, str], Literal["drop", "dup"] | None]
"""``hook(topic, seq, subscriber_name)``: what happens to one delivery (None: nothing named)."""


class Subscriber(Protocol):
    """What the bus delivers to (a simulated gateway)."""

    @property
    def name(self) -> str: ...

    def on_bus(self, channel: str, seq: int, frame: Any) -> None: ...


class SimBus:
    """Topic-per-channel pub/sub, at most once, with injected faults."""

    def __init__(
        self,
        sched: Scheduler,
        rng: random.Random,
        delay: Latency,
        faults: dict[str, int],
        *,
        loss: float = 0.0,
        dup: float = 0.0,
        reorder: float = 0.0,
        fault_hook: FaultHook | None = None,
    ) -> None:
        for name, value in (("bus_loss", loss), ("bus_dup", dup), ("bus_reorder", reorder)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
        self.sched = sched
        self.rng = rng
        self.delay = delay
        self.faults = faults
        self.loss = loss
        self.dup = dup
        self.reorder = reorder
        self.fault_hook = fault_hook
        """Named faults, asked first for every delivery (see the module docstring)."""
        self.topics: dict[str, dict[Subscriber, None]] = {}
        self.partitioned: dict[str, None] = {}
        """Names of the gateways currently cut off from the bus."""
        self.messages = 0
        """Copies of channel messages carried to subscribers (duplicates included, losses
        not); presence and membership traffic is counted in ``control_messages``."""
        self.control_messages = 0
        self.published = 0
        self._links: dict[str, float] = {}
        self._control_links: dict[str, float] = {}
        self.rng_control = random.Random(rng.getrandbits(64))

    # -- subscriptions ----------------------------------------------------------------------

    def subscribe(self, sub: Subscriber, channel: str) -> None:
        self.topics.setdefault(channel, {})[sub] = None

    def unsubscribe(self, sub: Subscriber, channel: str) -> None:
        subs = self.topics.get(channel)
        if subs is not None:
            subs.pop(sub, None)

    def is_subscribed(self, sub: Subscriber, channel: str) -> bool:
        subs = self.topics.get(channel)
        return subs is not None and sub in subs

    def drop_subscriber(self, sub: Subscriber) -> None:
        """The subscriber's connection died (its gateway crashed): forget its topics."""
        for subs in self.topics.values():
            subs.pop(sub, None)

    # -- partitions -------------------------------------------------------------------------

    def partition(self, name: str) -> None:
        self.partitioned[name] = None

    def heal(self, name: str) -> None:
        self.partitioned.pop(name, None)

    # -- traffic ----------------------------------------------------------------------------

    def publish(self, channel: str, seq: int, frame: Any) -> None:
        """Publish a payload to every gateway subscribed to topic ``channel`` right now."""
        if channel.startswith(CHANNEL_PREFIX):
            self.published += 1
        subs = self.topics.get(channel)
        if not subs:
            return
        # Presence and membership traffic draws from its own random stream and has its own
        # FIFO links, so it never shifts when channel messages arrive: a presence variant then
        # delivers exactly the same messages as the real design.
        control = not channel.startswith(CHANNEL_PREFIX)
        rng = self.rng_control if control else self.rng
        links = self._control_links if control else self._links
        now = self.sched.now
        faults = self.faults
        hook = self.fault_hook
        for sub in list(subs):
            named = hook(channel, seq, sub.name) if hook is not None else None
            if named == "drop" or (self.loss and rng.random() < self.loss):
                faults["bus_loss"] = faults.get("bus_loss", 0) + 1
                continue
            copies = 1
            if named == "dup" or (self.dup and rng.random() < self.dup):
                faults["bus_dup"] = faults.get("bus_dup", 0) + 1
                copies = 2
            for _ in range(copies):
                t = now + self.delay.sample(rng)
                if self.reorder and rng.random() < self.reorder:
                    # Held back: jitter up to ten times the largest normal delay, off the FIFO.
                    faults["bus_reorder"] = faults.get("bus_reorder", 0) + 1
                    t += self.delay.hi_s * 10.0 * rng.random()
                else:
                    last = links.get(sub.name, 0.0)
                    if t < last:
                        t = last
                    links[sub.name] = t
                if channel.startswith(CHANNEL_PREFIX):
                    self.messages += 1
                else:
                    self.control_messages += 1
                self.sched.at(t, self._arrive, sub, channel, seq, frame)

    def _arrive(self, sub: Subscriber, channel: str, seq: int, frame: Any) -> None:
        if sub.name in self.partitioned:
            self.faults["partition_drop"] = self.faults.get("partition_drop", 0) + 1
            return
        subs = self.topics.get(channel)
        if subs is None or sub not in subs:
            return  # unsubscribed (or crashed) while the message was on its way
        sub.on_bus(channel, seq, frame)
