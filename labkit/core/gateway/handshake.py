"""Handshake and resume: from ``hello`` to a connection that takes every channel live.

One connection's life, as a table (h11 style; :class:`~labkit.core.gateway.state.Phase`):

================  ======================================  ==========================
phase             event                                   next phase
================  ======================================  ==========================
AWAITING_HELLO    valid ``hello``, token accepted          WELCOMING (read channels)
AWAITING_HELLO    anything else, or ``hello_timeout_s``    CLOSING (4001)
WELCOMING         channels and heads read                  OPEN (``welcome`` sent)
WELCOMING         the store is unreachable                 CLOSING (1013)
OPEN              silence, slow reader, drain              CLOSING (4002, 4008, 1012)
================  ======================================  ==========================

Resume (PROTOCOL.md, "Starting a session" and "Reconnecting"): the connection is attached to
each of its user's channels *filling* (cursor 0) before the heads are read, so no live message
is lost between the read and ``welcome``; :func:`~labkit.core.resume.plan_resume` then decides
per channel between ``reset`` and gap-fill from ``last_seen``. Gap-fill pages history from the
store at the reader's pace (the next page is read once the connection has taken the last one)
and flips the cursor to live in the same step in which it sees it caught up with the feed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from labkit.core import protocol as p
from labkit.core.auth import TokenError
from labkit.core.gateway.channels import Channels
from labkit.core.gateway.events import ReadChannels, ReadHistory, ReadStates, WatchWritable
from labkit.core.gateway.state import ConnState, GatewayState, Phase

Authenticate = Callable[[str, float], str]
"""``(token, now) -> user``; raises :class:`~labkit.core.auth.TokenError` to refuse."""


class Handshake:
    """The hello / welcome / resume / gap-fill part of the gateway machine."""

    def __init__(
        self,
        st: GatewayState,
        channels: Channels,
        authenticate: Authenticate,
        on_welcomed: Callable[[ConnState], None],
    ) -> None:
        self.st = st
        self.channels = channels
        self.authenticate = authenticate
        self.on_welcomed = on_welcomed
        """Called once ``welcome`` is out: held membership changes, early frames, heartbeat."""

    # -- hello ----------------------------------------------------------------------------

    def on_first_frame(self, conn: ConnState, data: str | bytes, now: float) -> None:
        """The first frame must be a valid ``hello`` with an accepted token (4001 otherwise)."""
        try:
            frame = p.parse_client_frame(data)
        except p.ProtocolError as exc:
            self.refuse(conn, f"the first frame must be a valid hello: {exc}")
            return
        if not isinstance(frame, p.Hello):
            self.refuse(conn, "the first frame must be hello")
            return
        try:
            conn.user = self.authenticate(frame.token, now)
        except TokenError as exc:
            self.refuse(conn, f"token refused ({exc.reason})")
            return
        conn.hello = frame
        conn.phase = Phase.WELCOMING
        conn.last_heard = now
        # Registered for the user's membership changes *before* reading the channels, so none
        # falls between the read and the welcome (they wait in ``conn.held``).
        self.st.user_conns.setdefault(conn.user, {})[conn.id] = None
        self.st.request(ReadChannels(conn.user), lambda chans, err: self._read(conn, chans, err))

    def refuse(self, conn: ConnState, message: str) -> None:
        self.st.send(conn, p.Error(p.ErrorCode.UNAUTHORIZED, message))
        self.st.close(conn, p.CloseCode.UNAUTHORIZED, "unauthorized")

    def hello_timeout(self, conn: ConnState, now: float) -> None:
        limit = self.st.config.hello_timeout_s
        if conn.phase is Phase.AWAITING_HELLO and now - conn.opened_at > limit:
            self.refuse(conn, f"no hello within {limit:g} seconds of connecting")

    def _store_down(self, conn: ConnState, error: str) -> None:
        """The store cannot be reached to prepare ``welcome``: say so, close 1013."""
        self.st.send(conn, p.Error(p.ErrorCode.UNAVAILABLE, error))
        self.st.close(conn, p.CloseCode.TRY_AGAIN_LATER, "store unavailable")

    def _read(self, conn: ConnState, channels: Any, error: str | None) -> None:
        st = self.st
        if conn.phase is not Phase.WELCOMING:
            return
        if error is not None:
            self._store_down(conn, error)
            return
        chans = tuple(sorted(channels))
        if st.config.subscribe_first:
            for channel in chans:
                st.core.attach(conn.id, channel, 0)
            for channel in chans:
                self.channels.ensure(channel)
        st.request(ReadStates(chans), lambda states, err: self._welcome(conn, chans, states, err))

    # -- welcome and resume -----------------------------------------------------------------

    def _welcome(
        self, conn: ConnState, channels: tuple[str, ...], states: Any, error: str | None
    ) -> None:
        st = self.st
        if conn.phase is not Phase.WELCOMING:
            return
        if error is not None:
            self._store_down(conn, error)
            return
        hello = conn.hello
        assert hello is not None
        infos = {ch: p.ChannelInfo(head, epoch) for ch, (head, epoch) in states.items()}
        st.send(conn, p.Welcome(conn.user, st.config.name, st.config.heartbeat_s, infos))
        conn.phase = Phase.OPEN
        for channel in sorted(set(hello.last_seen) - set(channels)):
            error_frame = p.Error(
                p.ErrorCode.NOT_MEMBER, f"{conn.user} is not a member of #{channel}"
            )
            st.send(conn, error_frame)
        for channel in channels:
            head, epoch = states[channel]
            self._resume(conn, hello, channel, head, epoch)
        self.on_welcomed(conn)

    def _resume(self, conn: ConnState, hello: p.Hello, channel: str, head: int, epoch: str) -> None:
        """Decide where ``conn`` resumes ``channel``, sending ``reset`` when it cannot
        gap-fill, then page what it missed."""
        st = self.st
        plan = st.plan(
            channel, head, epoch, hello.last_seen.get(channel), hello.epochs.get(channel)
        )
        if plan.reset_reason is not None:
            st.stats["resets"] += 1
            st.send(conn, p.Reset(channel, head, epoch, plan.reset_reason))
        if not st.config.subscribe_first:
            self._history_then_attach(conn, channel, plan.cursor, head, epoch)
            return
        cursor = st.core.cursor(conn.id, channel)
        if cursor is not None:
            cursor.seq = plan.cursor
            self.fill(conn, channel)

    def _history_then_attach(
        self, conn: ConnState, channel: str, seq: int, upto: int, epoch: str
    ) -> None:
        """The weaker design: history up to the head read at ``hello``, *then* subscribe and go
        live. Whatever was published between that read and the subscription is never sent."""
        st = self.st
        if seq >= upto:
            self.attach_late(conn, channel, seq, upto, epoch)
            return

        def paged(result: Any, error: str | None) -> None:
            if not conn.writable:
                return
            read_epoch, page = result if error is None else (epoch, [])
            if read_epoch != epoch:
                page = []  # the history was lost meanwhile: nothing of it is this epoch's
            sent = [(s, raw) for s, raw in page if seq < s <= upto]
            for _s, raw in sent:
                st.send_raw(conn, raw)
            if error is not None or not sent or sent[-1][0] >= upto:
                self.attach_late(conn, channel, sent[-1][0] if sent else upto, upto, epoch)
            else:
                self._history_then_attach(conn, channel, sent[-1][0], upto, epoch)

        st.request(ReadHistory(channel, seq, st.config.fill_page), paged)

    def attach_late(self, conn: ConnState, channel: str, seq: int, head: int, epoch: str) -> None:
        st = self.st
        if not conn.writable or st.core.cursor(conn.id, channel) is not None:
            return
        if st.core.attach(conn.id, channel, seq):
            self.channels.start_at(channel, head, epoch)
        self.fill(conn, channel)

    # -- gap-fill ---------------------------------------------------------------------------

    def fill(self, conn: ConnState, channel: str) -> None:
        """Bring ``conn`` up to the feed in ``channel`` by paging history, then go live."""
        if channel in conn.filling:
            return
        conn.filling.add(channel)
        self._step(conn, channel)

    def _step(self, conn: ConnState, channel: str) -> None:
        st = self.st
        cursor = st.core.cursor(conn.id, channel)
        if not conn.writable or cursor is None or st.core.try_go_live(conn.id, channel):
            conn.filling.discard(channel)
            return
        feed = st.core.feeds.get(channel)
        if feed is None or not feed.started:
            conn.fill_waiting.add(channel)  # the next tick tries again
            return
        after, limit = cursor.seq, st.config.fill_page

        def paged(result: Any, error: str | None) -> None:
            if not conn.writable or st.core.cursor(conn.id, channel) is not cursor:
                conn.filling.discard(channel)
                return
            read_epoch, page = result if error is None else (None, [])
            if read_epoch is not None and read_epoch != st.epochs.get(channel):
                # A newer history than the one this connection is in: never send it as the
                # old one's. The head check resets the channel; the fill resumes after that.
                conn.fill_waiting.add(channel)
                self.channels.check_heads()
                return
            if error is not None or not page:
                conn.fill_waiting.add(channel)  # store down, or an epoch reset under way
                return
            sent = 0
            for seq, raw in page:
                if cursor.filled(seq):
                    st.send_raw(conn, raw)
                    sent += 1
            st.stats["fills"] += sent
            if sent and not conn.pacing:
                conn.pacing = True  # until the reader has taken what was just queued
                st.out.add(WatchWritable(conn.id))
            # No reply between the page and this check: nothing can slip in between.
            if st.core.try_go_live(conn.id, channel):
                conn.filling.discard(channel)
            elif sent:
                conn.writable_waiting.add(channel)  # the next page once the reader took this
            else:
                self._step(conn, channel)

        st.request(ReadHistory(channel, after, limit), paged)

    def on_writable(self, conn: ConnState) -> None:
        """The reader took the last page: read the next one."""
        conn.pacing = False
        waiting, conn.writable_waiting = conn.writable_waiting, set()
        for channel in sorted(waiting):
            self._step(conn, channel)

    def retry_waiting(self, conn: ConnState) -> None:
        """A tick: pages that could not be read (store down, feed not started) are retried."""
        waiting, conn.fill_waiting = conn.fill_waiting, set()
        for channel in sorted(waiting):
            self._step(conn, channel)
