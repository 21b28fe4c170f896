"""Socket.IO clients for the harness: python-socketio's own client, one per connection.

The harness (:mod:`labkit.bench.harness`) calls :func:`run_socketio_conn` for each connection
when its spec says ``protocol: "socketio"``; received ``message`` events are counted (and timed)
by the same code that counts labkit's and the baselines' frames.
"""

from __future__ import annotations

import contextlib
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from labkit.bench.harness import Conn, Harness

_session: Any = None


def shared_session() -> Any:
    """One aiohttp session for every client of the process (as a load tester would share)."""
    global _session
    if _session is None:
        import aiohttp

        _session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    return _session


def new_client(on_message: Any, *, shared: bool = True) -> Any:
    """A client without reconnection; ``shared`` puts it on the process's one aiohttp session."""
    import socketio

    if shared:
        client = socketio.AsyncClient(reconnection=False, http_session=shared_session())
    else:
        client = socketio.AsyncClient(reconnection=False)
    client.on("message", on_message)
    return client


async def run_socketio_conn(h: Harness, conn: Conn) -> None:
    def on_message(data: Any) -> None:
        if h.spec.parse and isinstance(data, dict):
            h.on_message(conn, data)
        else:
            h._count(conn)

    client = new_client(on_message)
    conn.ws = client
    try:
        async with h._sem:
            await client.connect(
                conn.url, transports=["websocket"], wait_timeout=h.spec.connect_timeout
            )
            conn.open = True
            h._settle(conn)
    except Exception as exc:
        conn.failed = True
        print(f"harness: socket.io connection {conn.index} failed: {exc!r}", file=sys.stderr)
        h._settle(conn)
        return
    try:
        await client.wait()
    finally:
        conn.open = False
        conn.closes += 1
        with contextlib.suppress(Exception):
            await client.disconnect()
