"""Presence: who is online, decided from heartbeats alone (pure: no I/O, no clock).

Theory of operation
-------------------
A *connection* heartbeats whenever its client sends a text frame (PROTOCOL.md, "Heartbeats and
presence"). A *user* is ``online`` while at least one of their connections has heartbeated
within the last ``expiry_s = 3 * heartbeat_s`` seconds, and ``offline`` otherwise. A laptop and a
phone on two gateways are two connections of one user, so they make one presence.

The rules, in the exact form the code and the tests use:

1. A heartbeat at time ``t`` keeps its user online up to, but not including, ``t + expiry_s``.
   The user's *deadline* is ``last_active + expiry_s``, where ``last_active`` is the time of
   their latest heartbeat on any connection.
2. Only :meth:`PresenceTracker.heartbeat` (or :meth:`~PresenceTracker.connect`) announces
   ``online``, and only :meth:`PresenceTracker.expire` announces ``offline``. ``expire(now)``
   announces a user offline when ``now >= deadline``; the :class:`Transition` carries
   ``at = deadline``, the moment presence actually lapsed, not the moment the timer ran.
3. Closing a connection announces nothing (see :meth:`PresenceTracker.disconnect`): the
   connection just stops heartbeating, so its user goes offline at the deadline unless a
   connection heartbeats first. A reconnect inside the window is therefore invisible.
4. A heartbeat that arrives after the deadline but before any ``expire()`` call announced the
   user offline re-announces ``online`` (a repeat of the status subscribers were last told,
   never an offline/online pair). Subscribers who asked :meth:`~PresenceTracker.status` inside
   that window were told ``offline``, and this repeat corrects them; everyone else sees the
   same status twice, which a client treats as "set", not "toggle". With ``expire()`` run at
   :meth:`~PresenceTracker.next_deadline` the window is empty.

The tracker is the core the gateway wraps (the gateway runs a timer and calls ``expire``) and the
one the simulator drives in virtual time; :mod:`labkit.server.redis.presence_store` applies the
same rules to
state shared in Redis by many gateways.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

ONLINE = "online"
OFFLINE = "offline"

_STATUSES = (ONLINE, OFFLINE)


@dataclass(frozen=True, slots=True)
class Transition:
    """One change of a user's presence, as published on the presence topic.

    Fields:
        user: whose presence changed.
        status: ``ONLINE`` or ``OFFLINE``, the status from ``at`` on.
        last_active: time of the user's latest heartbeat (never ``None`` in a transition:
            a user is only ever announced after being seen; the type allows ``None`` so that
            frames built from :meth:`PresenceTracker.status` share it).
        at: when the change happened: the heartbeat's time for ``online``, the deadline
            ``last_active + expiry_s`` for ``offline``.
    """

    user: str
    status: str
    last_active: float | None
    at: float


class PresenceTracker:
    """Heartbeats per connection; a user expires ``expiry_s = 3 * heartbeat_s`` after the latest.

    Use: call :meth:`connect` when a connection is welcomed, :meth:`heartbeat` for every text
    frame it sends, :meth:`disconnect` when it closes, and :meth:`expire` on a timer set to
    :meth:`next_deadline`. Publish every :class:`Transition` these return, in order.

    Memory: connections and deadlines are kept only for users currently online (an offline
    user's connections are dropped when they expire); ``last_active`` is kept for every user
    ever seen, because ``status`` must report it for offline users ("last seen 2 h ago").
    """

    def __init__(self, heartbeat_s: float = 10.0) -> None:
        if heartbeat_s <= 0:
            raise ValueError(f"heartbeat_s must be positive, got {heartbeat_s!r}")
        self.heartbeat_s = heartbeat_s
        self.expiry_s = 3 * heartbeat_s
        # user -> conn_id -> time of that connection's latest heartbeat (online users only).
        self._conns: dict[str, dict[str, float]] = {}
        # user -> latest heartbeat on any connection (every user ever seen).
        self._last: dict[str, float] = {}
        # Heap of (deadline, user), at most one entry per announced-online user. An entry may be
        # early (the user heartbeated since it was pushed); it is corrected when it reaches the
        # top. That keeps heartbeat() O(1) and expire() O(expired · log n).
        self._heap: list[tuple[float, str]] = []
        self._queued: set[str] = set()

    # -- inputs -----------------------------------------------------------------------------

    def connect(self, user: str, conn_id: str, now: float) -> list[Transition]:
        """Register a new connection (at its ``welcome``): its first heartbeat.

        Returns ``[online]`` when this makes the user online, else ``[]``: a second device
        joining an online user changes nothing anyone can see.
        """
        return self.heartbeat(user, conn_id, now)

    def heartbeat(self, user: str, conn_id: str, now: float) -> list[Transition]:
        """Record that ``conn_id`` of ``user`` sent a frame at ``now``.

        Returns ``[online]`` if the user was not online (or was past their deadline with the
        offline not yet announced, rule 4 of the module docstring), else ``[]``. An unknown
        ``conn_id`` is registered, so a gateway may skip :meth:`connect`.
        """
        conns = self._conns.get(user)
        last = self._last.get(user)
        latest = now if last is None else max(last, now)
        if conns is None:
            # Not online: announce it and start tracking a deadline.
            self._conns[user] = {conn_id: now}
            self._last[user] = latest
            self._push(user, latest + self.expiry_s)
            return [Transition(user, ONLINE, latest, now)]
        lapsed = last is not None and last + self.expiry_s <= now
        self._last[user] = latest
        seen = conns.get(conn_id)
        if seen is None:
            # A new connection of an online user (another device, or a reconnect). Drop the
            # ones that stopped heartbeating (closed, or lost with their gateway) here, where
            # the dict grows: the deadline depends only on the latest, so this bounds memory.
            for cid in [c for c, t in conns.items() if t + self.expiry_s <= now]:
                del conns[cid]
            conns[conn_id] = now
        elif seen < now:
            conns[conn_id] = now
        if lapsed:
            return [Transition(user, ONLINE, latest, now)]
        return []

    def disconnect(self, user: str, conn_id: str, now: float) -> list[Transition]:
        """A connection closed: record nothing, announce nothing, return ``[]``.

        Why not offline right away: a phone changing networks, a laptop waking up, or a gateway
        draining (close 1012 then reconnect) all close a connection and open another within
        seconds. Announcing ``offline`` on close and ``online`` on the reconnect would flap the
        user's status for everyone watching them. Instead the connection keeps the time of its
        last heartbeat and simply stops heartbeating, exactly like a connection whose gateway
        crashed without saying goodbye; the user goes offline at the deadline unless some
        connection of theirs heartbeats first. The cost is that a user who really left looks
        online for up to ``expiry_s`` more, which the protocol allows ("goes offline within
        3 × heartbeat_s"). The adapter must not heartbeat a closed connection afterwards.
        """
        del user, conn_id, now  # deliberately unused: see the docstring
        return []

    def expire(self, now: float) -> list[Transition]:
        """Announce offline every online user whose deadline is ``<= now``, and forget them.

        Returns the offline transitions ordered by deadline (``at``). Call it at
        :meth:`next_deadline` (exact) or on a periodic timer (late by at most the period).
        """
        out: list[Transition] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, user = heapq.heappop(heap)
            self._queued.discard(user)
            if user not in self._conns:
                continue
            deadline = self._last[user] + self.expiry_s
            if deadline > now:
                self._push(user, deadline)  # heartbeated since this entry was pushed
                continue
            del self._conns[user]
            out.append(Transition(user, OFFLINE, self._last[user], deadline))
        out.sort(key=lambda t: (t.at, t.user))
        return out

    # -- queries ----------------------------------------------------------------------------

    def status(self, user: str, now: float) -> tuple[str, float | None]:
        """``(status, last_active)`` of ``user`` at ``now``; ``(OFFLINE, None)`` if never seen.

        This is what ``expire(now)`` would leave: call ``expire(now)`` first and publish what
        it returns, so a subscriber is never told a status ahead of the published transitions.
        """
        last = self._last.get(user)
        if last is None:
            return OFFLINE, None
        if user in self._conns and now < last + self.expiry_s:
            return ONLINE, last
        return OFFLINE, last

    def online_users(self, now: float) -> set[str]:
        """Users online at ``now`` (same rule as :meth:`status`). O(online users)."""
        e = self.expiry_s
        last = self._last
        return {u for u in self._conns if now < last[u] + e}

    def next_deadline(self) -> float | None:
        """The earliest time at which :meth:`expire` would announce someone; ``None`` if nobody
        is online. Exact: the adapter can sleep until then, the simulator can jump to it.
        """
        heap = self._heap
        while heap:
            deadline, user = heap[0]
            if user not in self._conns:
                heapq.heappop(heap)
                self._queued.discard(user)
                continue
            actual = self._last[user] + self.expiry_s
            if actual != deadline:
                heapq.heapreplace(heap, (actual, user))
                continue
            return deadline
        return None

    def _push(self, user: str, deadline: float) -> None:
        if user not in self._queued:
            self._queued.add(user)
            heapq.heappush(self._heap, (deadline, user))


class DigestBuffer:
    """Collects the transitions one digest-mode subscriber would be sent, and emits them in
    batches: one ``presence_digest`` frame per ``digest_s`` instead of one ``presence`` frame
    per change (``presence_sub`` with ``"digest_s": 60``).

    Net changes: within one period only each user's *latest* transition counts, and it is left
    out entirely when its status equals what this subscriber was last told about that user. So a
    user who went offline and came back within one period does not appear at all: the
    subscriber's picture was right at the start of the period and is right at the end, and the
    point of a digest is to trade timeliness for fewer, smaller frames, not to replay history.
    The price: the subscriber never learns of the short absence, and ``last_active`` for an
    online user is not refreshed by a digest (it is only meaningful for offline users anyway).

    What the subscriber was last told: pass the snapshot sent in reply to ``presence_sub`` as
    ``told``. For a user missing from it, the status before their first transition of the
    period is taken to be the opposite of that transition, since transitions alternate; the
    only exception, a repeated ``online`` (rule 4 of the module docstring), then costs at worst
    one redundant entry.

    Use: ``add`` every transition of a watched user; when ``due(now)``, call ``flush(now)`` and
    send the changes if there are any. An empty flush sends nothing and leaves ``since`` where
    it was, so each digest's ``since`` is the previous digest's ``until`` (or the subscription
    time) and together they cover time with no gaps.
    """

    def __init__(
        self, digest_s: float, now: float, *, told: Mapping[str, str] | None = None
    ) -> None:
        if digest_s <= 0:
            raise ValueError(f"digest_s must be positive, got {digest_s!r}")
        self.digest_s = digest_s
        self._since = now  # start of what the next non-empty digest covers
        self._period_start = now  # start of the current period (drives due())
        self._told: dict[str, str] = dict(told or {})
        for status in self._told.values():
            if status not in _STATUSES:
                raise ValueError(f"unknown status {status!r} in told")
        self._pending: dict[str, Transition] = {}

    def add(self, t: Transition) -> None:
        """Record a transition of a watched user (in the order they were published)."""
        if t.status not in _STATUSES:
            raise ValueError(f"unknown status {t.status!r}")
        if t.user not in self._told and t.user not in self._pending:
            self._told[t.user] = OFFLINE if t.status == ONLINE else ONLINE
        self._pending[t.user] = t

    def add_all(self, ts: Iterable[Transition]) -> None:
        """:meth:`add` each of ``ts`` in order."""
        for t in ts:
            self.add(t)

    def due(self, now: float) -> bool:
        """True once ``digest_s`` has passed since the last flush (or the subscription)."""
        return now >= self._period_start + self.digest_s

    def flush(self, now: float) -> tuple[list[Transition], float, float]:
        """Return ``(changes, since, until)`` and start a new period at ``now``.

        ``changes`` holds one transition per user whose status differs from what the subscriber
        was last told, ordered by ``(at, user)``; ``until`` is ``now``. When ``changes`` is
        empty, nothing should be sent and ``since`` does not move.
        """
        changes = [t for u, t in self._pending.items() if t.status != self._told[u]]
        self._pending.clear()
        self._period_start = now
        since = self._since
        for t in changes:
            self._told[t.user] = t.status
        changes.sort(key=lambda t: (t.at, t.user))
        if changes:
            self._since = now
        return changes, since, now
