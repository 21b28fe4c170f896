"""``labkit chaos``: a seeded, randomized scenario against a fresh live cluster, then the checker.

Theory of operation
-------------------
One run, start to finish, in one event loop:

1. Start a fresh :class:`~labkit.lab.cluster.Cluster` (the embedded fakeredis; a private
   ``redis-server`` with AOF and ``appendfsync always`` with ``--real-redis``; or the Redis at
   ``--redis URL``, which is written to but never crashed) with the bus knobs given.
2. Connect ``--users`` users over real WebSockets (the first two users get a second connection,
   on another gateway, like a laptop and a phone).
3. Post ``--posts`` messages from all users at once, each retried with the same ``id`` when the
   server answers ``unavailable`` (safe: posts are idempotent), while a fault runner works
   through a plan drawn from the seed: gateways crashed, drained and restarted, one cut off from
   the bus and healed, Redis unreachable (and, on a private ``redis-server``, killed and
   restarted), a slow consumer, connections cut from the client side. One heavy fault at a
   time, each in its own stretch of the posting; cuts fall anywhere.
4. Wait until every client has caught up with the store (or ``--settle-s`` runs out), then
   hand every client's records and the store's contents to :func:`labkit.lab.checker.check`.

What the seed fixes: which posts, which users and channels, the fault plan, and every bus
fault decision (:mod:`labkit.lab.faults`). What it cannot fix: the interleaving of a live run (the
kernel schedules the sockets), so two runs with one seed break the same way but need not
produce byte-identical records. The exit status is 0 when the checker found no violation and
1 otherwise, so ``labkit chaos`` can gate a CI job.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

from labkit.cli.arguments import count, milliseconds, probability
from labkit.lab.checker import Report, check
from labkit.lab.cluster import Cluster
from labkit.lab.faults import BusFaults, BusKnobs
from labkit.server.client import Client, ClientError
from labkit.server.gateway import GatewayConfig
from labkit.server.redis.directory import DEMO_USERS
from labkit.server.redis_server import RedisServer, find_redis_server

HEAVY = ("crash", "drain", "partition", "slow", "redis_outage", "redis_restart")
"""Faults that take something away for a while; at most one runs at a time."""


@dataclass(frozen=True, slots=True)
class ChaosOptions:
    """One scenario. The defaults are what ``labkit chaos`` runs with no flags."""

    users: int = 5
    posts: int = 200
    gateways: int = 3
    seed: int = 1
    redis_url: str | None = None
    """An external Redis: written to, never crashed (no Redis faults)."""
    real_redis: bool = False
    """Start a private redis-server with AOF, appendfsync always (needs ``redis-server``)."""
    bus: BusKnobs = field(
        default_factory=lambda: BusKnobs(loss=0.05, dup=0.02, reorder=0.02, jitter_ms=5.0)
    )
    gateway_faults: int = 3
    """Crashes, drains and partitions (each healed or restarted later)."""
    client_cuts: int = 3
    slow_consumers: int = 1
    redis_faults: int = 1
    """Outages; on a private redis-server also kill + restart (when 2 or more)."""
    pace_ms: float = 15.0
    """Mean pause between two posts of one user."""
    settle_s: float = 10.0
    variant: str | None = None
    """A weaker design from :mod:`labkit.lab.weak`, by name (expect violations)."""


@dataclass(frozen=True, slots=True)
class PlannedFault:
    """One entry of the fault plan: start after ``at`` posts are acked, undo after ``hold_s``."""

    at: int
    action: str
    target: int
    """Gateway index, or client index for ``cut``/``slow``; unused for Redis faults."""
    hold_s: float = 0.0

    def describe(self, gateways: int) -> str:
        if self.action in ("crash", "drain", "partition"):
            what = f"{self.action} gw-{self.target % gateways + 1}"
        elif self.action in ("cut", "slow"):
            what = f"{self.action} client {self.target}"
        else:
            what = self.action
        hold = f" for {self.hold_s:.2f} s" if self.hold_s else ""
        return f"after {self.at} acks: {what}{hold}"


@dataclass
class ChaosResult:
    options: ChaosOptions
    report: Report
    plan: list[PlannedFault]
    faults: dict[str, int]
    store: str
    duration_s: float
    errors: list[str] = field(default_factory=list)
    """Scenario failures that are not protocol violations (a post refused for good, say)."""
    events: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.report.ok and not self.errors

    def render(self) -> str:
        o = self.options
        lines = [
            f"labkit chaos: seed {o.seed}, {o.users} users, {o.posts} posts, "
            f"{o.gateways} gateways, store: {self.store}"
            + (f", WEAK VARIANT {o.variant}" if o.variant else ""),
            f"bus faults: {o.bus.describe()}",
            "fault plan:",
        ]
        lines += [f"  {p.describe(o.gateways)}" for p in self.plan] or ["  (none)"]
        if self.events:
            lines.append("faults done:")
            lines += [f"  {e}" for e in self.events]
        lines.append(f"ran {self.duration_s:.1f} s")
        lines.append(self.report.render())
        for error in self.errors:
            lines.append(f"scenario error: {error}")
        lines.append(f"replay: {replay_command(o)}")
        return "\n".join(lines)


def replay_command(o: ChaosOptions) -> str:
    parts = [
        "labkit chaos",
        f"--seed {o.seed}",
        f"--users {o.users}",
        f"--posts {o.posts}",
        f"--gateways {o.gateways}",
        f"--bus-loss {o.bus.loss:g}",
        f"--bus-dup {o.bus.dup:g}",
        f"--bus-reorder {o.bus.reorder:g}",
        f"--bus-delay-ms {o.bus.delay_ms:g}",
        f"--bus-jitter-ms {o.bus.jitter_ms:g}",
        f"--gateway-faults {o.gateway_faults}",
        f"--cuts {o.client_cuts}",
        f"--slow-consumers {o.slow_consumers}",
        f"--redis-faults {o.redis_faults}",
    ]
    if o.real_redis:
        parts.append("--real-redis")
    if o.redis_url:
        parts.append(f"--redis {o.redis_url}")
    if o.variant:
        parts.append(f"--variant {o.variant}")
    return " ".join(parts)


# --------------------------------------------------------------------------- the plan


def user_names(n: int) -> list[str]:
    """The demo users first, then ``user6``, ``user7``, ..."""
    return [*DEMO_USERS[:n], *(f"user{i}" for i in range(len(DEMO_USERS) + 1, n + 1))]


def make_plan(
    o: ChaosOptions, clients: int, *, own_redis: bool, rng: random.Random
) -> list[PlannedFault]:
    """The fault plan, from the seed: heavy faults in disjoint stretches, cuts anywhere."""
    heavy: list[tuple[str, int]] = []
    kinds = ["crash", "drain", "partition"]
    for i in range(o.gateway_faults):
        heavy.append((kinds[i % 3] if i < 3 else rng.choice(kinds), rng.randrange(o.gateways)))
    for _ in range(o.slow_consumers):
        heavy.append(("slow", rng.randrange(clients)))
    if own_redis:
        for i in range(o.redis_faults):
            heavy.append(("redis_restart" if i % 2 else "redis_outage", 0))
    rng.shuffle(heavy)
    plan: list[PlannedFault] = []
    stretch = o.posts / (len(heavy) + 1)
    for i, (action, target) in enumerate(heavy):
        at = int(stretch * (i + 0.5) + rng.random() * stretch * 0.4)
        hold = 0.0 if action == "redis_restart" else round(rng.uniform(0.2, 0.7), 3)
        plan.append(PlannedFault(at, action, target, hold))
    for _ in range(o.client_cuts):
        plan.append(PlannedFault(rng.randrange(max(1, o.posts)), "cut", rng.randrange(clients)))
    plan.sort(key=lambda p: (p.at, p.action))
    return plan


# --------------------------------------------------------------------------- the run


class _Progress:
    def __init__(self) -> None:
        self.acked = 0
        self._changed = asyncio.Condition()

    async def ack(self) -> None:
        async with self._changed:
            self.acked += 1
            self._changed.notify_all()

    async def reach(self, n: int) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.acked >= n)


async def _post(client: Client, channel: str, text: str, post_id: str, deadline: float) -> None:
    """Post until acked, retrying with the same id (idempotent) while the system recovers."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            await client.post(channel, text, id=post_id)
            return
        except ClientError as exc:
            if exc.code not in ("unavailable", "rate_limited"):
                raise
        except TimeoutError:
            pass
        if loop.time() > deadline:
            raise TimeoutError(f"{client.name}: post {post_id} not acked before the deadline")
        await asyncio.sleep(0.1)


