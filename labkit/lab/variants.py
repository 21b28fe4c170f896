"""Weaker designs, kept apart: each fails the way the design notes warn it would.

Theory of operation
-------------------
labkit's guarantees come from a handful of decisions (PROTOCOL.md, "Guarantees";
docs/architecture.md). Each class here undoes exactly one of them, so a notebook or a test can
run the *same* seeded schedule with and without it and watch the checker catch the difference.
None of them is used unless asked for by name (``SimConfig(variant="...")``); :func:`design`
refuses any name not in :data:`VARIANTS`.

======================================  ==================================================
variant                                 the decision it undoes
======================================  ==================================================
``read_then_write_sequencer``           sequence and store in one atomic step (the Lua
                                        script): two message servers read the head, then
                                        both write head + 1
``resume_from_head``                    resume from the client's ``last_seen``: what was
                                        posted while it was away vanishes
``no_bus_repair``                       the feed repairs bus loss from the store: lost
                                        tails are never noticed
``history_before_subscribe``            subscribe first, then read: a connection joins the
                                        live stream wherever it is by the time its history
                                        read returns, so what came in between is lost
``flapping_presence``                   closing a connection announces nothing: here every
                                        disconnect announces ``offline`` at once
======================================  ==================================================

All classes are pure, like the core they replace, and reuse it wherever they can.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from labkit.core.fanout import FanoutCore
from labkit.core.feed import ChannelFeed, Step
from labkit.core.presence import OFFLINE, ONLINE, PresenceTracker, Transition
from labkit.core.resume import MAX_GAP_FILL, Cursor, ResumePlan, plan_resume

C = TypeVar("C")
P = TypeVar("P")

VARIANTS: dict[str, str] = {
    "read_then_write_sequencer": (
        "Each message server reads the channel head and writes head + 1 in two separate "
        "steps, so two servers posting at once hand out the same seq (duplicate seqs)."
    ),
    "resume_from_head": (
        "The gateway resumes every connection from the channel head instead of the client's "
        "last_seen, so whatever was posted while the client was away silently vanishes."
    ),
    "no_bus_repair": (
        "The channel feed delivers whatever the bus brings and never fetches from the store, "
        "so a message the bus lost with nothing after it (a lost tail) never arrives."
    ),
    "history_before_subscribe": (
        "The gateway reads history and head before subscribing and then puts the connection "
        "on the live stream as it is now, so messages that came in between are lost."
    ),
    "flapping_presence": (
        "Presence announces offline at every disconnect, so a user who merely reconnects "
        "flaps offline and back online for everyone watching."
    ),
}
"""Every weaker design, by name, with what goes wrong in one sentence."""


def check_variant(name: str | None) -> str | None:
    """Return ``name`` if it is None or a known variant; else ValueError listing the names."""
    if name is not None and name not in VARIANTS:
        known = ", ".join(sorted(VARIANTS))
        raise ValueError(f"unknown variant {name!r}; known variants: {known}")
    return name


# --------------------------------------------------------------------------- sequencing


class ReadThenWriteSequencer:
    """A head counter used in two steps, the way separate GET and SET commands would be.

    ``read`` returns the head; the caller computes ``head + 1`` and, one network round trip
    later, calls ``write``. Anything another message server did in between is overwritten:
    two posts read the same head and both get ``head + 1``. (The real store runs both steps
    inside one Lua script, which Redis never interleaves.)
    """

    def __init__(self) -> None:
        self._heads: dict[str, int] = {}

    def read(self, channel: str) -> int:
        return self._heads.get(channel, 0)

    def write(self, channel: str, seq: int) -> None:
        self._heads[channel] = seq

    def head(self, channel: str) -> int:
        return self._heads.get(channel, 0)


# --------------------------------------------------------------------------- resuming


def plan_resume_from_head(
    channel: str,
    head: int,
    epoch: str,
    last_seen: int | None,
    client_epoch: str | None,
    max_gap: int = MAX_GAP_FILL,
) -> ResumePlan:
    """:func:`~labkit.core.resume.plan_resume` with the client's ``last_seen`` thrown away."""
    del last_seen  # the whole bug
    return plan_resume(channel, head, epoch, None, client_epoch, max_gap)


# --------------------------------------------------------------------------- the feed


class NoRepairFeed(ChannelFeed[P]):
    """A feed that trusts the bus: it delivers each new seq as it comes and never fetches.

    It still drops what it has already passed (``seq <= head``), so it looks tidy; but a seq
    the bus lost is simply skipped, and nothing ever looks at the store's head.
    """

    def start(self, head: int) -> Step[P]:
        self.head = head
        self.known_head = max(self.known_head, head)
        step: Step[P] = Step()
        for seq in sorted(self.pending):
            if seq > self.head:
                self.head = seq
                step.deliver.append((seq, self.pending[seq]))
        self.pending.clear()
        self.stats.delivered += len(step.deliver)
        return step

    def on_bus(self, seq: int, payload: P) -> Step[P]:
        self.known_head = max(self.known_head, seq)
        if self.head is None:
            self.pending[seq] = payload
            return Step()
        if seq <= self.head:
            self.stats.duplicates += 1
            return Step()
        self.head = seq
        self.stats.delivered += 1
        return Step(deliver=[(seq, payload)])

    def on_fetched(self, items: list[tuple[int, P]]) -> Step[P]:
        self.fetching = None
        return Step()

    def on_store_head(self, head: int) -> Step[P]:
        return Step()


