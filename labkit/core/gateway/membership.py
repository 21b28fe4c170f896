"""Membership: ``join`` and ``leave``, and telling the user's other connections.

Rules (PROTOCOL.md, "join / leave"):

* ``join`` answers ``joined`` with the channel's head and epoch, and the connection takes the
  channel live from that head. Joining a channel twice is harmless.
* ``leave`` answers ``left``; nothing of the channel reaches the connection afterwards.
* Every *other* connection of the same user, on any gateway, receives the same ``joined`` /
  ``left`` (without an id) and starts or stops taking the channel. The change travels the bus's
  control topic as a :class:`~labkit.core.gateway.bus_payloads.MembershipChange`.
* A connection still being welcomed holds the changes that reach it and applies them, in order,
  right after its ``welcome``.
"""

from __future__ import annotations

from typing import Any

from labkit.core import protocol as p
from labkit.core.gateway.bus_payloads import CONTROL_TOPIC, MembershipChange
from labkit.core.gateway.channels import Channels
from labkit.core.gateway.events import JoinChannel, LeaveChannel, Publish
from labkit.core.gateway.handshake import Handshake
from labkit.core.gateway.state import ConnState, GatewayState


class Membership:
    """The join / leave part of the gateway machine."""

    def __init__(self, st: GatewayState, channels: Channels, handshake: Handshake) -> None:
        self.st = st
        self.channels = channels
        self.handshake = handshake

    def on_join(self, conn: ConnState, frame: p.Join) -> None:
        st = self.st

        def joined(result: Any, error: str | None) -> None:
            if error is not None:
                self._unavailable(conn, error, frame.id)
                return
            newly, head, epoch = result
            if not conn.writable:
                return
            st.send(conn, p.Joined(frame.channel, head, epoch, frame.id))
            self._attach(conn, frame.channel, head, epoch)
            if newly:
                change = MembershipChange("joined", conn.user, frame.channel, conn.id, head, epoch)
                st.out.add(Publish(CONTROL_TOPIC, change.encode()))

        st.request(JoinChannel(conn.user, frame.channel), joined, conn)

    def on_leave(self, conn: ConnState, frame: p.Leave) -> None:
        st = self.st

        def left(was_member: Any, error: str | None) -> None:
            if error is not None:
                self._unavailable(conn, error, frame.id)
                return
            self.channels.detach(conn, frame.channel)
            if conn.writable:
                st.send(conn, p.Left(frame.channel, frame.id))
            if was_member:
                change = MembershipChange("left", conn.user, frame.channel, conn.id)
                st.out.add(Publish(CONTROL_TOPIC, change.encode()))

        st.request(LeaveChannel(conn.user, frame.channel), left, conn)

    def _unavailable(self, conn: ConnState, error: str, request_id: str | None) -> None:
        if conn.writable:
            message = f"{error}; retry later"
            self.st.send(conn, p.Error(p.ErrorCode.UNAVAILABLE, message, request_id))

    def _attach(self, conn: ConnState, channel: str, head: int, epoch: str) -> None:
        """Route a channel newly joined by ``conn``'s user, live from ``head``."""
        st = self.st
        if st.core.cursor(conn.id, channel) is not None:
            return
        if not st.config.subscribe_first:
            self.handshake.attach_late(conn, channel, head, head, epoch)
            return
        st.core.attach(conn.id, channel, head)
        self.channels.ensure(channel)
        self.handshake.fill(conn, channel)

    # -- changes made through the user's other connections ---------------------------------

    def on_change(self, change: MembershipChange) -> None:
        st = self.st
        for conn_id in list(st.user_conns.get(change.user, ())):
            conn = st.conns.get(conn_id)
            if conn is None or conn.id == change.origin:
                continue
            if conn.held is not None:  # still being welcomed: applied afterwards
                conn.held.append(change)
                continue
            self.apply(conn, change)

    def apply(self, conn: ConnState, change: MembershipChange) -> None:
        """Apply one membership change of ``conn``'s user to ``conn``."""
        st = self.st
        if not conn.writable:
            return
        has = st.core.cursor(conn.id, change.channel) is not None
        if change.kind == "joined" and not has:
            st.send(conn, p.Joined(change.channel, change.head, change.epoch))
            self._attach(conn, change.channel, change.head, change.epoch)
        elif change.kind == "left" and has:
            self.channels.detach(conn, change.channel)
            st.send(conn, p.Left(change.channel))

    def release_held(self, conn: ConnState) -> None:
        """Right after ``welcome``: the changes that arrived meanwhile, in the order they came."""
        held, conn.held = conn.held or [], None
        for change in held:
            self.apply(conn, change)