async def run_chaos(o: ChaosOptions, *, redis_server: RedisServer | None = None) -> ChaosResult:
    """Run one scenario (see the module docstring) and return the checker's verdict.

    ``redis_server``: a private server to run on (and crash); when None and ``real_redis`` is
    set, one is started (AOF, appendfsync always) and closed afterwards.
    """
    if o.users < 1 or o.posts < 0 or o.gateways < 1:
        raise ValueError("need at least one user and one gateway, and a non-negative post count")
    own_server = None
    if redis_server is None and o.real_redis and o.redis_url is None:
        if find_redis_server() is None:
            raise RuntimeError("--real-redis needs redis-server on PATH")
        own_server = redis_server = RedisServer(appendonly=True, appendfsync="always")
    try:
        return await _run(o, redis_server)
    finally:
        if own_server is not None:
            await asyncio.to_thread(own_server.close)


async def _run(o: ChaosOptions, server: RedisServer | None) -> ChaosResult:
    rng = random.Random(o.seed)
    started = time.monotonic()
    config = GatewayConfig(rate_per_s=1000.0, rate_burst=1000.0)
    bus = BusFaults(
        o.seed,
        loss=o.bus.loss,
        dup=o.bus.dup,
        reorder=o.bus.reorder,
        delay_ms=o.bus.delay_ms,
        jitter_ms=o.bus.jitter_ms,
    )
    cluster = Cluster(
        o.gateways,
        redis_url=o.redis_url,
        redis_server=server,
        config=config,
        seed=o.seed,
        bus_faults=bus,
        variant=o.variant,
    )
    errors: list[str] = []
    await cluster.start_all()
    try:
        users = user_names(o.users)
        assert cluster.directory is not None
        for user in users:
            if user not in DEMO_USERS:
                for channel in ("general", "random"):
                    await cluster.directory.join(user, channel)
        memberships = {u: sorted(await cluster.directory.channels_of(u)) for u in users}
        clients: list[Client] = []
        for i, user in enumerate(users):
            clients.append(await cluster.connect(user, gateway=i % o.gateways))
        for i, user in enumerate(users[:2]):
            clients.append(await cluster.connect(user, gateway=(i + 1) % o.gateways))
        own_redis = cluster.fake_server is not None or server is not None
        plan = make_plan(o, len(clients), own_redis=own_redis, rng=rng)

        # Who posts what, fixed by the seed.
        run_tag = uuid.uuid4().hex[:6]  # post ids must be new even on a reused Redis
        work: dict[int, list[tuple[str, str, str, float]]] = {i: [] for i in range(len(users))}
        for n in range(o.posts):
            u = rng.randrange(len(users))
            channel = rng.choice(memberships[users[u]] or ["general"])
            pause = rng.expovariate(1000.0 / o.pace_ms) if o.pace_ms > 0 else 0.0
            work[u].append(
                (channel, f"post {n} by {users[u]} (seed {o.seed})", f"{run_tag}-{n}", pause)
            )

        progress = _Progress()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60 + o.posts * 0.05

        async def poster(u: int) -> None:
            client = clients[u]
            for channel, text, post_id, pause in work[u]:
                await asyncio.sleep(pause)
                try:
                    await _post(client, channel, text, post_id, deadline)
                except (ClientError, TimeoutError) as exc:
                    errors.append(f"post {post_id} by {client.name} failed: {exc}")
                await progress.ack()

        async def fault_runner() -> None:
            for fault in plan:
                await progress.reach(fault.at)
                await _do(cluster, fault, clients, o.gateways)

        posters = [asyncio.create_task(poster(u)) for u in range(len(users))]
        runner = asyncio.create_task(fault_runner())
        await asyncio.gather(*posters)
        await runner

        # Everything restored (bus knobs stay on: repair must work under them), then settle.
        if cluster.bus_faults.partitioned:
            cluster.faults.heal()
        for i, gw in enumerate(cluster.gateways):
            if gw is None:
                await cluster.faults.restart(i)
        for c in clients:
            c.resume_reading()
        await _settle(cluster, clients, o.settle_s)
        end_t = cluster.clock()
        channels = sorted(await cluster.directory.all_channels())
        stored = {ch: await cluster.stored(ch) for ch in channels}
        counts = cluster.faults.counts()
        report = check(cluster.recording, stored, faults=counts, end_t=end_t)
        events = [e.label for e in cluster.faults.events]
        store = cluster.faults.store_kind()
    finally:
        await cluster.stop()
    return ChaosResult(o, report, plan, counts, store, time.monotonic() - started, errors, events)


