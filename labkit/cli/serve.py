"""``labkit serve`` and ``labkit gateway``: the long-running processes, with clean shutdown.

Both wait for Ctrl-C or SIGTERM and then drain their gateways: every connection gets a
``reconnect`` frame and close 1012, so clients move to another gateway and resume there.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

import redis.asyncio as aioredis

from labkit.lab.cluster import Cluster
from labkit.lab.faults import BusFaults
from labkit.lab.impl import load
from labkit.server.cluster import build_gateway
from labkit.server.gateway import GatewayConfig
from labkit.server.redis.directory import Directory
from labkit.server.redis.store import connect


async def _until_stopped() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def run_serve(args: argparse.Namespace, secret: str) -> int:
    config = GatewayConfig(host=args.host, heartbeat_s=args.heartbeat_s)
    bus_faults = BusFaults(
        args.seed,
        loss=args.bus_loss,
        dup=args.bus_dup,
        reorder=args.bus_reorder,
        delay_ms=args.bus_delay_ms,
        jitter_ms=args.bus_jitter_ms,
    )
    try:
        impl = load(args.impl)
    except LookupError as exc:
        print(f"labkit serve: --impl {args.impl}: {exc}", file=sys.stderr)
        return 2
    cluster = Cluster(
        args.gateways,
        impl=impl,
        redis_url=args.redis,
        secret=secret,
        heartbeat_s=args.heartbeat_s,
        port=args.port,
        config=config,
        seed=args.seed,
        bus_faults=bus_faults,
    )
    try:
        await cluster.start_all()
    except OSError as exc:
        print(f"labkit serve: cannot listen: {exc}", file=sys.stderr)
        await cluster.stop()
        return 1
    where = args.redis or "the embedded fakeredis (in memory; gone when this stops)"
    print(f"labkit: {args.gateways} gateway(s) on {where}")
    for url in cluster.urls:
        print(f"  {url}")
    if cluster.impl.name != "reference":
        print(cluster.impl.describe())
        for notice in cluster.notices[len(cluster.impl.notices) :]:
            print(f"  note: {notice}")
    if bus_faults.active:
        print(bus_faults.describe().replace("bus faults", "Bus faults ON", 1))
    else:
        print(f"Bus faults: none (seed {args.seed}; try --bus-loss 0.1)")
    print("Tokens: labkit token alice   (valid 24 h; same secret as this server)")
    print("Chat:   labkit chat alice    and in another terminal:   labkit chat bob")
    print("Stop:   Ctrl-C (drains the gateways: clients reconnect elsewhere)", flush=True)
    await _until_stopped()
    print("labkit: draining gateways…", flush=True)
    for index in range(len(cluster.gateways)):
        if cluster.gateways[index] is not None:
            await cluster.drain_gateway(index)
    await cluster.stop()
    print("labkit: stopped")
    return 0


async def run_gateway(args: argparse.Namespace, secret: str) -> int:
    url = args.redis

    def make_client() -> aioredis.Redis:
        return connect(url)

    name = args.name or f"gw-{args.port}"
    config = GatewayConfig(name=name, host=args.host, port=args.port, heartbeat_s=args.heartbeat_s)
    gateway = build_gateway(config, make_client, secret)
    setup = make_client()
    try:
        await Directory(setup).seed_demo()
    except Exception as exc:
        print(f"labkit gateway: cannot reach Redis at {url}: {exc}", file=sys.stderr)
        return 1
    finally:
        await setup.aclose()
    try:
        await gateway.start()
    except OSError as exc:
        print(f"labkit gateway: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    print(f"labkit gateway {name}: {gateway.url} on {url}", flush=True)
    await _until_stopped()
    await gateway.drain()
    return 0
