"""Faults you can turn on while a cluster runs, seeded so a demo breaks the same way every time.

Theory of operation
-------------------
Two layers.

:class:`BusFaults` sits between the bus and each gateway (it is installed as every gateway's
``bus_filter``) and decides, for each bus message, what an unreliable network would have done
with it: lose it, deliver it twice, hold it back so a later one overtakes it, or delay it. The
knobs (:class:`BusKnobs`: ``loss``, ``dup``, ``reorder``, ``delay_ms``, ``jitter_ms``) apply to
every gateway or to one gateway by name, and can be changed at any moment from a notebook cell,
a widget or ``labkit serve --bus-loss ...``.

Every decision is a pure function of the seed and the message's *identity*: a BLAKE2b hash of
``(seed, gateway, topic, seq, salt)``, where the salt names the decision (``loss``, ``dup``,
``reorder``, the delay of each copy). It never depends on the order in which messages happen
to arrive, nor on Python's ``hash()`` (salted per process), so ``seq 17`` of ``#general`` is
lost at ``gw-2`` in every run with the same seed, and a notebook can point at it. Messages that
carry no seq (typing events) are identified by a hash of their payload.

Only channel topics (``message`` and ``typing`` frames) are faulted by default: they are what the
design repairs from the store. The control topic (membership notices) and the presence topic
have no store behind them in this design; pass ``topics="all"`` to fault them too and watch
what that costs.

A *partition* cuts one gateway off from the bus in both directions: what the bus would deliver
to it is dropped, and what it publishes never reaches anyone. It still reaches the store, so
posts through it are stored and acked, and its periodic head check (every
``GatewayConfig.head_check_s``) repairs what it missed; :meth:`BusFaults.heal` ends the cut.

:class:`Faults` is the facade a :class:`~labkit.lab.cluster.Cluster` carries as
``cluster.faults``:
the bus knobs plus everything else that can go wrong (gateways crashed, drained and restarted,
Redis unreachable or restarted, data lost, a slow consumer, a connection cut by the client).
On the embedded fakeredis, which has no process to kill, an *outage* and a *data loss* stand in
for an unreachable or restarted Redis, and say so in their labels.

Counters: ``BusFaults.counts`` holds the faults injected by kind (``lost``, ``duplicated``,
``reordered``, ``delayed``, ``partitioned``); ``Faults.counts()`` adds the cluster events
(``gateway_crash``, ``redis_outage``, ...). The chaos runner prints both next to the checker's
report.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import socket
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field, fields, replace
from types import TracebackType
from typing import TYPE_CHECKING, Any

from labkit.server.redis.bus import topic_channel
from labkit.server.redis.directory import CHANNELS_KEY, members_key, user_channels_key

if TYPE_CHECKING:
    from labkit.lab.cluster import Cluster
    from labkit.server.client import Client
    from labkit.server.gateway import Gateway
    from labkit.server.redis_server import RedisServer

log = logging.getLogger(__name__)

Deliver = Callable[[str, str], None]

BUS_KINDS: tuple[str, ...] = ("lost", "duplicated", "reordered", "delayed", "partitioned")
"""The kinds of bus fault :attr:`BusFaults.counts` counts."""

REORDER_HOLD_MS = 200.0
"""How long a message picked for reordering waits for a later one to overtake it."""

OUTAGE_LABEL_FAKE = "embedded store outage (stands in for Redis unreachable)"
DATA_LOSS_LABEL_FAKE = (
    "embedded store data loss (stands in for a Redis restart without persistence)"
)
RESTART_LABEL_FAKE = (
    "embedded store outage (stands in for a Redis restart with AOF on: nothing is lost)"
)


# --------------------------------------------------------------------------- knobs and decisions


@dataclass(frozen=True, slots=True)
class BusKnobs:
    """How unreliable the bus is for one gateway (or for all). All zero: a perfect bus."""

    loss: float = 0.0
    """Probability that a message never arrives."""
    dup: float = 0.0
    """Probability that a message arrives twice."""
    reorder: float = 0.0
    """Probability that a message is held back (up to :data:`REORDER_HOLD_MS`) until the next
    message of its topic has overtaken it."""
    delay_ms: float = 0.0
    """Added to every message's delivery."""
    jitter_ms: float = 0.0
    """A further delay drawn uniformly from ``[0, jitter_ms)`` per copy (this alone reorders)."""

    def __post_init__(self) -> None:
        for name in ("loss", "dup", "reorder"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} is a probability from 0 to 1, not {value!r}")
        for name in ("delay_ms", "jitter_ms"):
            value = getattr(self, name)
            if not 0.0 <= value < 60_000:
                raise ValueError(f"{name} must be from 0 to 60000 ms, not {value!r}")

    @property
    def active(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))

    def describe(self) -> str:
        """``"loss 10%, dup 5%, delay 20 ms"``, or ``"none"``."""
        parts = []
        for name, label in (("loss", "loss"), ("dup", "dup"), ("reorder", "reorder")):
            value = getattr(self, name)
            if value:
                parts.append(f"{label} {value * 100:g}%")
        if self.delay_ms:
            parts.append(f"delay {self.delay_ms:g} ms")
        if self.jitter_ms:
            parts.append(f"jitter {self.jitter_ms:g} ms")
        return ", ".join(parts) or "none"