async def _do(
    cluster: Cluster,
    fault: PlannedFault,
    clients: list[Client],
    gateways: int,
) -> None:
    faults = cluster.faults
    gw = fault.target % gateways
    if fault.action == "cut":
        await faults.cut(clients[fault.target % len(clients)])
    elif fault.action in ("crash", "drain"):
        if cluster.gateways[gw] is None:
            return
        await (faults.crash(gw) if fault.action == "crash" else faults.drain(gw))
        await asyncio.sleep(fault.hold_s)
        await faults.restart(gw)
    elif fault.action == "partition":
        faults.partition(gw)
        await asyncio.sleep(fault.hold_s)
        faults.heal(gw)
    elif fault.action == "slow":
        with faults.slow_consumer(clients[fault.target % len(clients)]):
            await asyncio.sleep(fault.hold_s)
    elif fault.action == "redis_outage":
        await faults.redis_outage(fault.hold_s)
    elif fault.action == "redis_restart":
        await faults.redis_restart()
    else:
        raise AssertionError(fault.action)


async def _settle(cluster: Cluster, clients: list[Client], timeout: float) -> None:
    """Wait until every client has every channel's store head (or ``timeout`` runs out)."""
    assert cluster.store is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    channels = sorted({ch for c in clients for ch in c.state.last_seen})
    while True:
        try:
            states = await cluster.store.states(channels)
        except Exception:
            states = {}
        heads = {ch: st.head for ch, st in states.items()}

        def caught_up(c: Client, heads: dict[str, int] = heads) -> bool:
            return c.connected and all(
                c.state.last_seen.get(ch, 0) >= heads.get(ch, 0) for ch in c.state.last_seen
            )

        behind = [c for c in clients if not caught_up(c)]
        if states and not behind:
            return
        remaining = deadline - loop.time()
        if remaining <= 0:
            return
        if not behind:
            await asyncio.sleep(0.05)
            continue
        first = behind[0]
        with contextlib.suppress(TimeoutError):
            await first.wait_until(partial(caught_up, first), min(remaining, 1.0))