class TrustingCursor(Cursor):
    """A connection's cursor that takes any later seq while live.

    The real cursor, offered a seq past the next one it is owed, drops back to *filling*, and
    the gateway pages the hole from the store: a second repair path, per connection, that
    would quietly mend a mid-stream loss. This one takes whatever comes next, so a lost
    message shows as a gap at the client.
    """

    __slots__ = ()

    def offer(self, seq: int) -> bool:
        if not self.live or seq <= self.seq:
            return False
        self.seq = seq
        return True


class NoRepairCore(FanoutCore[C, P]):
    """The fanout core of a gateway that trusts the bus: :class:`NoRepairFeed` feeds and
    :class:`TrustingCursor` cursors, passed to the real core's constructor."""

    def __init__(self) -> None:
        super().__init__(channel_feed=NoRepairFeed, cursor=TrustingCursor)


# --------------------------------------------------------------------------- backfill race


class HistoryBeforeSubscribeCore(FanoutCore[C, P]):
    """The fanout core of a gateway that reads history first and subscribes second.

    ``attach`` is called *after* the connection was sent its history up to ``cursor_seq``;
    the connection then takes the live stream from wherever the channel's feed is now. Seqs the
    feed delivered while the history was being read (``cursor_seq + 1 .. feed.head``) are
    never sent: that is the backfill race.
    """

    def attach(self, conn: C, channel: str, cursor_seq: int) -> bool:
        first = super().attach(conn, channel, cursor_seq)
        cursor = self.cursor(conn, channel)
        feed = self.feeds[channel]
        if cursor is not None:
            if feed.head is not None and feed.head > cursor.seq:
                cursor.seq = feed.head
            cursor.live = True
        return first


# --------------------------------------------------------------------------- presence


class FlappingPresenceTracker(PresenceTracker):
    """Presence that announces ``offline`` the moment a user's last connection closes.

    Everything else is the real :class:`~labkit.core.presence.PresenceTracker`. A reconnect a
    second later then announces ``online`` again: one flap per disconnect, seen by everyone.
    """

    def __init__(self, heartbeat_s: float = 10.0) -> None:
        super().__init__(heartbeat_s)
        self._open: dict[str, dict[str, None]] = {}
        self._told_offline: dict[str, None] = {}

    def heartbeat(self, user: str, conn_id: str, now: float) -> list[Transition]:
        self._open.setdefault(user, {})[conn_id] = None
        out = super().heartbeat(user, conn_id, now)
        if user in self._told_offline:
            del self._told_offline[user]
            if not out:
                out = [Transition(user, ONLINE, now, now)]
        return out

    def disconnect(self, user: str, conn_id: str, now: float) -> list[Transition]:
        conns = self._open.get(user, {})
        conns.pop(conn_id, None)
        if conns or user in self._told_offline:
            return []
        self._open.pop(user, None)
        self._told_offline[user] = None
        _, last = super().status(user, now)
        return [Transition(user, OFFLINE, last, now)]

    def expire(self, now: float) -> list[Transition]:
        return [t for t in super().expire(now) if t.user not in self._told_offline]

    def status(self, user: str, now: float) -> tuple[str, float | None]:
        status, last = super().status(user, now)
        return (OFFLINE, last) if user in self._told_offline else (status, last)


# --------------------------------------------------------------------------- the registry


PlanFn = Callable[[str, int, str, "int | None", "str | None"], ResumePlan]


@dataclass(frozen=True, slots=True)
class Design:
    """The pieces a simulated system is built from: the real ones, or one variant swapped in."""

    name: str
    """``"real"`` or a key of :data:`VARIANTS`."""
    make_core: Callable[[], FanoutCore[Any, Any]] = FanoutCore
    plan: PlanFn = plan_resume
    make_presence: Callable[[float], PresenceTracker] = PresenceTracker
    read_then_write: bool = False
    """Sequence with :class:`ReadThenWriteSequencer` (two steps) instead of atomically."""
    history_first: bool = False
    """Read history and head before attaching and subscribing (with
    :class:`HistoryBeforeSubscribeCore`)."""


REAL = Design("real")


def design(name: str | None) -> Design:
    """The design to simulate: :data:`REAL` for None, else the named variant."""
    check_variant(name)
    if name is None:
        return REAL
    if name == "read_then_write_sequencer":
        return Design(name, read_then_write=True)
    if name == "resume_from_head":
        return Design(name, plan=plan_resume_from_head)
    if name == "no_bus_repair":
        return Design(name, make_core=NoRepairCore)
    if name == "history_before_subscribe":
        return Design(name, make_core=HistoryBeforeSubscribeCore, history_first=True)
    return Design(name, make_presence=FlappingPresenceTracker)
