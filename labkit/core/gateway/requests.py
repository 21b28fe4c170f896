"""Requests after ``welcome``: ``post``, ``history``, ``ping``, and the rate limit in front.

Rules (PROTOCOL.md, "Client frames" and "Errors"):

* The connection stays open through every error of the error table: ``bad_frame``,
  ``unknown_type``, ``invalid``, ``not_member``, ``rate_limited``, ``unavailable``. An error
  answering a request carries its ``id``.
* ``post`` is checked, sequenced and stored in one atomic step, then published on the channel's
  topic, then acked with its seq. A retry with the same ``id`` gets the same seq (and the
  publish is repeated, harmless since gateways drop duplicates by seq).
* ``history`` answers members only, with the channel's head and up to ``limit`` messages after
  ``after``, spliced in as stored.
* ``ping`` is answered at once and is never rate limited; a limited ``typing`` is dropped
  silently, any other limited request gets ``rate_limited``.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from labkit.core import protocol as p
from labkit.core.gateway.bus_payloads import channel_topic
from labkit.core.gateway.events import Append, Appended, IsMember, Publish, ReadHistory, ReadStates
from labkit.core.gateway.membership import Membership
from labkit.core.gateway.presence_typing import PresenceAndTyping
from labkit.core.gateway.state import ConnState, GatewayState


def request_id_of(data: str | bytes) -> str | None:
    """The valid ``id`` of a frame that parsed (``Hello`` keeps none, but its error echoes it)."""
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        value = json.loads(data).get("id")
        if isinstance(value, str) and 1 <= len(value) <= p.MAX_ID_CHARS:
            return value
    return None


class Requests:
    """Dispatches a welcomed connection's frames to the part of the machine that answers."""

    def __init__(
        self, st: GatewayState, membership: Membership, presence: PresenceAndTyping
    ) -> None:
        self.st = st
        self.membership = membership
        self.presence = presence

    def on_frame(self, conn: ConnState, data: str | bytes, now: float) -> None:
        st = self.st
        if conn.in_flight:
            conn.backlog.append((data, now))  # answered once the frame before it is
            return
        try:
            frame = p.parse_client_frame(data)
        except p.ProtocolError as exc:
            st.send(conn, exc.as_frame())
            return
        if isinstance(frame, p.Ping):
            st.send(conn, p.Pong(frame.id))
            return
        request_id = (
            request_id_of(data) if isinstance(frame, p.Hello) else getattr(frame, "id", None)
        )
        if not st.limiter.allow(conn.user, now):
            if not isinstance(frame, p.Typing):  # typing may be dropped silently
                message = "too many frames; slow down and retry"
                st.send(conn, p.Error(p.ErrorCode.RATE_LIMITED, message, request_id))
            return
        if isinstance(frame, p.Post):
            self._post(conn, frame, now)
        elif isinstance(frame, p.History):
            self._history(conn, frame)
        elif isinstance(frame, p.Join):
            self.membership.on_join(conn, frame)
        elif isinstance(frame, p.Leave):
            self.membership.on_leave(conn, frame)
        elif isinstance(frame, p.Typing):
            self.presence.on_typing(conn, frame, now)
        elif isinstance(frame, p.PresenceSub):
            self.presence.on_presence_sub(conn, frame, now)
        else:  # a second hello
            error = p.Error(p.ErrorCode.INVALID, "hello was already accepted", request_id)
            st.send(conn, error)

    def _unavailable(self, conn: ConnState, error: str, request_id: str | None) -> None:
        if conn.writable:
            message = f"{error}; retry later"
            self.st.send(conn, p.Error(p.ErrorCode.UNAVAILABLE, message, request_id))

    def _post(self, conn: ConnState, frame: p.Post, now: float) -> None:
        st = self.st

        def appended(result: Any, error: str | None) -> None:
            if error is not None:
                self._unavailable(conn, error, frame.id)
                return
            assert isinstance(result, Appended)
            if result.verdict in ("new", "dup"):
                topic = channel_topic(frame.channel)
                st.out.add(Publish(topic, result.raw, result.seq))
                if conn.writable:
                    st.send(conn, p.Ack(frame.id, frame.channel, result.seq, result.ts))
            elif conn.writable and result.verdict == "not_member":
                message = f"{conn.user} is not a member of #{frame.channel}; join it first"
                st.send(conn, p.Error(p.ErrorCode.NOT_MEMBER, message, frame.id))
            elif conn.writable:
                message = f"post id {frame.id!r} was already used for a different channel or text"
                st.send(conn, p.Error(p.ErrorCode.INVALID, message, frame.id))

        st.request(Append(conn.user, frame.channel, frame.id, frame.text, now), appended, conn)

    def _history(self, conn: ConnState, frame: p.History) -> None:
        st = self.st

        def member(is_member: Any, error: str | None) -> None:
            if error is not None:
                self._unavailable(conn, error, frame.id)
            elif not is_member:
                if conn.writable:
                    message = f"{conn.user} is not a member of #{frame.channel}"
                    st.send(conn, p.Error(p.ErrorCode.NOT_MEMBER, message, frame.id))
            else:
                st.request(ReadStates((frame.channel,)), head, conn)

        def head(states: Any, error: str | None) -> None:
            if error is not None:
                self._unavailable(conn, error, frame.id)
                return
            channel_head = states[frame.channel][0]
            st.request(
                ReadHistory(frame.channel, frame.after, frame.limit),
                lambda page, err: page_read(channel_head, page, err),
                conn,
            )

        def page_read(channel_head: int, result: Any, error: str | None) -> None:
            if error is not None:
                self._unavailable(conn, error, frame.id)
            elif conn.writable:
                raws = [raw for _seq, raw in result[1]]
                reply = p.encode_history_reply(frame.id, frame.channel, channel_head, raws)
                st.send_raw(conn, reply)

        st.request(IsMember(conn.user, frame.channel), member, conn)
