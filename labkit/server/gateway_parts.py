"""What a live gateway is tuned with, and read-only views of its connections.

:class:`GatewayConfig` holds the driver's settings (where to listen) and the machine's
(:class:`~labkit.core.gateway.MachineConfig`); :class:`Conn` is what widgets, fault injection and
tests see of one connection: the machine's state next to its WebSocket.
"""

from __future__ import annotations

from dataclasses import dataclass

from websockets.asyncio.server import ServerConnection

from labkit.core.gateway import ConnState, MachineConfig


@dataclass(slots=True)
class GatewayConfig:
    """Everything a gateway can be tuned with; the defaults follow PROTOCOL.md."""

    name: str = "gw-1"
    host: str = "127.0.0.1"
    port: int = 0
    """0 picks a free port; read the chosen one from ``Gateway.port``."""
    heartbeat_s: float = 10.0
    hello_timeout_s: float = 5.0
    max_frame_bytes: int = 64 * 1024
    max_buffer_bytes: int = 1024 * 1024
    """Outgoing bytes a connection may have queued before it is a slow consumer (4008)."""
    head_check_s: float = 0.5
    fill_page: int = 200
    rate_per_s: float = 50.0
    rate_burst: float = 100.0
    typing_interval_s: float = 2.0
    backlog: int = 2048
    tick_s: float = 0.25
    """How often the machine hears the time (silence, head checks, digests, stalled readers)."""
    subscribe_first: bool = True
    """False only for the weaker ``history_before_subscribe`` design."""

    def machine(self) -> MachineConfig:
        """The machine's share of these settings."""
        return MachineConfig(
            name=self.name,
            heartbeat_s=self.heartbeat_s,
            hello_timeout_s=self.hello_timeout_s,
            max_buffer_bytes=self.max_buffer_bytes,
            head_check_s=self.head_check_s,
            fill_page=self.fill_page,
            rate_per_s=self.rate_per_s,
            rate_burst=self.rate_burst,
            typing_interval_s=self.typing_interval_s,
            subscribe_first=self.subscribe_first,
        )


@dataclass(frozen=True, slots=True)
class Conn:
    """One live connection: the machine's view of it and its WebSocket."""

    state: ConnState
    ws: ServerConnection

    @property
    def id(self) -> str:
        return self.state.id

    @property
    def user(self) -> str:
        return self.state.user

    @property
    def welcomed(self) -> bool:
        return self.state.welcomed

    def buffered(self) -> int:
        """Bytes waiting in the connection's outgoing buffer."""
        return buffered(self.ws)


def buffered(ws: ServerConnection) -> int:
    """Bytes waiting in a connection's outgoing buffer."""
    transport = ws.transport
    return transport.get_write_buffer_size() if transport is not None else 0