# --------------------------------------------------------------------------- the command


def build_parser() -> argparse.ArgumentParser:
    from labkit.lab.weak import VARIANTS

    d = ChaosOptions()
    parser = argparse.ArgumentParser(
        prog="labkit chaos",
        description="Run a randomized, seeded scenario against a fresh live cluster (real "
        "WebSockets, real gateways): users post while gateways crash, drain and restart, one is "
        "cut off from the bus, Redis goes away, a client stops reading and connections are cut; "
        "the bus loses, duplicates, reorders and delays messages. Then the invariant checker "
        "reads every client's records and the store, prints its report (Jepsen style) with the "
        "faults injected, and the command exits 1 if any guarantee of the protocol was broken.",
        epilog="Examples: 'labkit chaos' (defaults, embedded store); 'labkit chaos --real-redis "
        "--redis-faults 2' (a private redis-server with AOF, killed and restarted mid-run); "
        "'labkit chaos --variant no_bus_repair --bus-loss 0.2' (watch a weaker design fail). "
        "The same --seed replays the same posts, fault plan and bus decisions.",
    )
    parser.add_argument(
        "--users", type=count, default=d.users, metavar="N", help=f"users ({d.users})"
    )
    parser.add_argument(
        "--posts", type=count, default=d.posts, metavar="M", help=f"posts in all ({d.posts})"
    )
    parser.add_argument(
        "--gateways", type=count, default=d.gateways, metavar="G", help=f"gateways ({d.gateways})"
    )
    parser.add_argument(
        "--seed", type=int, default=d.seed, metavar="S", help=f"the seed of everything ({d.seed})"
    )
    store = parser.add_argument_group("store (default: the embedded fakeredis)")
    store.add_argument(
        "--redis",
        metavar="URL",
        default=None,
        help="run on this Redis; it is written to (demo workspace, messages) but never crashed",
    )
    store.add_argument(
        "--real-redis",
        action="store_true",
        help="start a private redis-server (AOF on, appendfsync always) on a free port",
    )
    b = d.bus
    bus = parser.add_argument_group("bus faults (decided per message from the seed)")
    bus.add_argument(
        "--bus-loss", type=probability, default=b.loss, metavar="P", help=f"loss ({b.loss:g})"
    )
    bus.add_argument(
        "--bus-dup", type=probability, default=b.dup, metavar="P", help=f"duplication ({b.dup:g})"
    )
    bus.add_argument(
        "--bus-reorder",
        type=probability,
        default=b.reorder,
        metavar="P",
        help=f"held back until a later message overtakes it ({b.reorder:g})",
    )
    bus.add_argument(
        "--bus-delay-ms",
        type=milliseconds,
        default=b.delay_ms,
        metavar="MS",
        help="added delay (0)",
    )
    bus.add_argument(
        "--bus-jitter-ms",
        type=milliseconds,
        default=b.jitter_ms,
        metavar="MS",
        help=f"random extra delay up to MS ({b.jitter_ms:g})",
    )
    other = parser.add_argument_group("other faults (planned from the seed)")
    other.add_argument(
        "--gateway-faults",
        type=count,
        default=d.gateway_faults,
        metavar="N",
        help=f"gateway crashes, drains and partitions, each undone later ({d.gateway_faults})",
    )
    other.add_argument(
        "--cuts",
        type=count,
        default=d.client_cuts,
        metavar="N",
        help=f"connections cut by their clients ({d.client_cuts})",
    )
    other.add_argument(
        "--slow-consumers",
        type=count,
        default=d.slow_consumers,
        metavar="N",
        help=f"clients that stop reading for a while ({d.slow_consumers})",
    )
    other.add_argument(
        "--redis-faults",
        type=count,
        default=d.redis_faults,
        metavar="N",
        help="Redis outages; every second one is a kill + restart; none with --redis "
        f"({d.redis_faults})",
    )
    parser.add_argument(
        "--settle-s",
        type=float,
        default=d.settle_s,
        metavar="SECONDS",
        help=f"how long to wait for stragglers before checking ({d.settle_s:g})",
    )
    parser.add_argument(
        "--variant",
        choices=sorted(VARIANTS),
        default=None,
        metavar="NAME",
        help="run a weaker design from labkit.lab.weak instead of the real one (expect "
        f"violations): {', '.join(sorted(VARIANTS))}",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log the system's warnings as it recovers"
    )
    return parser


