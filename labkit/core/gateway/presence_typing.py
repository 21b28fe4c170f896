"""Presence and typing: heartbeats into shared presence, transitions out to watchers.

Rules (PROTOCOL.md, "Presence and typing"; docs/presence.md):

* **Every frame is a heartbeat.** Shared presence hears of it at most every
  :attr:`~labkit.core.gateway.state.MachineConfig.presence_beat_s`, in a request of its own, so
  presence never delays the frame that carried the heartbeat.
* **Transitions are announced once**, by the gateway whose request caused them, on the presence
  topic; every gateway relays them to its local watchers.
* ``presence_sub`` (at most 500 users) answers one ``presence`` per user now, then one per
  change; with ``digest_s``, periodic ``presence_digest`` frames of net changes instead.
* **Expiry.** Every ``presence_expire_s`` shared presence is asked to expire silent
  connections (a crashed gateway's users go offline this way).
* **Typing** is relayed to the channel's other members only, throttled per user and channel,
  never stored, and dropped first for a connection whose buffer is a quarter full.
"""

from __future__ import annotations

from typing import Any

from labkit.core import protocol as p
from labkit.core.gateway.bus_payloads import (
    PRESENCE_TOPIC,
    ChannelTyping,
    channel_topic,
    encode_transition,
)
from labkit.core.gateway.events import (
    Disconnect,
    ExpirePresence,
    Heartbeat,
    Publish,
    ReadPresence,
)
from labkit.core.gateway.state import ConnState, GatewayState
from labkit.core.presence import DigestBuffer, Transition


class PresenceAndTyping:
    """The presence and typing part of the gateway machine."""

    def __init__(self, st: GatewayState) -> None:
        self.st = st
        self.next_expiry = 0.0

    # -- into shared presence ---------------------------------------------------------------

    def heartbeat(self, conn: ConnState, now: float) -> None:
        """A frame arrived: the connection is alive."""
        conn.last_heard = now
        if now - conn.last_presence_beat < self.st.config.presence_beat_s:
            return
        conn.last_presence_beat = now
        self.st.request(Heartbeat(conn.user, conn.id, now), self._announce)

    def disconnected(self, conn: ConnState, now: float) -> None:
        self.st.request(Disconnect(conn.user, conn.id, now), self._announce)

    def tick(self, now: float) -> None:
        if now >= self.next_expiry:
            self.next_expiry = now + self.st.config.presence_expire_s
            self.st.request(ExpirePresence(now), self._announce)
        for conn in list(self.st.conns.values()):
            if conn.digest is not None and conn.writable and conn.digest.due(now):
                self._flush_digest(conn, conn.digest, now)

    def _announce(self, transitions: Any, error: str | None) -> None:
        if error is None:
            for t in transitions:
                self.st.out.add(Publish(PRESENCE_TOPIC, encode_transition(t)))

    # -- out to watchers ----------------------------------------------------------------------

    def on_presence_sub(self, conn: ConnState, frame: p.PresenceSub, now: float) -> None:
        st = self.st

        def got(statuses: Any, error: str | None) -> None:
            if not conn.writable:
                return
            if error is not None:
                message = f"{error}; retry later"
                st.send(conn, p.Error(p.ErrorCode.UNAVAILABLE, message, frame.id))
                return
            self.watch(conn, frame.users)
            told = {user: status for user, (status, _) in statuses.items()}
            conn.digest = (
                DigestBuffer(frame.digest_s, now, told=told) if frame.digest_s is not None else None
            )
            for user in frame.users:
                status, last_active = statuses.get(user, ("offline", None))
                st.send(conn, p.Presence(user, status, last_active))

        st.request(ReadPresence(tuple(frame.users), now), got, conn)

    def watch(self, conn: ConnState, users: tuple[str, ...] | frozenset[str]) -> None:
        """``conn`` now watches exactly ``users`` (a new ``presence_sub`` replaces the old)."""
        watchers = self.st.watchers
        for user in conn.presence_users:
            watchers.get(user, {}).pop(conn.id, None)
        conn.presence_users = frozenset(users)
        for user in conn.presence_users:
            watchers.setdefault(user, {})[conn.id] = None

    def on_transition(self, t: Transition) -> None:
        st = self.st
        watchers = st.live_conns(list(st.watchers.get(t.user, ())))
        if not watchers:
            return
        plain = [c for c in watchers if c.digest is None]
        st.broadcast(plain, p.encode(p.Presence(t.user, t.status, t.last_active)))
        for conn in watchers:
            if conn.digest is not None:
                conn.digest.add(t)

    def _flush_digest(self, conn: ConnState, digest: DigestBuffer, now: float) -> None:
        changes, since, until = digest.flush(now)
        if changes:
            presences = tuple(p.Presence(t.user, t.status, t.last_active) for t in changes)
            self.st.send(conn, p.PresenceDigest(presences, since, until))

    # -- typing -------------------------------------------------------------------------------

    def on_typing(self, conn: ConnState, frame: p.Typing, now: float) -> None:
        st = self.st
        if st.core.cursor(conn.id, frame.channel) is None:
            error = p.Error(
                p.ErrorCode.NOT_MEMBER, f"{conn.user} is not a member of #{frame.channel}", frame.id
            )
            st.send(conn, error)
            return
        if st.typing.allow(conn.user, frame.channel, now):
            payload = p.encode(p.TypingEvent(frame.channel, conn.user))
            st.out.add(Publish(channel_topic(frame.channel), payload))

    def relay_typing(self, typing: ChannelTyping) -> None:
        st = self.st
        targets = [
            c
            for c in st.live_conns(st.core.routing.connections(typing.channel))
            if c.user != typing.user
        ]
        st.broadcast(targets, typing.raw, droppable_above=st.config.max_buffer_bytes // 4)
