"""Flow control and closing: slow readers, silent connections, graceful drain.

Rules (PROTOCOL.md, "Heartbeats", "Slow consumers", "Draining"):

* **Slow consumer.** Writes never wait for a reader. A connection with more than
  ``max_buffer_bytes`` queued when a live frame is written to it is closed 4008; the driver
  reports levels (:class:`~labkit.core.gateway.events.BufferLevel`) after live writes and on
  every tick, so a stalled reader is cut off even when its channels go quiet. Gap-fill pages
  are paced by the reader (the next page waits for ``Writable``), so their backlog alone never
  counts.
* **Silence.** A welcomed connection that has sent nothing for 3 × ``heartbeat_s`` is closed
  4002. A connection that never sends ``hello`` is refused after ``hello_timeout_s`` (4001).
* **Drain.** ``reconnect`` to every connection, then close 1012; the driver bounds each close,
  so one slow reader cannot hold the shutdown.
* **Closing** is final: nothing more is queued for a connection being closed.
"""

from __future__ import annotations

from labkit.core import protocol as p
from labkit.core.gateway.state import ConnState, GatewayState, Phase


class Flow:
    """The flow-control and closing part of the gateway machine."""

    def __init__(self, st: GatewayState) -> None:
        self.st = st

    def on_buffer_level(self, conn: ConnState, queued: int, live_write: bool) -> None:
        """Over the bound: a slow consumer, unless the backlog is a gap-fill page waiting for
        the reader (paced, so it never counts) and no live frame was queued on top of it."""
        if queued <= self.st.config.max_buffer_bytes or conn.phase is Phase.CLOSING:
            return
        if live_write or not conn.pacing:
            self.st.stats["slow_closed"] += 1
            self.st.close(conn, p.CloseCode.SLOW_CONSUMER, "slow consumer")

    def check_silence(self, conn: ConnState, now: float) -> None:
        silent_after = 3 * self.st.config.heartbeat_s
        if conn.welcomed and now - conn.last_heard > silent_after:
            self.st.stats["silent_closed"] += 1
            self.st.close(conn, p.CloseCode.SILENT, "no heartbeat")

    def drain(self) -> None:
        st = self.st
        reconnect = p.encode(p.Reconnect("draining"))
        for conn in list(st.conns.values()):
            if conn.phase is not Phase.CLOSING:
                st.send_raw(conn, reconnect)
                st.close(conn, p.CloseCode.SERVICE_RESTART, "draining")