def options_from(args: argparse.Namespace) -> ChaosOptions:
    return ChaosOptions(
        users=max(1, args.users),
        posts=args.posts,
        gateways=max(1, args.gateways),
        seed=args.seed,
        redis_url=args.redis,
        real_redis=args.real_redis,
        bus=BusKnobs(
            args.bus_loss, args.bus_dup, args.bus_reorder, args.bus_delay_ms, args.bus_jitter_ms
        ),
        gateway_faults=args.gateway_faults,
        client_cuts=args.cuts,
        slow_consumers=args.slow_consumers,
        redis_faults=0 if args.redis else args.redis_faults,
        settle_s=args.settle_s,
        variant=args.variant,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.redis and args.real_redis:
        print("labkit chaos: give --redis URL or --real-redis, not both", file=sys.stderr)
        return 2
    if args.real_redis and find_redis_server() is None:
        print("labkit chaos: --real-redis needs redis-server on PATH", file=sys.stderr)
        return 2
    options = options_from(args)
    logging.basicConfig(
        level=logging.WARNING if args.verbose else logging.ERROR,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    if args.redis:
        print(f"labkit chaos: writing to the Redis at {args.redis} (no Redis faults)")
    try:
        result = asyncio.run(run_chaos(options))
    except KeyboardInterrupt:
        return 130
    if args.json:
        out = result.report.to_dict()
        out.update(seed=options.seed, errors=result.errors, replay=replay_command(options))
        print(json.dumps(out, indent=2))
    else:
        print(result.render())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
