"""A lean WebSocket client connection for the harness: websockets' own protocol core, no tasks.

The harness holds thousands of connections and must not be the bottleneck of what it measures.
The asyncio client of websockets wakes a task for every message; this adapter feeds bytes to
the library's sans-I/O :class:`~websockets.client.ClientProtocol` from an
:class:`asyncio.Protocol` callback and hands each text frame to a plain function, so a delivery
costs one parse and one call. Handshake, masking, ping/pong and closing are the library's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri


class WireConn(asyncio.Protocol):
    """One client connection. ``on_text(bytes)`` gets every text frame once the connection is
    open, except while :meth:`recv` waits for one."""

    def __init__(self, url: str, on_text: Callable[[bytes], None], max_size: int | None) -> None:
        self.uri = parse_uri(url)
        self.proto = ClientProtocol(self.uri, max_size=max_size)
        self.on_text = on_text
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self._waiter: asyncio.Future[bytes] | None = None

    @classmethod
    async def open(
        cls,
        url: str,
        on_text: Callable[[bytes], None],
        *,
        timeout: float,
        max_size: int | None = None,
    ) -> WireConn:
        conn = cls(url, on_text, max_size)
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            await loop.create_connection(lambda: conn, conn.uri.host, conn.uri.port)
            await conn.opened
        return conn

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.proto.send_request(self.proto.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        self.proto.receive_data(data)
        for event in self.proto.events_received():
            if isinstance(event, Frame):
                if event.opcode is Opcode.TEXT:
                    waiter = self._waiter
                    if waiter is not None and not waiter.done():
                        self._waiter = None
                        waiter.set_result(bytes(event.data))
                    else:
                        payload = event.data
                        self.on_text(payload if isinstance(payload, bytes) else bytes(payload))
            elif isinstance(event, Response) and not self.opened.done():
                if self.proto.state is State.OPEN:
                    self.opened.set_result(None)
                else:
                    self.opened.set_exception(
                        ConnectionError(f"handshake refused: {event.status_code}")
                    )
        self._flush()

    def eof_received(self) -> bool | None:
        self.proto.receive_eof()
        self._flush()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        error = exc or ConnectionError("connection closed")
        if not self.opened.done():
            self.opened.set_exception(error)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(error)
        if not self.closed.done():
            self.closed.set_result(None)

    def _flush(self) -> None:
        transport = self.transport
        if transport is None:
            return
        for data in self.proto.data_to_send():
            if data:
                transport.write(data)
            else:
                transport.close()  # the protocol asks for the end of the TCP connection
        if self.proto.close_expected() and not transport.is_closing():
            loop = asyncio.get_running_loop()
            loop.call_later(1.0, transport.abort)

    # -- what the harness uses ---------------------------------------------------------------

    @property
    def close_code(self) -> int | None:
        return self.proto.close_code

    @property
    def is_open(self) -> bool:
        return self.proto.state is State.OPEN and not self.closed.done()

    def send(self, text: str) -> None:
        if self.proto.state is State.OPEN:
            self.proto.send_text(text.encode())
            self._flush()

    async def recv(self, timeout: float) -> bytes:
        """The next text frame (instead of ``on_text``)."""
        self._waiter = asyncio.get_running_loop().create_future()
        async with asyncio.timeout(timeout):
            return await self._waiter

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
