"""Node's ``ws`` as a peer: install it on first use, then start ``server.js`` processes."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

from labkit.bench.context import Context, Skip
from labkit.bench.procs import REPO_ROOT, Child, stop_all
from labkit.bench.rigs import Rig

NODE_DIR = REPO_ROOT / "benchmarks" / "node_ws"


async def ensure_installed(log_dir: Path) -> Path:
    """``benchmarks/node_ws`` with its ``node_modules``; runs ``npm install`` when missing."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise Skip("node and npm are not on PATH (Debian: apt-get install nodejs npm)")
    if not (NODE_DIR / "server.js").exists():
        raise Skip(f"{NODE_DIR / 'server.js'} not found (run from a labkit checkout)")
    if (NODE_DIR / "node_modules" / "ws").is_dir() and (
        NODE_DIR / "node_modules" / "ioredis"
    ).is_dir():
        return NODE_DIR
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / "npm-install.log", "ab") as log:
        proc = await asyncio.create_subprocess_exec(
            "npm",
            "install",
            "--no-audit",
            "--no-fund",
            "--prefix",
            str(NODE_DIR),
            stdout=log,
            stderr=log,
            cwd=str(NODE_DIR),
        )
        code = await proc.wait()
    if code != 0:
        raise Skip(f"npm install --prefix {NODE_DIR} failed (see logs/npm-install.log)")
    return NODE_DIR


async def start_node(log_dir: Path, name: str, redis_url: str | None = None) -> Child:
    argv = ["node", str(NODE_DIR / "server.js"), "--port", "0"]
    if redis_url is not None:
        argv += ["--redis", redis_url]
    return await Child.start(name, argv, log_dir)


@contextlib.asynccontextmanager
async def node_rig(
    ctx: Context, tag: str, *, processes: int = 1, redis_url: str | None = None
) -> AsyncIterator[Rig]:
    await ensure_installed(ctx.logs)
    servers: list[Child] = []
    try:
        for i in range(processes):
            servers.append(await start_node(ctx.logs, f"{tag}-node{i + 1}", redis_url))
        yield Rig(
            system="node-ws",
            protocol="raw",
            servers=servers,
            urls=[f"ws://127.0.0.1:{s.ready['port']}/" for s in servers],
        )
    finally:
        await stop_all(servers)
