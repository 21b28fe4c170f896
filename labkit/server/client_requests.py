"""What a client asks of the server: requests matched to replies by ``id``, posts kept until
acknowledged, and the frames it sends.

:class:`ClientRequests` is the request half of :class:`labkit.server.client.Client`; the
connection lifecycle and the handling of incoming frames live there. Every request carries an
``id`` of the form ``<per-run prefix>-<kind><counter>`` (PROTOCOL.md, Transport: "a counter with
a per-run prefix"), and the direct reply carrying the same ``id`` settles its future. A ``post``
stays pending until its ``ack`` or ``error``, and is sent again with the same ``id`` after every
``welcome``: posts are idempotent (PROTOCOL.md, Messages), so a retry never stores twice.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import itertools
import json
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from labkit.core import protocol as p


class ClientError(Exception):
    """The server answered a request with an ``error`` frame."""

    def __init__(self, error: p.Error) -> None:
        super().__init__(f"{error.code}: {error.message}")
        self.code = error.code
        self.message = error.message
        self.id = error.id


class ClientRequests(abc.ABC):
    """Requests, pending posts and sending; the subclass owns the connection and the record."""

    name: str
    request_timeout_s: float
    _ws: ClientConnection | None

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._post_prefix = uuid.uuid4().hex[:8]
        self._pending_posts: dict[str, tuple[p.Post, asyncio.Future[p.Ack]]] = {}
        self._requests: dict[str, asyncio.Future[Any]] = {}

    @property
    @abc.abstractmethod
    def connected(self) -> bool:
        """Welcomed on a live connection: only then may a post go out at once."""

    @abc.abstractmethod
    def _record(self, kind: Any, frame: dict[str, Any]) -> None:
        """Append one frame (``"out"`` here) to the client's recording."""

    # -- the request API --------------------------------------------------------------------

    async def post(self, channel: str, text: str, *, id: str | None = None) -> p.Ack:
        """Post and wait for the ack; retried with the same id across reconnects."""
        post = p.Post(id or self._new_id("m"), channel, text)
        future: asyncio.Future[p.Ack] = asyncio.get_running_loop().create_future()
        self._pending_posts[post.id] = (post, future)
        if self.connected:
            await self._send_quietly(post)
        ack: p.Ack = await self._wait(future, self.request_timeout_s, f"ack of {post.id}")
        return ack

    async def history(self, channel: str, after: int = 0, limit: int = 100) -> p.HistoryReply:
        reply = await self._request(lambda i: p.History(i, channel, after, limit))
        assert isinstance(reply, p.HistoryReply)
        return reply

    async def join(self, channel: str) -> p.Joined:
        reply = await self._request(lambda i: p.Join(i, channel))
        assert isinstance(reply, p.Joined)
        return reply

    async def leave(self, channel: str) -> p.Left:
        reply = await self._request(lambda i: p.Leave(i, channel))
        assert isinstance(reply, p.Left)
        return reply

    async def ping(self) -> p.Pong:
        reply = await self._request(lambda i: p.Ping(i))
        assert isinstance(reply, p.Pong)
        return reply

    async def typing(self, channel: str) -> None:
        await self._send(p.Typing(channel))

    async def presence_sub(self, users: Sequence[str], digest_s: float | None = None) -> None:
        await self._send(p.PresenceSub(tuple(users), digest_s))

    async def send_raw(self, data: str | bytes) -> None:
        """Send anything at all (tests of the gateway's error handling use this)."""
        if self._ws is None:
            raise ConnectionError(f"{self.name} is not connected")
        await self._ws.send(data)

    # -- request and settle bookkeeping -----------------------------------------------------

    def _new_id(self, kind: str) -> str:
        return f"{self._post_prefix}-{kind}{next(self._ids)}"

    async def _request(self, make: Callable[[str], p.ClientFrame]) -> Any:
        request_id = self._new_id("r")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._requests[request_id] = future
        await self._send(make(request_id))
        return await self._wait(future, self.request_timeout_s, request_id)

    def _settle_post(self, request_id: str, ack: p.Ack) -> None:
        entry = self._pending_posts.pop(request_id, None)
        if entry is not None and not entry[1].done():
            entry[1].set_result(ack)

    def _settle(self, request_id: str | None, result: Any) -> None:
        future = self._requests.pop(request_id, None) if request_id is not None else None
        if future is None or future.done():
            return
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)

    def _settle_error(self, frame: p.Error) -> None:
        """Fail the post or request the ``error`` names by ``id`` (PROTOCOL.md, Errors)."""
        if frame.id is None:
            return
        if frame.id in self._pending_posts:
            _, future = self._pending_posts.pop(frame.id)
            if not future.done():
                future.set_exception(ClientError(frame))
        else:
            self._settle(frame.id, ClientError(frame))

    def _resend_pending(self) -> None:
        """After a ``welcome``, send every unacknowledged post again with its own ``id``: the
        retry is safe because posts are idempotent (PROTOCOL.md, Messages)."""
        for post, _ in list(self._pending_posts.values()):
            asyncio.get_running_loop().create_task(self._send_quietly(post))

    def _cancel_pending(self) -> None:
        for _, future in self._pending_posts.values():
            if not future.done():
                future.cancel()

    # -- sending ----------------------------------------------------------------------------

    async def _send(self, frame: p.ClientFrame, ws: ClientConnection | None = None) -> None:
        ws = ws or self._ws
        if ws is None:
            raise ConnectionError(f"{self.name} is not connected")
        text = p.encode_client(frame)
        await ws.send(text)
        self._record("out", json.loads(text))

    async def _send_quietly(self, frame: p.ClientFrame) -> None:
        with contextlib.suppress(ConnectionError, ConnectionClosed):
            await self._send(frame)

    async def _wait(self, awaitable: Any, timeout: float, what: str) -> Any:
        try:
            return await asyncio.wait_for(awaitable, timeout)
        except TimeoutError:
            raise TimeoutError(f"{self.name}: no {what} within {timeout:g} s") from None
