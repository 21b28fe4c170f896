"""The parent side of the benchmarks' processes: spawn, talk to, measure and stop children.

Every server and the client harness runs as a child process speaking the line protocol of
:mod:`labkit.bench.control`. :class:`Child` reads its events, sends commands, and reads the
process's own accounting (CPU seconds and RSS) through psutil, which does not depend on who
the clients are. A child's stderr goes to a log file in the results folder; when a child fails,
the tail of that log is in the error message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psutil

REPO_ROOT = Path(__file__).resolve().parent.parent.parent


class ChildError(RuntimeError):
    """A child process died, said something unexpected, or did not answer in time."""


class Child:
    """One child process and its line protocol."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process, log_path: Path) -> None:
        self.name = name
        self.proc = proc
        self.log_path = log_path
        self.ps = psutil.Process(proc.pid)
        self.ready: dict[str, Any] = {}

    @classmethod
    async def start(
        cls,
        name: str,
        argv: Sequence[str],
        log_dir: Path,
        *,
        ready_timeout: float = 60.0,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        on_event: Callable[[dict[str, Any]], None] | None = None,
    ) -> Child:
        """Start ``argv`` and wait for its ``ready`` event (kept in :attr:`ready`)."""
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"{name}.log"
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        with open(log_path, "ab") as log:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                env=full_env,
                cwd=str(cwd) if cwd else None,
                limit=64 * 1024 * 1024,
            )
        child = cls(name, proc, log_path)
        try:
            child.ready = await child.expect("ready", ready_timeout, on_event=on_event)
        except BaseException:
            await child.kill()
            raise
        return child

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    async def event(self, timeout: float) -> dict[str, Any]:
        """The next event line; raises :class:`ChildError` on exit or timeout."""
        assert self.proc.stdout is not None
        while True:
            try:
                line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
            except TimeoutError:
                raise ChildError(
                    f"{self.name}: no answer within {timeout:g} s; log tail:\n{self.tail()}"
                ) from None
            if not line:
                await asyncio.sleep(0.1)
                raise ChildError(
                    f"{self.name} exited (code {self.proc.returncode}); log tail:\n{self.tail()}"
                )
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a stray print: not for us
            if isinstance(event, dict) and "event" in event:
                return event

    async def expect(
        self,
        kind: str,
        timeout: float,
        *,
        on_event: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Skip events until one of ``kind``; others (progress) go to ``on_event``."""
        while True:
            event = await self.event(timeout)
            if event["event"] == kind:
                return event
            if event["event"] == "error":
                raise ChildError(f"{self.name}: {event.get('message')}\n{self.tail()}")
            if on_event is not None:
                on_event(event)

    async def send(self, cmd: str, **fields: Any) -> None:
        assert self.proc.stdin is not None
        if self.proc.returncode is not None:
            raise ChildError(f"{self.name} has exited; log tail:\n{self.tail()}")
        self.proc.stdin.write((json.dumps({"cmd": cmd, **fields}) + "\n").encode())
        await self.proc.stdin.drain()

    async def request(
        self, cmd: str, reply: str, reply_within: float, **fields: Any
    ) -> dict[str, Any]:
        """Send ``cmd`` (with ``fields``) and wait up to ``reply_within`` s for ``reply``."""
        await self.send(cmd, **fields)
        return await self.expect(reply, reply_within)

    def cpu_s(self) -> float:
        """User + system CPU seconds of the process so far (its own accounting)."""
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def rss(self) -> int:
        return int(self.ps.memory_info().rss)

    async def stop(self, timeout: float = 10.0) -> None:
        """Ask politely (``quit``, then end of stdin), then terminate, then kill."""
        if self.proc.returncode is None:
            with contextlib.suppress(Exception):
                await self.send("quit")
            with contextlib.suppress(Exception):
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.terminate()
                try:
                    await asyncio.wait_for(self.proc.wait(), 5)
                except TimeoutError:
                    await self.kill()

    async def kill(self) -> None:
        """SIGKILL: the crash of a process (nothing is tidied)."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


def python_module(module: str, *args: str) -> list[str]:
    """argv running ``python -m module args`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


async def start_gateway(
    log_dir: Path,
    name: str,
    redis_url: str,
    secret: str,
    *,
    port: int = 0,
    profile: Path | None = None,
) -> Child:
    """A labkit gateway in its own process (``labkit.bench.servers gateway``)."""
    argv = python_module(
        "labkit.bench.servers",
        "gateway",
        "--name",
        name,
        "--port",
        str(port),
        "--redis",
        redis_url,
        "--secret",
        secret,
    )
    if profile is not None:
        argv += ["--profile", str(profile)]
    return await Child.start(name, argv, log_dir)


async def start_bare(log_dir: Path, name: str = "bare", *, port: int = 0) -> Child:
    """The bare websockets server: broadcast() of what it receives; pong to pings."""
    return await Child.start(
        name, python_module("labkit.bench.servers", "bare", "--port", str(port)), log_dir
    )


async def stop_all(children: Sequence[Child | None]) -> None:
    for child in children:
        if child is not None:
            with contextlib.suppress(Exception):
                await child.stop()


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


async def start_harness(
    log_dir: Path,
    name: str,
    spec: dict[str, Any],
    *,
    ready_timeout: float = 180.0,
    on_event: Callable[[dict[str, Any]], None] | None = None,
) -> Child:
    """The client harness (:mod:`labkit.bench.harness`) in its own process; waits until every
    connection was attempted (its ``ready`` event says how many are open)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    spec_path = log_dir / f"{name}.spec.json"
    spec_path.write_text(json.dumps(spec))
    return await Child.start(
        name,
        python_module("labkit.bench.harness", str(spec_path)),
        log_dir,
        ready_timeout=ready_timeout,
        on_event=on_event,
    )
