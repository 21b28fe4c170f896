"""A private ``redis-server`` on a free port, for tests, benchmarks and notebooks.

Why a private server: the lab must never touch a Redis it did not start (a machine may run one
on 6379 holding someone's data), and some lessons need to *break* Redis on purpose: kill it with
SIGKILL, restart it, and see which data survived. Owning the process makes that safe.

The server runs in the foreground (``--daemonize no``) as our child, listens only on
127.0.0.1, never writes RDB snapshots (``--save ""``) and keeps its files in a temporary
folder. With ``appendonly=True`` every write goes to the AOF; ``appendfsync="always"`` makes
an acknowledged write survive a crash, which is what guarantee 4 of the protocol needs.

``redis-server --port 0`` does not listen on TCP at all, so the port is chosen here: bind a
socket to port 0, read the port the kernel gave, close it, and hand it to Redis. Another process
could grab the port in between; then Redis exits with "Address already in use" and ``start``
tries again with a new port.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
PORT_ATTEMPTS = 5
FORBIDDEN_PORTS = frozenset({6379})
"""Never hand out the port of the machine's shared Redis, even if it happens to be free."""

_live: set[subprocess.Popen[bytes]] = set()
"""Every server process still running, killed at interpreter exit so none outlives the tests."""


def _die_with_parent() -> None:
    """In the child, before exec: on Linux, ask the kernel to stop the server when the process
    that started it dies, even by SIGKILL (a crashed notebook kernel, say), when ``atexit``
    never runs. Elsewhere this does nothing."""
    if sys.platform != "linux":
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


_PR_SET_PDEATHSIG = 1


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_live):
        with contextlib.suppress(OSError):
            proc.kill()
            proc.wait(timeout=5)
    _live.clear()


class RedisServerError(RuntimeError):
    """The server could not be started; the message carries the tail of its log."""


def find_redis_server() -> str | None:
    """The path of the ``redis-server`` binary on PATH, or None when it is not installed."""
    return shutil.which("redis-server")


def _free_port() -> int:
    """A TCP port that was free a moment ago (the kernel's choice for a port-0 bind)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port not in FORBIDDEN_PORTS:
            return port


def _ping(port: int) -> bool:
    """True when a server on ``port`` answers PING with PONG (not LOADING or an error)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process we own: start, stop, crash and restart it at will.

    Use it as a context manager; leaving the block stops the server and deletes its folder.
    ``restart`` reuses the same port and folder, so clients reconnect to the same URL and, with
    ``appendonly=True``, find their data again.
    """

    def __init__(
        self,
        appendonly: bool = False,
        appendfsync: str = "always",
        *,
        binary: str | None = None,
    ) -> None:
        if appendfsync not in ("always", "everysec", "no"):
            raise ValueError(f"appendfsync must be always, everysec or no, not {appendfsync!r}")
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self._binary = binary
        self._dir: Path | None = None
        self._port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    # -- what clients need ------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RedisServerError("the server has not been started yet")
        return self._port

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The process id while running (lets a test freeze it with SIGSTOP), else None."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def dir(self) -> Path | None:
        """The folder holding the AOF and the log, kept across ``restart``."""
        return self._dir

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> RedisServer:
        """Start the server and return once it answers PING (at most 10 s).

        The first start picks a free port, retrying when another process took it first; later
        starts (``restart``) keep the port so existing URLs stay valid.
        """
        if self.running:
            return self
        binary = self._binary or find_redis_server()
        if binary is None:
            raise RedisServerError("redis-server not found on PATH")
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="labkit-redis-"))
        if self._port is not None:
            self._launch(binary, self._port)
            return self
        for attempt in range(PORT_ATTEMPTS):
            try:
                self._launch(binary, _free_port())
                return self
            except RedisServerError as err:
                if "Address already in use" not in str(err) or attempt == PORT_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def _launch(self, binary: str, port: int) -> None:
        assert self._dir is not None
        args = [
            binary,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", self.appendfsync,
            "--dir", str(self._dir),
            "--daemonize", "no",
        ]  # fmt: skip
        log_path = self._dir / "redis.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # The kernel ties "parent death" to the forking *thread*: only ask for it from
                # the main thread, or a worker thread's exit would stop the server.
                preexec_fn=(
                    _die_with_parent
                    if threading.current_thread() is threading.main_thread()
                    else None
                ),
            )
        _live.add(proc)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            if _ping(port):
                self._proc, self._port = proc, port
                return
            time.sleep(0.02)
        self._reap(proc, signal.SIGKILL)
        tail = self._log_tail()
        why = "exited" if proc.returncode not in (None, -signal.SIGKILL) else "did not answer"
        raise RedisServerError(
            f"redis-server on port {port} {why} within {START_TIMEOUT_S:.0f} s; log tail:\n{tail}"
        )

    def stop(self) -> None:
        """Shut down gracefully (SIGTERM): the AOF is flushed; no RDB is written."""
        if self._proc is not None:
            self._reap(self._proc, signal.SIGTERM)
            self._proc = None

    def kill(self) -> None:
        """Crash the server (SIGKILL): nothing is saved beyond what is already on disk."""
        if self._proc is not None:
            self._reap(self._proc, signal.SIGKILL)
            self._proc = None

    def restart(self) -> RedisServer:
        """Stop if running, then start again on the same port with the same folder."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the server and delete its folder; the object cannot be restarted afterwards."""
        self.stop()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _reap(self, proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)  # a frozen (SIGSTOP) server cannot exit
                proc.send_signal(sig)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        _live.discard(proc)

    def _log_tail(self, lines: int = 20) -> str:
        if self._dir is None:
            return ""
        try:
            text = (self._dir / "redis.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"RedisServer(port={self._port}, appendonly={self.appendonly}, {state})"
