"""Phase 2 of the check: replay each session's stream and judge each message as it arrives.

A session owes nothing to other sessions, so each :class:`~labkit.lab.checker.gather.Stream`
is replayed on its own. The replay keeps, per channel the session tracks, the *resume point*
(the first seq it is owed, PROTOCOL.md, "Guarantees", 3) and the stretches (:class:`Segment`)
during which it tracked the channel; the delivery phase later asks which stored seqs each
stretch should have received.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from labkit.lab.checker.gather import Event, Stream, as_int
from labkit.lab.checker.report import Violation

Found = list[tuple[int, Violation]]
"""Violations with the recording index of the record that showed each."""


@dataclass(slots=True)
class Segment:
    """A stretch of one session during which it tracked one channel."""

    channel: str
    start_seq: int
    start_t: float
    end_t: float | None = None
    how: str = "connected"


@dataclass(slots=True)
class Session:
    """One session's state during the replay, and what it received."""

    client: str
    user: str
    number: int
    expected: dict[str, int] = field(default_factory=dict)
    """Per tracked channel: the next seq owed."""
    open_segments: dict[str, Segment] = field(default_factory=dict)
    segments: list[Segment] = field(default_factory=list)
    received: dict[str, dict[int, float]] = field(default_factory=dict)
    """Per channel: seq → when it arrived (forgotten at a ``reset``)."""
    top: dict[str, int] = field(default_factory=dict)
    closed: bool = False

    @property
    def name(self) -> str:
        return f"{self.client} (session {self.number})"

    def track(self, channel: str, start_seq: int, t: float, how: str) -> None:
        self.expected[channel] = start_seq
        seg = Segment(channel, start_seq, t, how=how)
        self.open_segments[channel] = seg
        self.segments.append(seg)

    def untrack(self, channel: str, t: float) -> None:
        self.expected.pop(channel, None)
        seg = self.open_segments.pop(channel, None)
        if seg is not None:
            seg.end_t = t

    def close(self, t: float) -> None:
        for channel in list(self.open_segments):
            self.untrack(channel, t)
        self.closed = True


def check_streams(streams: Sequence[Stream], stop_t: float) -> tuple[list[Session], Found]:
    """Replay every stream; a session still open at the end is closed at ``stop_t``.

    Checks guarantees 2 (no seq twice, none below one already received) and 3 (from the resume
    point on, no seq skipped) as each message arrives, and returns the sessions with their
    segments for the "lost tail" half of guarantee 3.
    """
    sessions: list[Session] = []
    found: Found = []
    for stream in streams:
        sess = Session(stream.client, stream.user, stream.number)
        for event in stream.events:
            found += [(event.index, v) for v in _replay(sess, event)]
        if not sess.closed:
            sess.close(stop_t)
        sessions.append(sess)
    return sessions, found


def _replay(sess: Session, event: Event) -> list[Violation]:
    """Apply one event to ``sess``: move its resume points (the table in the package notes),
    or judge a message."""
    frame, t = event.frame, event.t
    if event.type == "message":
        seq = as_int(frame.get("seq"))
        if seq is not None:
            return _on_message(sess, str(frame.get("channel")), seq, t)
    elif event.type == "welcome":
        _on_welcome(sess, frame.get("channels"), event.last_seen, t)
    elif event.type == "reset":
        _on_reset(sess, str(frame.get("channel")), as_int(frame.get("head")), t)
    elif event.type == "joined":
        channel, head = str(frame.get("channel")), as_int(frame.get("head"))
        if head is not None and channel not in sess.open_segments:
            sess.track(channel, head + 1, t, "a member")
    elif event.type == "left":
        sess.untrack(str(frame.get("channel")), t)
    elif event.type == "close":
        sess.close(t)
    return []


def _on_welcome(sess: Session, channels: object, last_seen: Mapping[str, int], t: float) -> None:
    """Guarantee 3: a resumed channel is owed from ``last_seen + 1``, any other from the
    welcome's ``head + 1``."""
    if not isinstance(channels, Mapping):
        return
    for channel in sorted(channels):
        info = channels[channel]
        head = as_int(info.get("head")) if isinstance(info, Mapping) else None
        if channel in last_seen:
            sess.track(channel, last_seen[channel] + 1, t, "connected")
        elif head is not None:
            sess.track(channel, head + 1, t, "connected")


def _on_reset(sess: Session, channel: str, head: int | None, t: float) -> None:
    """A new numbering (or a gap-fill refused): the channel is owed from ``head + 1`` and what
    the session received before no longer counts (guarantee 3)."""
    if head is None:
        return
    sess.received.pop(channel, None)
    sess.top.pop(channel, None)
    seg = sess.open_segments.get(channel)
    if seg is not None:
        seg.start_seq = head + 1
        sess.expected[channel] = head + 1
    else:
        sess.track(channel, head + 1, t, "connected")


def _on_message(sess: Session, channel: str, seq: int, t: float) -> list[Violation]:
    """Guarantee 2 (``duplicate``, ``out_of_order``) and guarantee 3 (``gap``) for one
    received message."""
    got = sess.received.setdefault(channel, {})
    if seq in got:
        detail = (
            f"{sess.name} received {channel} seq {seq} twice, at {got[seq]:.2f} s and at {t:.2f} s"
        )
        return [Violation("duplicate", sess.client, sess.user, channel, seq, detail)]
    found: list[Violation] = []
    got[seq] = t
    top = sess.top.get(channel, 0)
    if seq < top:
        detail = (
            f"{sess.name} received {channel} seq {seq} at {t:.2f} s after it had "
            f"already received seq {top}"
        )
        found.append(Violation("out_of_order", sess.client, sess.user, channel, seq, detail))
    else:
        sess.top[channel] = seq
    expected = sess.expected.get(channel)
    if expected is None:
        return found
    missing = [s for s in range(expected, seq) if s not in got]
    if missing:
        detail = (
            f"{sess.name} received {channel} seq {seq} at {t:.2f} s while it was "
            f"still owed seq {seq_ranges(missing)}"
        )
        found.append(Violation("gap", sess.client, sess.user, channel, missing[0], detail))
    if seq >= expected:
        sess.expected[channel] = seq + 1
    return found


def seq_ranges(seqs: Sequence[int]) -> str:
    """``[3, 4, 5, 9]`` → ``"3-5, 9"``."""
    parts: list[str] = []
    i = 0
    while i < len(seqs):
        j = i
        while j + 1 < len(seqs) and seqs[j + 1] == seqs[j] + 1:
            j += 1
        parts.append(str(seqs[i]) if i == j else f"{seqs[i]}-{seqs[j]}")
        i = j + 1
    return ", ".join(parts)
