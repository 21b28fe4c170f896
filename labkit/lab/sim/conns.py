"""The client's end of a simulated connection: the connection itself, and frames arriving.

A frame the gateway machine writes is one encoded string; a simulated client reads it as the
parsed frame. Fanout writes the same stored string to many connections on every gateway, so
it is parsed once and that one copy is shared, as the clients share the frame.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from labkit.core.auth import TokenError

if TYPE_CHECKING:
    from labkit.lab.sim.client import SimClient
    from labkit.lab.sim.gateway import SimGateway

Frame = dict[str, Any]


class SimConn:
    """One client connection, as both ends see it."""

    __slots__ = ("client", "client_open", "gateway", "gw_open", "id", "user")

    def __init__(self, conn_id: str, client: SimClient, gateway: SimGateway) -> None:
        self.id = conn_id
        self.client = client
        self.gateway = gateway
        self.user = client.user
        self.gw_open = True
        """The gateway has not seen it close."""
        self.client_open = True
        """The client has not seen it close; frames arriving after that are lost."""

    def __repr__(self) -> str:
        return f"SimConn({self.id}, {self.user})"


_parsed: dict[str, Frame] = {}
"""The last payloads parsed: every gateway writes a stored message as the same string, and
the simulated clients of all of them share one parsed copy (as they share the frame)."""


def _parse(payload: str) -> Frame:
    frame = _parsed.get(payload)
    if frame is None:
        if len(_parsed) > 256:
            _parsed.clear()
        frame = _parsed[payload] = json.loads(payload)
    return frame


def deliver_batch(conns: list[SimConn], payload: str) -> None:
    """One fanout write reaching its recipients (the hot path of the whole simulation): parsed
    once for all of them, and a ``message`` goes straight to the clients' message handler."""
    frame = _parse(payload)
    if frame.get("type") == "message":
        for conn in conns:
            if conn.client_open:
                conn.client.on_message(conn, frame)
        return
    for conn in conns:
        if conn.client_open:
            conn.client.on_frame(conn, frame)


def deliver_many(conn: SimConn, payloads: list[str]) -> None:
    """Frames written to one connection, arriving together and in order."""
    client = conn.client
    for payload in payloads:
        if not conn.client_open:
            return
        client.on_frame(conn, json.loads(payload))


def sim_token_user(token: str, now: float) -> str:
    """Simulated clients present ``sim:<user>``; anything else is refused like a bad token."""
    if not token.startswith("sim:"):
        raise TokenError("malformed", "a simulated token is sim:<user>")
    return token[4:]
