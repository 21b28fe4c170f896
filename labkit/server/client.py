"""An asyncio client for notebooks, tests and ``labkit chat``.

Theory of operation
-------------------
The client keeps one WebSocket to one gateway of a list. Its lifecycle is a small table::

    connecting ──hello──▶ welcomed ──▶ live ──(closed / reconnect frame / drop())──▶ resuming
        ▲                                                                         │
        └──────────────────────── backoff, next gateway URL ◀──────────────────────┘

Resuming sends ``hello`` with the ``last_seen`` and ``epochs`` kept by
:class:`~labkit.core.client_state.ClientState`, so the gateway gap-fills whatever was missed.
Posts not yet acknowledged are sent again, with the same ``id``, after every ``welcome``:
posts are idempotent, so nothing is lost and nothing is stored twice.

Every frame in or out, and every connection opened or lost, is appended to ``recording`` as a
:class:`~labkit.core.records.FrameRecord`: the notebooks draw these, and the invariant checker reads
them. Close code 4001 (``CloseCode.UNAUTHORIZED``) is final; every other loss is retried with
exponential backoff and seeded jitter (:func:`labkit.core.backoff.backoff_delay`).

This module holds the lifecycle and the handling of incoming frames. The request API (``post``,
``history``, ``join``, ``leave``, ``ping``, ``typing``, ``presence_sub``, ``send_raw``) and the
matching of replies to requests by ``id`` live in :mod:`labkit.server.client_requests`, whose
``ClientRequests`` :class:`Client` extends; :class:`ClientError` is defined there and importable
here.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from labkit.core import protocol as p
from labkit.core.backoff import backoff_delay
from labkit.core.client_state import GAP, ClientState
from labkit.core.records import FrameRecord, Recording
from labkit.server.client_requests import ClientError, ClientRequests

__all__ = ["Client", "ClientError", "Phase", "Unauthorized"]

log = logging.getLogger(__name__)


class Phase(enum.StrEnum):
    CONNECTING = "connecting"
    WELCOMED = "welcomed"
    RESUMING = "resuming"
    CLOSED = "closed"


class Unauthorized(ClientError):
    """Close 4001 (``CloseCode.UNAUTHORIZED``): the token was refused. The client does not retry."""


class Client(ClientRequests):
    """One user's connection, with resume, backoff, heartbeats and a record of every frame."""

    def __init__(
        self,
        user: str,
        urls: str | Sequence[str],
        token: str | Callable[[], str],
        *,
        name: str | None = None,
        recording: Recording | None = None,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
        reconnect: bool = True,
        backoff_s: tuple[float, float] = (0.05, 2.0),
        heartbeat: bool = True,
        request_timeout_s: float = 10.0,
        max_size: int | None = 16 * 1024 * 1024,
        state: ClientState | None = None,
    ) -> None:
        super().__init__()
        self.user = user
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        if not self.urls:
            raise ValueError("a client needs at least one gateway URL")
        self._token = token if callable(token) else (lambda: token)
        self.name = name or f"{user}#1"
        self.recording = recording if recording is not None else Recording()
        self.clock = clock
        self.rng = random.Random(seed)
        self.reconnect = reconnect
        self.backoff_s = backoff_s
        self.heartbeat = heartbeat
        self.request_timeout_s = request_timeout_s
        self.max_size = max_size

        self.state = state if state is not None else ClientState()
        """``last_seen``/``epochs`` bookkeeping; a learner's ``ClientState`` can stand in."""
        self.phase = Phase.CONNECTING
        self.session = 0
        self.welcome: p.Welcome | None = None
        self.gateway_url: str | None = None
        self.messages: dict[str, list[p.Message]] = {}
        self.typing_events: list[p.TypingEvent] = []
        self.presence: dict[str, p.Presence] = {}
        self.errors: list[p.Error] = []
        self.gaps: list[tuple[str, int, int]] = []
        self.duplicates: list[tuple[str, int]] = []
        self.resets: list[p.Reset] = []
        self.close_codes: list[int | None] = []

        self._url_index = 0
        self._ws: ClientConnection | None = None
        self._runner: asyncio.Task[None] | None = None
        self._welcomed = asyncio.Event()
        self._reading = asyncio.Event()
        self._reading.set()
        self._changed = asyncio.Condition()
        self._fatal: BaseException | None = None
        self._closing = False

    # -- lifecycle --------------------------------------------------------------------------

    async def connect(self, timeout: float = 10.0) -> p.Welcome:
        """Start the connection loop and wait for the first ``welcome``."""
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name=f"labkit-client-{self.name}")
        await self._wait(self._welcomed.wait(), timeout, "welcome")
        if self._fatal is not None:
            raise self._fatal
        assert self.welcome is not None
        return self.welcome

    async def close(self) -> None:
        """Close for good: no reconnect."""
        self._closing = True
        self.phase = Phase.CLOSED
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.close(), 2)
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._runner
        self._cancel_pending()

    async def drop(self) -> None:
        """Cut the connection from the client side, abruptly (the client then resumes)."""
        if self._ws is not None and self._ws.transport is not None:
            self._ws.transport.abort()

    def pause_reading(self) -> None:
        """Stop reading frames: the client becomes a slow consumer."""
        self._reading.clear()

    def resume_reading(self) -> None:
        self._reading.set()

    @property
    def connected(self) -> bool:
        return self.phase == Phase.WELCOMED

    async def _run(self) -> None:
        attempt = 0
        while not self._closing:
            url = self.urls[self._url_index % len(self.urls)]
            try:
                async with connect(
                    url,
                    compression=None,
                    proxy=None,
                    max_size=self.max_size,
                    ping_interval=None,
                    open_timeout=5,
                    close_timeout=2,
                ) as ws:
                    self._ws = ws
                    attempt = 0
                    await self._session(ws, url)
            except (OSError, InvalidHandshake, TimeoutError, ConnectionClosed) as exc:
                log.debug("%s: connection to %s failed: %s", self.name, url, exc)
            except InvalidURI as exc:
                self._fail(exc)
            finally:
                self._ws = None
            if self._fatal is not None or self._closing or not self.reconnect:
                break
            self._url_index += 1
            attempt += 1
            base_s, cap_s = self.backoff_s
            await asyncio.sleep(backoff_delay(attempt, self.rng, base_s, cap_s))
        self.phase = Phase.CLOSED
        self._welcomed.set()  # release a connect() still waiting

    def _fail(self, exc: BaseException) -> None:
        self._fatal = exc
        self._welcomed.set()

    async def _session(self, ws: ClientConnection, url: str) -> None:
        self.phase = Phase.RESUMING if self.session else Phase.CONNECTING
        last_seen, epochs = self.state.hello_fields()
        await self._send(p.Hello(self._token(), last_seen, epochs), ws)
        beats: asyncio.Task[None] | None = None
        try:
            while True:
                await self._reading.wait()
                data = await ws.recv()
                if await self._on_frame(data, url):
                    break
                if beats is None and self.heartbeat and self.welcome is not None:
                    beats = asyncio.create_task(self._heartbeats(ws, self.welcome.heartbeat_s))
        except ConnectionClosed:
            pass
        finally:
            if beats is not None:
                beats.cancel()
            code = ws.close_code
            self.close_codes.append(code)
            if self.phase == Phase.WELCOMED:
                self._record("close", {"code": code, "reason": ws.close_reason or ""})
            self.phase = Phase.RESUMING
            if code == p.CloseCode.UNAUTHORIZED:
                error = next((e for e in reversed(self.errors)), None)
                self._fail(Unauthorized(error or p.Error(p.ErrorCode.UNAUTHORIZED, "refused")))

    async def _heartbeats(self, ws: ClientConnection, heartbeat_s: float) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.sleep(heartbeat_s / 2)
                await self._send(p.Ping(), ws)

    # -- incoming frames --------------------------------------------------------------------

    async def _on_frame(self, data: str | bytes, url: str) -> bool:
        """Handle one frame; True means: leave this connection (the server asked us to)."""
        try:
            frame = p.parse_server_frame(data)
        except p.ProtocolError as exc:
            log.warning("%s: unreadable frame from the server: %s", self.name, exc)
            return False
        if isinstance(frame, p.Welcome):
            self.session += 1  # before recording, so the welcome belongs to its session
        self._record("in", json.loads(data))
        if isinstance(frame, p.Welcome):
            self._on_welcome(frame, url)
        elif isinstance(frame, p.Message):
            self._on_message(frame)
        elif isinstance(frame, p.Ack):
            self._settle_post(frame.id, frame)
        elif isinstance(frame, p.Reset):
            self.state.on_reset(frame.channel, frame.head, frame.epoch)
            self.resets.append(frame)
        elif isinstance(frame, p.Joined):
            self.state.on_joined(frame.channel, frame.head, frame.epoch)
            self.messages.setdefault(frame.channel, [])
            self._settle(frame.id, frame)
        elif isinstance(frame, p.Left):
            self.state.on_left(frame.channel)
            self._settle(frame.id, frame)
        elif isinstance(frame, p.HistoryReply | p.Pong):
            self._settle(frame.id, frame)
        elif isinstance(frame, p.TypingEvent):
            self.typing_events.append(frame)
        elif isinstance(frame, p.Presence):
            self.presence[frame.user] = frame
        elif isinstance(frame, p.PresenceDigest):
            for change in frame.changes:
                self.presence[change.user] = change
        elif isinstance(frame, p.Error):
            self._on_error(frame)
        elif isinstance(frame, p.Reconnect):
            return True
        async with self._changed:
            self._changed.notify_all()
        return False

    def _on_welcome(self, frame: p.Welcome, url: str) -> None:
        self.welcome = frame
        self.gateway_url = url
        self.phase = Phase.WELCOMED
        self.state.on_welcome({ch: (i.head, i.epoch) for ch, i in frame.channels.items()})
        for channel in frame.channels:
            self.messages.setdefault(channel, [])
        self._record("open", {"url": url, "gateway": frame.gateway})
        self._resend_pending()
        self._welcomed.set()

    def _on_message(self, frame: p.Message) -> None:
        verdict = self.state.on_message(frame.channel, frame.seq)
        if verdict.kind == GAP and verdict.missing is not None:
            self.gaps.append((frame.channel, *verdict.missing))
            log.warning("%s: gap in #%s: %s", self.name, frame.channel, verdict.missing)
        elif verdict.kind != "new":
            self.duplicates.append((frame.channel, frame.seq))
            return
        self.messages.setdefault(frame.channel, []).append(frame)

    def _on_error(self, frame: p.Error) -> None:
        self.errors.append(frame)
        self._settle_error(frame)

    # -- waiting for things -----------------------------------------------------------------

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until ``predicate()`` holds (checked after every frame received)."""

        async def waiter() -> None:
            async with self._changed:
                await self._changed.wait_for(predicate)

        await self._wait(waiter(), timeout, "expected state")

    async def wait_for_seq(self, channel: str, seq: int, timeout: float = 5.0) -> None:
        await self.wait_until(lambda: self.state.last_seen.get(channel, 0) >= seq, timeout)

    def seqs(self, channel: str) -> list[int]:
        return [m.seq for m in self.messages.get(channel, [])]

    def texts(self, channel: str) -> list[str]:
        return [m.text for m in self.messages.get(channel, [])]

    def _record(self, kind: Any, frame: dict[str, Any]) -> None:
        self.recording.add(
            FrameRecord(self.clock(), self.name, self.user, self.session, kind, frame)
        )
