"""The client harness: N WebSocket clients in one process, the same for labkit and every peer.

``python -m labkit.bench.harness SPEC.json`` opens ``count`` connections (connection ``i`` to
``urls[i % len(urls)]``), then counts what arrives and answers the parent's commands (the line
protocol of :mod:`labkit.bench.control`). One harness serves every system, so differences in
the figures are the servers', not the clients':

- ``protocol: "labkit"`` sends ``hello`` with the connection's token (and, when it resumes,
  ``last_seen`` and ``epochs``) and waits for ``welcome``; ``"raw"`` sends nothing first (the
  websockets baseline and Node's ``ws``); ``"socketio"`` uses python-socketio's own client
  (:mod:`labkit.bench.peers.socketio_client`), since a Socket.IO server speaks its own protocol.
- Every ``message`` frame counts as a delivery. With ``parse`` the frame is decoded: its seq is
  checked (gaps and duplicates are counted) and, when the text starts with ``t=<unix time>``,
  the post → receive delay is recorded against this machine's clock.

Commands: ``report``; ``reset`` (zero the counters); ``wait`` (until ``total`` deliveries, then
report); ``until`` (the same, answering only the count: the parent's pacing gate); ``ping``
(each connection sends ``{"type":"ping"}`` every ``interval`` seconds, spread evenly;
``interval: null`` stops); ``wait_closed``; ``go`` (resume: every closed connection
reconnects at once to ``urls`` with its ``last_seen``; the report says when each one reached
``head``); ``quit``.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import itertools
import json
import random
import sys
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labkit.bench.control import commands, emit, raise_nofile
from labkit.core.stats import percentile

MESSAGE_PREFIX = b'{"type":"message"'
PONG_PREFIX = b'{"type":"pong"'
ERROR_PREFIX = b'{"type":"error"'
PING = '{"type":"ping"}'


@dataclass
class Spec:
    protocol: str
    urls: list[str]
    count: int
    tokens: list[str] = field(default_factory=list)
    channel: str = "bench"
    parse: bool = False
    ordered: bool = True
    """Check seqs (gaps, duplicates); off for peers that promise no order across processes."""
    connect_concurrency: int = 50
    """Handshakes in flight at once (a labkit gateway refuses hellos past ~100 in flight)."""
    connect_timeout: float = 60.0
    max_size: int = 16 * 1024 * 1024
    ping_s: float | None = None
    """Each open connection sends ``{"type":"ping"}`` every ``ping_s`` seconds from the moment it
    opens (a labkit gateway closes a connection silent for 3 heartbeat periods)."""
    resume: bool = False
    """Keep closed connections, and reconnect them at the ``go`` command."""
    max_attempts: int = 30
    """Attempts per connection before giving up on it (outside ``resume``)."""
    reconnect_concurrency: int = 100_000
    """Handshakes in flight at once after ``go`` (default: all at once)."""
    profile: str | None = None


@dataclass(slots=True, eq=False)
class Conn:
    index: int
    url: str
    ws: Any = None
    open: bool = False
    failed: bool = False
    count: int = 0
    last_seq: int = 0
    epoch: str | None = None
    close_code: int | None = None
    closes: int = 0
    pongs: int = 0
    errors: int = 0
    caught_at: float | None = None
    settled: bool = False


def _fields(data: bytes) -> dict[str, Any]:
    """``seq`` and ``text`` of a message frame, found without decoding the whole frame (the
    harness must not be what delays the deliveries it times); any surprise: ``json.loads``."""
    i = data.find(b'"seq":')
    j = data.find(b'"text":"t=')
    if i < 0 or j < 0:
        return dict(json.loads(data))
    i += 6
    end = i
    while 48 <= data[end] <= 57:  # digits
        end += 1
    stamp_end = data.find(b" ", j + 10)
    try:
        return {"seq": int(data[i:end]), "text": "t=" + data[j + 10 : stamp_end].decode()}
    except ValueError:
        return dict(json.loads(data))


def percentiles(values: Any, points: tuple[float, ...] = (50, 95, 99)) -> dict[str, Any]:
    """p50/p95/p99/max/mean of ``values`` (seconds), in milliseconds; empty when no values.

    Percentiles are nearest rank (:func:`labkit.core.stats.percentile`), like every latency
    labkit prints; ``quantiles_ms`` holds each whole percentile 0..100, for the plots."""
    data = sorted(values)
    if not data:
        return {}
    n = len(data)
    out: dict[str, Any] = {f"p{p:g}_ms": percentile(data, p / 100) * 1000 for p in points}
    out["max_ms"] = data[-1] * 1000
    out["mean_ms"] = sum(data) / n * 1000
    out["count"] = n
    out["quantiles_ms"] = [percentile(data, q / 100) * 1000 for q in range(101)]
    return out


class Harness:
    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.conns = [Conn(i, spec.urls[i % len(spec.urls)]) for i in range(spec.count)]
        self.total = 0
        self.first_rx = 0.0
        self.last_rx = 0.0
        self.gaps = 0
        self.dups = 0
        self.latencies: array[float] = array("d")
        self.pings = 0
        self.failures = 0
        self.head: int | None = None
        self.go_at = 0.0
        self.go = asyncio.Event()
        self._sem = asyncio.Semaphore(spec.connect_concurrency)
        self.rng = random.Random(7)
        self._tasks: list[asyncio.Task[None]] = []
        self._pinger: asyncio.Task[None] | None = None
        self._settled = 0
        self._until = 0
        self._reached: asyncio.Future[None] | None = None

    # -- receiving ------------------------------------------------------------------------

    def on_text(self, conn: Conn, data: bytes) -> None:
        if data.startswith(MESSAGE_PREFIX):
            if self.spec.parse:
                self.on_message(conn, _fields(data))
            else:
                self._count(conn)
        elif data.startswith(PONG_PREFIX):
            conn.pongs += 1
        elif data.startswith(ERROR_PREFIX):
            conn.errors += 1

    def _count(self, conn: Conn) -> float:
        now = time.time()
        if not self.total:
            self.first_rx = now
        self.total += 1
        self.last_rx = now
        conn.count += 1
        if self._reached is not None and self.total >= self._until:
            if not self._reached.done():
                self._reached.set_result(None)
            self._reached = None
        return now

    def on_message(self, conn: Conn, frame: dict[str, Any]) -> None:
        """A decoded ``message`` (from a labkit/raw frame or a Socket.IO event)."""
        seq = int(frame.get("seq", 0))
        if self.spec.ordered:
            if conn.last_seq and seq <= conn.last_seq:
                self.dups += 1
                return
            if conn.last_seq and seq > conn.last_seq + 1:
                self.gaps += 1
        conn.last_seq = max(seq, conn.last_seq)
        now = self._count(conn)
        text = frame.get("text", "")
        if isinstance(text, str) and text.startswith("t="):
            with contextlib.suppress(ValueError):
                self.latencies.append(now - float(text[2:].split(" ", 1)[0]))
        if self.head is not None and seq >= self.head and conn.caught_at is None:
            conn.caught_at = now

    # -- connections ----------------------------------------------------------------------

    async def run_conn(self, conn: Conn, token: str | None) -> None:
        if self.spec.protocol == "socketio":
            from labkit.bench.peers.socketio_client import run_socketio_conn

            await run_socketio_conn(self, conn)
            return
        attempt = 0
        while True:
            conn.failed = False
            await self._session(conn, token)
            if conn.failed:
                # Refused ("unavailable") or not listening: retry as labkit.server.client.Client
                # does,
                # exponentially from 50 ms to 2 s with jitter, so a crowd does not hammer the
                # server. Failed attempts are counted and reported.
                attempt += 1
                if not self.spec.resume and attempt >= self.spec.max_attempts:
                    self._settle(conn)
                    return
                if self.spec.resume and self.go_at == 0.0:
                    self._settle(conn)
                    await self.go.wait()
                delay = min(2.0, 0.05 * 2 ** min(attempt, 10)) * (0.5 + self.rng.random())
                await asyncio.sleep(delay)
                continue
            attempt = 0
            if not self.spec.resume:
                return
            await self.go.wait()

    def _settle(self, conn: Conn) -> None:
        """Count ``conn`` as done with its first connection attempts (open, or given up)."""
        if not conn.settled:
            conn.settled = True
            self._settled += 1

    async def _session(self, conn: Conn, token: str | None) -> None:
        from labkit.bench.wire import WireConn

        try:
            async with self._sem:
                ws = await WireConn.open(
                    conn.url,
                    lambda data: self.on_text(conn, data),
                    timeout=self.spec.connect_timeout,
                    max_size=self.spec.max_size,
                )
                conn.ws = ws
                if self.spec.protocol == "labkit":
                    await self._hello(conn, ws, token or "")
                conn.open = True
                self._settle(conn)
        except Exception as exc:
            conn.failed = True
            self.failures += 1
            if conn.ws is not None:
                conn.ws.abort()
            if self.failures <= 20 or self.failures % 1000 == 0:
                print(f"harness: connection {conn.index} failed: {exc!r}", file=sys.stderr)
            return
        try:
            await ws.closed
        finally:
            conn.open = False
            conn.closes += 1
            conn.close_code = ws.close_code

    async def _hello(self, conn: Conn, ws: Any, token: str) -> None:
        channel = self.spec.channel
        last_seen = {channel: conn.last_seq} if conn.last_seq else {}
        epochs = {channel: conn.epoch} if conn.epoch and conn.last_seq else {}
        ws.send(
            json.dumps({"type": "hello", "token": token, "last_seen": last_seen, "epochs": epochs})
        )
        while True:
            frame = json.loads(await ws.recv(self.spec.connect_timeout))
            if frame.get("type") == "welcome":
                info = frame.get("channels", {}).get(channel)
                if info is not None:
                    conn.epoch = info["epoch"]
                    if not conn.last_seq:
                        conn.last_seq = int(info["head"])
                return
            if frame.get("type") == "error":
                raise ConnectionError(f"refused: {frame.get('message')}")

    async def connect_all(self) -> None:
        tokens: list[str | None] = list(self.spec.tokens) or [None] * len(self.conns)
        start = time.monotonic()
        step = max(1, len(self.conns) // 20)
        self._tasks = [
            asyncio.create_task(self.run_conn(conn, tok))
            for conn, tok in zip(self.conns, tokens, strict=True)
        ]
        if self.spec.ping_s and self.spec.protocol != "socketio":  # Socket.IO beats by itself
            self._pinger = asyncio.create_task(self.pinger(self.spec.ping_s))
        reported = 0
        while self._settled < len(self.conns):
            await asyncio.sleep(0.02)
            if self._settled - reported >= step:
                reported = self._settled
                emit("progress", connected=sum(c.open for c in self.conns))
        await asyncio.sleep(0.05)
        emit(
            "ready",
            connected=sum(c.open for c in self.conns),
            failed=sum(c.failed for c in self.conns),
            connect_s=time.monotonic() - start,
            failed_attempts=self.failures,
            nofile=raise_nofile(),
        )

    # -- commands -------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        counts = [c.count for c in self.conns]
        codes: dict[str, int] = {}
        for c in self.conns:
            if c.closes:
                codes[str(c.close_code)] = codes.get(str(c.close_code), 0) + 1
        caught = [c.caught_at - self.go_at for c in self.conns if c.caught_at is not None]
        report: dict[str, Any] = {
            "total": self.total,
            "first_rx": self.first_rx,
            "last_rx": self.last_rx,
            "open": sum(c.open for c in self.conns),
            "closed": sum(1 for c in self.conns if c.closes),
            "close_codes": codes,
            "per_conn_min": min(counts, default=0),
            "per_conn_max": max(counts, default=0),
            "gaps": self.gaps,
            "dups": self.dups,
            "pings": self.pings,
            "pongs": sum(c.pongs for c in self.conns),
            "errors": sum(c.errors for c in self.conns),
            "failed_attempts": self.failures,
            "latency": percentiles(self.latencies),
        }
        if self.head is not None:
            report["caught"] = len(caught)
            report["caught_s"] = sorted(caught)
            report["behind_at_end"] = sum(1 for c in self.conns if c.last_seq < self.head)
        return report

    def reset(self) -> None:
        self.total = 0
        self.first_rx = self.last_rx = 0.0
        self.gaps = self.dups = self.pings = 0
        self.latencies = array("d")
        for c in self.conns:
            c.count = c.pongs = c.errors = 0

    async def wait_total(self, total: int, timeout: float) -> None:
        if self.total >= total:
            return
        self._until = total
        self._reached = asyncio.get_running_loop().create_future()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._reached, timeout)
        self._reached = None

    async def pinger(self, interval: float) -> None:
        """Each open connection pings every ``interval`` s; sends are spread over ticks."""
        tick = 0.02
        per_tick = max(1, round(len(self.conns) * tick / interval))
        cycle = itertools.cycle(self.conns)
        while True:
            started = time.monotonic()
            for _ in range(per_tick):
                conn = next(cycle)
                if conn.open and conn.ws is not None:
                    conn.ws.send(PING)
                    self.pings += 1
            await asyncio.sleep(max(0.0, tick - (time.monotonic() - started)))

    async def serve(self) -> None:
        async for command in commands():
            cmd = command.get("cmd")
            if cmd == "quit":
                break
            if cmd == "report":
                emit("report", **self.snapshot())
            elif cmd == "reset":
                self.reset()
                emit("reset")
            elif cmd == "wait":
                await self.wait_total(int(command["total"]), float(command.get("timeout", 30)))
                emit("report", **self.snapshot())
            elif cmd == "until":
                await self.wait_total(int(command["total"]), float(command.get("timeout", 30)))
                emit("total", total=self.total)
            elif cmd == "ping":
                if self._pinger is not None:
                    self._pinger.cancel()
                    self._pinger = None
                if command.get("interval"):
                    self._pinger = asyncio.create_task(self.pinger(float(command["interval"])))
                emit("ping")
            elif cmd == "wait_closed":
                deadline = time.monotonic() + float(command.get("timeout", 30))
                while any(c.open for c in self.conns) and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                emit("closed", open=sum(c.open for c in self.conns))
            elif cmd == "go":
                await self._go(command)
            else:
                emit("error", message=f"unknown command {cmd!r}")
        _dump_profile()
        for conn in self.conns:
            if conn.ws is not None and self.spec.protocol != "socketio":
                conn.ws.abort()

    async def _go(self, command: dict[str, Any]) -> None:
        urls = list(command["urls"])
        self.head = int(command["head"])
        for conn in self.conns:
            conn.url = urls[conn.index % len(urls)]
            conn.caught_at = None
        self.failures = 0
        self._sem = asyncio.Semaphore(self.spec.reconnect_concurrency)
        self.go_at = time.time()
        self.go.set()
        deadline = time.monotonic() + float(command.get("timeout", 60))
        while time.monotonic() < deadline:
            if all(c.caught_at is not None for c in self.conns):
                break
            await asyncio.sleep(0.005)
        emit("report", **self.snapshot())


_profiler: cProfile.Profile | None = None
_profile_path: str | None = None


def _dump_profile() -> None:
    global _profiler
    if _profiler is not None and _profile_path is not None:
        _profiler.disable()
        _profiler.dump_stats(_profile_path)
        _profiler = None


async def amain(spec: Spec) -> None:
    harness = Harness(spec)
    await harness.connect_all()
    await harness.serve()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    global _profiler, _profile_path
    spec = Spec(**json.loads(Path(args[0]).read_text()))
    raise_nofile()
    if spec.profile:
        _profiler, _profile_path = cProfile.Profile(), spec.profile
        _profiler.enable()
    try:
        asyncio.run(amain(spec))
    finally:
        _dump_profile()
    return 0


if __name__ == "__main__":
    sys.exit(main())