@dataclass(frozen=True, slots=True)
class Decision:
    """What the faulty bus does with one message at one gateway."""

    lost: bool = False
    copies: int = 1
    """How many times it arrives: 0 when lost, 2 when duplicated."""
    delays_ms: tuple[float, ...] = (0.0,)
    """The delay of each copy."""
    hold: bool = False
    """Picked for reordering: the first copy waits until a later message overtakes it."""

    @property
    def faulted(self) -> bool:
        return self.lost or self.copies > 1 or self.hold or any(self.delays_ms)


PASS = Decision()


def unit(seed: int, gateway: str, topic: str, identity: str, salt: str) -> float:
    """A number in ``[0, 1)`` fixed by its inputs: BLAKE2b, stable across runs and processes."""
    key = f"{seed}\x1f{gateway}\x1f{topic}\x1f{identity}\x1f{salt}".encode()
    digest = hashlib.blake2b(key, digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def message_identity(topic: str, payload: str) -> str:
    """``seq:N`` for a channel ``message`` frame; a hash of the payload for anything else."""
    if topic_channel(topic) is not None:
        try:
            frame = json.loads(payload)
        except ValueError:
            frame = None
        if isinstance(frame, dict) and frame.get("type") == "message":
            seq = frame.get("seq")
            if isinstance(seq, int):
                return f"seq:{seq}"
    return "h:" + hashlib.blake2b(payload.encode(), digest_size=8).hexdigest()


# --------------------------------------------------------------------------- the faulty bus


class BusFaults:
    """Seeded, live-adjustable bus faults for the gateways it is installed on.

    ::

        faults = BusFaults(seed=7, loss=0.1)        # 10% loss at every gateway
        faults.set("gw-2", dup=0.2, delay_ms=30)     # gw-2 also duplicates and lags
        faults.partition("gw-3")                     # gw-3 is cut off from the bus
        faults.heal("gw-3")
        faults.clear()                               # a perfect bus again
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        loss: float = 0.0,
        dup: float = 0.0,
        reorder: float = 0.0,
        delay_ms: float = 0.0,
        jitter_ms: float = 0.0,
        topics: str = "channels",
        reorder_hold_ms: float = REORDER_HOLD_MS,
    ) -> None:
        if topics not in ("channels", "all"):
            raise ValueError(f"topics must be 'channels' or 'all', not {topics!r}")
        self.seed = seed
        self.topics = topics
        self.reorder_hold_ms = reorder_hold_ms
        self.defaults = BusKnobs(loss, dup, reorder, delay_ms, jitter_ms)
        self.overrides: dict[str, BusKnobs] = {}
        """Per gateway name: knobs that replace the defaults for that gateway."""
        self.partitioned: set[str] = set()
        self.counts: dict[str, int] = dict.fromkeys(BUS_KINDS, 0)
        self.by_gateway: dict[str, dict[str, int]] = {}
        self._installed: dict[str, Gateway] = {}
        self._originals: dict[str, Any] = {}
        self._timers: dict[str, set[asyncio.TimerHandle]] = {}
        self._held: dict[tuple[str, str], list[tuple[str, asyncio.TimerHandle]]] = {}

    # -- knobs ------------------------------------------------------------------------------

    def set(self, gateway: str | None = None, **knobs: float) -> BusKnobs:
        """Change some knobs, for every gateway (``gateway=None``) or for one by name.

        Knobs not named keep their value. Returns the knobs now in force there.
        """
        unknown = set(knobs) - {f.name for f in fields(BusKnobs)}
        if unknown:
            raise TypeError(f"unknown bus knob(s) {sorted(unknown)}; use {list(_KNOB_NAMES)}")
        if gateway is None:
            self.defaults = replace(self.defaults, **knobs)
            return self.defaults
        base = self.overrides.get(gateway, self.defaults)
        self.overrides[gateway] = replace(base, **knobs)
        return self.overrides[gateway]

    def clear(self, gateway: str | None = None) -> None:
        """A perfect bus again: everywhere (``None``: overrides too) or at one gateway."""
        if gateway is None:
            self.defaults = BusKnobs()
            self.overrides.clear()
        else:
            self.overrides[gateway] = BusKnobs()

    def knobs(self, gateway: str) -> BusKnobs:
        """The knobs in force at ``gateway``."""
        return self.overrides.get(gateway, self.defaults)

    @property
    def active(self) -> bool:
        """True when any fault is on (a knob anywhere, or a partition)."""
        return (
            self.defaults.active
            or any(k.active for k in self.overrides.values())
            or bool(self.partitioned)
        )

    def describe(self) -> str:
        """One line per setting, for ``labkit serve`` and notebooks."""
        lines = [f"bus faults (seed {self.seed}): {self.defaults.describe()} at every gateway"]
        for name in sorted(self.overrides):
            lines.append(f"  {name}: {self.overrides[name].describe()}")
        if self.partitioned:
            lines.append(f"  cut off from the bus: {', '.join(sorted(self.partitioned))}")
        return "\n".join(lines)

    # -- partitions -------------------------------------------------------------------------

    def partition(self, gateway: str) -> None:
        """Cut ``gateway`` off from the bus, both ways, until :meth:`heal`."""
        self.partitioned.add(gateway)

    def heal(self, gateway: str | None = None) -> None:
        """End the partition of ``gateway`` (``None``: of every gateway)."""
        if gateway is None:
            self.partitioned.clear()
        else:
            self.partitioned.discard(gateway)

    # -- decisions (pure) -------------------------------------------------------------------

    def faults_topic(self, topic: str) -> bool:
        return self.topics == "all" or topic_channel(topic) is not None

    def decide(self, gateway: str, topic: str, payload: str) -> Decision:
        """What the bus does with ``payload`` on ``topic`` at ``gateway``: pure, no counters.

        Depends only on the seed, the knobs in force, the gateway, the topic and the message's
        identity (:func:`message_identity`): never on arrival order.
        """
        knobs = self.knobs(gateway)
        if not knobs.active or not self.faults_topic(topic):
            return PASS
        ident = message_identity(topic, payload)

        def draw(salt: str) -> float:
            return unit(self.seed, gateway, topic, ident, salt)

        if knobs.loss and draw("loss") < knobs.loss:
            return Decision(lost=True, copies=0, delays_ms=())
        copies = 2 if knobs.dup and draw("dup") < knobs.dup else 1
        delays = tuple(
            knobs.delay_ms + (knobs.jitter_ms * draw(f"delay:{i}") if knobs.jitter_ms else 0.0)
            for i in range(copies)
        )
        hold = bool(knobs.reorder) and draw("reorder") < knobs.reorder
        return Decision(lost=False, copies=copies, delays_ms=delays, hold=hold)

    # -- installation -----------------------------------------------------------------------

    def install(self, gateway: Gateway) -> None:
        """Become ``gateway``'s bus filter and guard its publishes (for partitions)."""
        name = gateway.name
        self.uninstall_name(name)
        self._installed[name] = gateway
        gateway.bus_filter = self._filter_for(name)
        bus = gateway.bus
        original = bus.publish

        async def publish(topic: str, payload: str) -> None:
            if name in self.partitioned:
                self._count(name, "partitioned")
                return  # into the cut: nobody receives it (the store has it, if it is a post)
            await original(topic, payload)

        self._originals[name] = bus
        bus.publish = publish  # type: ignore[method-assign]

    def uninstall(self, gateway: Gateway) -> None:
        """Stop faulting ``gateway``: pending delayed messages to it are dropped."""
        if self._installed.get(gateway.name) is gateway:
            self.uninstall_name(gateway.name)

    def uninstall_name(self, name: str) -> None:
        gateway = self._installed.pop(name, None)
        for handle in self._timers.pop(name, set()):
            handle.cancel()
        for key in [k for k in self._held if k[0] == name]:
            for _, handle in self._held.pop(key):
                handle.cancel()
        bus = self._originals.pop(name, None)
        if bus is not None:
            with contextlib.suppress(AttributeError):
                del bus.publish  # the class's method again
        if gateway is not None:
            gateway.bus_filter = None

    def _filter_for(self, name: str) -> Callable[[str, str, Deliver], None]:
        def bus_filter(topic: str, payload: str, deliver: Deliver) -> None:
            self.arrive(name, topic, payload, deliver)

        return bus_filter

    # -- the message path -------------------------------------------------------------------

    def arrive(self, gateway: str, topic: str, payload: str, deliver: Deliver) -> None:
        """A message reached ``gateway`` from the bus: apply the faults, then ``deliver``."""
        if gateway in self.partitioned:
            self._count(gateway, "partitioned")
            return
        decision = self.decide(gateway, topic, payload)
        if decision is PASS:
            deliver(topic, payload)
            self._release_held(gateway, topic, deliver)
            return
        if decision.lost:
            self._count(gateway, "lost")
            return
        if decision.copies > 1:
            self._count(gateway, "duplicated")
        if decision.hold:
            self._count(gateway, "reordered")
        if any(decision.delays_ms):
            self._count(gateway, "delayed")
        for i, delay_ms in enumerate(decision.delays_ms):
            hold = decision.hold and i == 0
            if delay_ms > 0:
                self._later(gateway, delay_ms, self._land, gateway, topic, payload, deliver, hold)
            else:
                self._land(gateway, topic, payload, deliver, hold)

    def _land(self, gateway: str, topic: str, payload: str, deliver: Deliver, hold: bool) -> None:
        """A copy reaches the gateway after its delay (the partition may have begun since)."""
        if gateway in self.partitioned:
            self._count(gateway, "partitioned")
            return
        if hold:
            key = (gateway, topic)
            entry: list[tuple[str, asyncio.TimerHandle]] = self._held.setdefault(key, [])
            handle = asyncio.get_running_loop().call_later(
                self.reorder_hold_ms / 1000, self._release_held, gateway, topic, deliver
            )
            entry.append((payload, handle))
            return
        deliver(topic, payload)
        self._release_held(gateway, topic, deliver)

    def _release_held(self, gateway: str, topic: str, deliver: Deliver) -> None:
        """Deliver what was held back on ``topic`` (after the message that overtook it)."""
        held = self._held.pop((gateway, topic), None)
        if not held:
            return
        for payload, handle in held:
            handle.cancel()
            if gateway in self.partitioned:
                self._count(gateway, "partitioned")
                continue
            deliver(topic, payload)

    def _later(
        self, gateway: str, delay_ms: float, action: Callable[..., None], *args: Any
    ) -> None:
        timers = self._timers.setdefault(gateway, set())
        handle: asyncio.TimerHandle

        def fire() -> None:
            timers.discard(handle)
            action(*args)

        handle = asyncio.get_running_loop().call_later(delay_ms / 1000, fire)
        timers.add(handle)

    def _count(self, gateway: str, kind: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        per = self.by_gateway.setdefault(gateway, dict.fromkeys(BUS_KINDS, 0))
        per[kind] = per.get(kind, 0) + 1

    def total(self) -> int:
        return sum(self.counts.values())


_KNOB_NAMES = tuple(f.name for f in fields(BusKnobs))


# --------------------------------------------------------------------------- the facade


@dataclass(frozen=True, slots=True)
class FaultEvent:
    """One fault done to a cluster, for logs and notebooks."""

    t: float
    kind: str
    """e.g. ``gateway_crash``, ``redis_outage``, ``data_loss``, ``client_cut``."""
    label: str
    """What happened, in words, saying what stands in for what on the embedded store."""


@dataclass
class _Outage:
    """``await faults.redis_outage(2.0)`` or ``async with faults.redis_outage(): ...``."""

    faults: Faults
    seconds: float | None
    _down: bool = field(default=False, init=False)

    def __await__(self) -> Generator[Any, None, None]:
        return self._run().__await__()

    async def _run(self) -> None:
        if self.seconds is None:
            raise TypeError("await redis_outage(SECONDS), or use it as 'async with'")
        await self.__aenter__()
        try:
            await asyncio.sleep(self.seconds)
        finally:
            await self.__aexit__(None, None, None)

    async def __aenter__(self) -> _Outage:
        await self.faults._store_down()
        self._down = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._down:
            self._down = False
            await self.faults._store_up()


class SlowConsumer:
    """A client that stopped reading; :meth:`resume` (or leaving the ``with``) ends it."""

    def __init__(self, client: Client) -> None:
        self.client = client
        client.pause_reading()

    def resume(self) -> None:
        self.client.resume_reading()

    def __enter__(self) -> SlowConsumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.resume()


class Faults:
    """Everything that can go wrong with one :class:`~labkit.lab.cluster.Cluster`, on demand.

    Reach it as ``cluster.faults``. Gateways are named by index (0 for ``gw-1``) or by name.
    """

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.events: list[FaultEvent] = []
        self.event_counts: dict[str, int] = {}
        self._frozen = False
        self._restart_lock = asyncio.Lock()

    @property
    def bus(self) -> BusFaults:
        return self.cluster.bus_faults

    # -- the bus ----------------------------------------------------------------------------

    def gateway_name(self, gateway: int | str) -> str:
        if isinstance(gateway, str):
            return gateway
        if not 0 <= gateway < self.cluster.gateway_count:
            raise IndexError(
                f"gateway index {gateway} out of range 0..{self.cluster.gateway_count - 1}"
            )
        return f"gw-{gateway + 1}"

    def set_bus(self, gateway: int | str | None = None, **knobs: float) -> BusKnobs:
        """Turn bus knobs (``loss``, ``dup``, ``reorder``, ``delay_ms``, ``jitter_ms``) at one
        gateway or, with ``gateway=None``, at all of them. Takes effect on the next message."""
        name = None if gateway is None else self.gateway_name(gateway)
        return self.bus.set(name, **knobs)

    def clear_bus(self, gateway: int | str | None = None) -> None:
        self.bus.clear(None if gateway is None else self.gateway_name(gateway))

    def partition(self, gateway: int | str) -> None:
        """Cut a gateway off from the bus (it still reaches the store)."""
        name = self.gateway_name(gateway)
        self.bus.partition(name)
        self._event("partition", f"{name} cut off from the bus")

    def heal(self, gateway: int | str | None = None) -> None:
        """End a partition; the gateway's head check repairs what it missed."""
        name = None if gateway is None else self.gateway_name(gateway)
        self.bus.heal(name)
        self._event("heal", f"{name or 'every gateway'} reconnected to the bus")

    # -- gateways ---------------------------------------------------------------------------

    async def crash(self, gateway: int) -> None:
        """Kill a gateway abruptly: connections drop without a close frame, nothing drained."""
        await self.cluster.stop_gateway(gateway)
        self._event("gateway_crash", f"{self.gateway_name(gateway)} crashed (no drain)")

    async def drain(self, gateway: int) -> None:
        """Shut a gateway down gracefully: ``reconnect`` frames, then close 1012."""
        await self.cluster.drain_gateway(gateway)
        self._event("gateway_drain", f"{self.gateway_name(gateway)} drained gracefully")

    async def restart(self, gateway: int) -> None:
        """Start a crashed or drained gateway again, on the same port."""
        await self.cluster.restart_gateway(gateway)
        self._event("gateway_restart", f"{self.gateway_name(gateway)} restarted")

    # -- Redis ------------------------------------------------------------------------------

    @property
    def server(self) -> RedisServer | None:
        return self.cluster.redis_server

    def store_kind(self) -> str:
        """``embedded fakeredis``, ``redis-server (AOF, appendfsync always)``, ..."""
        if self.cluster.fake_server is not None:
            return "embedded fakeredis"
        server = self.server
        if server is None:
            return "an external Redis (not ours: no Redis faults)"
        if server.appendonly:
            return f"private redis-server (AOF on, appendfsync {server.appendfsync})"
        return "private redis-server (no persistence)"

    def redis_outage(self, seconds: float | None = None) -> _Outage:
        """Redis unreachable: ``await faults.redis_outage(2.0)``, or for the length of a block
        with ``async with faults.redis_outage(): ...``.

        Embedded fakeredis: the fake server refuses connections (``connected = False``), a
        stand-in labelled as such. A private redis-server with AOF is stopped and started again
        on the same port; one without persistence is frozen (SIGSTOP, then SIGCONT) so its data
        survives the outage. A Redis we did not start is never touched.
        """
        return _Outage(self, seconds)

    async def _store_down(self) -> None:
        cluster = self.cluster
        if cluster.fake_server is not None:
            cluster.fake_server.connected = False
            self._event("redis_outage", OUTAGE_LABEL_FAKE)
            return
        server = self._own_server("an outage")
        if server.appendonly:
            await asyncio.to_thread(server.stop)
            self._event("redis_outage", "redis-server stopped (unreachable; AOF keeps its data)")
        else:
            pid = server.pid
            if pid is None:
                raise RuntimeError("the cluster's redis-server is not running")
            import os
            import signal

            os.kill(pid, signal.SIGSTOP)
            self._frozen = True
            self._event("redis_outage", "redis-server frozen with SIGSTOP (unreachable)")

    async def _store_up(self) -> None:
        cluster = self.cluster
        if cluster.fake_server is not None:
            cluster.fake_server.connected = True
            return
        server = self._own_server("an outage")
        if self._frozen:
            import os
            import signal

            pid = server.pid
            if pid is not None:
                os.kill(pid, signal.SIGCONT)
            self._frozen = False
        else:
            await asyncio.to_thread(server.start)

    async def redis_restart(self) -> None:
        """Kill Redis (SIGKILL) and start it again on the same port.

        With AOF and ``appendfsync always`` nothing acknowledged is lost and no epoch changes.
        Without persistence everything is lost: see :meth:`data_loss`. On the embedded store,
        a short outage stands in for it (labelled so).
        """
        if self.cluster.fake_server is not None:
            self.cluster.fake_server.connected = False
            await asyncio.sleep(0.2)
            self.cluster.fake_server.connected = True
            self._event("redis_restart", RESTART_LABEL_FAKE)
            return
        server = self._own_server("a restart")
        async with self._restart_lock:
            snapshot = None if server.appendonly else await self._directory_snapshot()
            await asyncio.to_thread(server.kill)
            await asyncio.to_thread(server.start)
            if snapshot is not None:
                await self._restore_directory(snapshot)
                self._event(
                    "data_loss",
                    "redis-server killed and restarted without persistence: every channel's "
                    "history, head and epoch lost (the directory restored from a snapshot)",
                )
            else:
                self._event(
                    "redis_restart",
                    f"redis-server killed and restarted (AOF, appendfsync {server.appendfsync})",
                )

    async def data_loss(self) -> None:
        """Lose every channel's history, head, epoch and the post ids, as a Redis restarted
        without persistence does. The gateways notice the new epoch within a head check and
        send every member a ``reset`` with reason ``epoch_changed``.

        Embedded fakeredis: the keys are deleted (a stand-in, labelled so); memberships are
        kept, as a deployment keeps its user directory in a durable database. A private
        redis-server without persistence is killed and restarted (its directory restored from a
        snapshot taken just before). A server with AOF cannot lose its data: use
        :meth:`redis_restart` to see that.
        """
        cluster = self.cluster
        if cluster.fake_server is not None:
            assert cluster.redis is not None
            redis = cluster.redis
            doomed = [
                key
                async for key in redis.scan_iter(match="labkit:ch:*", count=1000)
                if not str(key).endswith(":members")
            ]
            doomed += [key async for key in redis.scan_iter(match="labkit:idem:*", count=1000)]
            if doomed:
                await redis.delete(*doomed)
            self._event("data_loss", DATA_LOSS_LABEL_FAKE)
            return
        server = self._own_server("a data loss")
        if server.appendonly:
            raise RuntimeError(
                "this cluster's redis-server keeps an AOF, so a restart loses nothing; start the "
                "cluster with RedisServer(appendonly=False) to lose data, or call redis_restart()"
            )
        await self.redis_restart()

    def _own_server(self, what: str) -> RedisServer:
        server = self.server
        if server is None:
            raise RuntimeError(
                f"{what} needs a Redis this cluster owns: Cluster(redis_server=RedisServer(...)) "
                f"(a Redis given by URL is never touched)"
            )
        return server

    async def _directory_snapshot(self) -> dict[str, set[str]]:
        redis = self.cluster.redis
        assert redis is not None
        channels = {str(c) for c in await redis.smembers(CHANNELS_KEY)}
        snapshot: dict[str, set[str]] = {CHANNELS_KEY: channels}
        users: set[str] = set()
        for channel in channels:
            members = {str(u) for u in await redis.smembers(members_key(channel))}
            snapshot[members_key(channel)] = members
            users |= members
        for user in users:
            key = user_channels_key(user)
            snapshot[key] = {str(c) for c in await redis.smembers(key)}
        return snapshot

    async def _restore_directory(self, snapshot: dict[str, set[str]]) -> None:
        redis = self.cluster.redis
        assert redis is not None
        for attempt in range(20):
            try:
                async with redis.pipeline(transaction=True) as pipe:
                    for key, values in snapshot.items():
                        if values:
                            pipe.sadd(key, *sorted(values))
                    await pipe.execute()
                return
            except Exception:
                if attempt == 19:
                    raise
                await asyncio.sleep(0.1)

    # -- clients ----------------------------------------------------------------------------

    def slow_consumer(self, client: Client, *, shrink_buffers: bool = True) -> SlowConsumer:
        """Make ``client`` stop reading; ``.resume()`` (or leaving a ``with``) ends it.

        The gateway closes a connection with 4008 once more than
        ``GatewayConfig.max_buffer_bytes`` wait in its own buffer, which happens only after the
        kernel's socket buffers are full: a few MB on loopback. ``shrink_buffers`` (the
        default) shrinks both kernel buffers of this one connection to a few KB, as on a slow
        mobile link, so a demo sees the close after tens of messages instead of thousands.
        The client reconnects and resumes from ``last_seen`` like after any other close.
        """
        if shrink_buffers:
            self._shrink_buffers(client)
        self._event("slow_consumer", f"{client.name} stopped reading")
        return SlowConsumer(client)

    def _shrink_buffers(self, client: Client, size: int = 4096) -> None:
        ws = getattr(client, "_ws", None)  # the client's current connection, if any
        transport = getattr(ws, "transport", None)
        if transport is None:
            return
        local = transport.get_extra_info("sockname")
        with contextlib.suppress(OSError, AttributeError):
            transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
        for gateway in self.cluster.gateways:
            for conn in list(gateway.conns) if gateway is not None else []:
                peer = conn.ws.remote_address
                if local is None or peer is None or tuple(peer[:2]) != tuple(local[:2]):
                    continue
                server_transport = conn.ws.transport
                with contextlib.suppress(OSError, AttributeError):
                    server_transport.get_extra_info("socket").setsockopt(
                        socket.SOL_SOCKET, socket.SO_SNDBUF, size
                    )

    async def cut(self, client: Client) -> None:
        """Cut ``client``'s connection from the client side, abruptly; it resumes by itself."""
        await client.drop()
        self._event("client_cut", f"{client.name} cut its connection")

    # -- accounting -------------------------------------------------------------------------

    def _event(self, kind: str, label: str) -> None:
        self.events.append(FaultEvent(time.time(), kind, label))
        self.event_counts[kind] = self.event_counts.get(kind, 0) + 1
        log.info("fault: %s", label)

    def counts(self) -> dict[str, int]:
        """Faults injected so far, by kind: the bus's (non-zero ones) and the cluster events."""
        out = {f"bus_{k}": v for k, v in self.bus.counts.items() if v}
        out.update(self.event_counts)
        return out

    def describe(self) -> str:
        lines = [self.bus.describe(), f"store: {self.store_kind()}"]
        for event in self.events[-10:]:
            lines.append(f"  {time.strftime('%H:%M:%S', time.localtime(event.t))} {event.label}")
        return "\n".join(lines)
