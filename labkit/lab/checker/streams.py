"""Phase 2 of the check: replay each session's stream and judge each message as it arrives.

A session owes nothing to other sessions, so each :class:`~labkit.lab.checker.gather.Stream`
is replayed on its own. The replay keeps, per channel the session tracks, the *resume point*
(the first seq it is owed, PROTOCOL.md, "Guarantees", 3) and the stretches (:class:`Segment`)
during which it tracked the channel; the delivery phase later asks which stored seqs each
stretch should have received.

Each stretch belongs to one *epoch* of its channel, the one the session was last told
(``welcome``, ``joined``, ``reset``): a ``reset`` into a new epoch ends the stretch and starts
another from the new ``head + 1``, and every message received is counted in the session's
current epoch of its channel, since seqs restart at 1 in a new epoch.
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
    epoch: str | None = None
    """The channel's epoch during the stretch, as the session was told it."""


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
    epochs: dict[str, str | None] = field(default_factory=dict)
    """Per channel: the epoch the session was last told."""
    got: dict[tuple[str, str | None], set[int]] = field(default_factory=dict)
    """Per (channel, epoch): every seq received under it (kept across resets)."""
    epoch_at: dict[int, str | None] = field(default_factory=dict)
    """Recording index of each ``message`` received → the epoch it was received under."""

    @property
    def name(self) -> str:
        return f"{self.client} (session {self.number})"

    def track(self, channel: str, start_seq: int, t: float, how: str) -> None:
        self.expected[channel] = start_seq
        seg = Segment(channel, start_seq, t, how=how, epoch=self.epochs.get(channel))
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
            channel = str(frame.get("channel"))
            epoch = sess.epochs.get(channel)
            sess.epoch_at[event.index] = epoch
            sess.got.setdefault((channel, epoch), set()).add(seq)
            return _on_message(sess, channel, seq, t)
    elif event.type == "welcome":
        _on_welcome(sess, frame.get("channels"), event.last_seen, event.epochs, t)
    elif event.type == "reset":
        channel, epoch = str(frame.get("channel")), frame.get("epoch")
        _on_reset(sess, channel, as_int(frame.get("head")), _name(epoch), t)
    elif event.type == "joined":
        channel, head = str(frame.get("channel")), as_int(frame.get("head"))
        if head is not None and channel not in sess.open_segments:
            _enter_epoch(sess, channel, _name(frame.get("epoch")))
            sess.track(channel, head + 1, t, "a member")
    elif event.type == "left":
        sess.untrack(str(frame.get("channel")), t)
    elif event.type == "close":
        sess.close(t)
    return []


def _name(epoch: object) -> str | None:
    return epoch if isinstance(epoch, str) else None


def _enter_epoch(sess: Session, channel: str, epoch: str | None) -> None:
    """The session is told ``channel``'s epoch: in a new one, seqs start again (guarantee 2
    holds per epoch)."""
    if epoch is not None and epoch != sess.epochs.get(channel, epoch):
        sess.received.pop(channel, None)
        sess.top.pop(channel, None)
    if epoch is not None or channel not in sess.epochs:
        sess.epochs[channel] = epoch


def _on_welcome(
    sess: Session,
    channels: object,
    last_seen: Mapping[str, int],
    epochs: Mapping[str, str],
    t: float,
) -> None:
    """Guarantee 3: a resumed channel is owed from ``last_seen + 1``, any other (or one whose
    epoch changed since the hello's, which a ``reset`` follows) from the welcome's
    ``head + 1``."""
    if not isinstance(channels, Mapping):
        return
    for channel in sorted(channels):
        info = channels[channel]
        head = as_int(info.get("head")) if isinstance(info, Mapping) else None
        epoch = _name(info.get("epoch")) if isinstance(info, Mapping) else None
        sess.epochs[channel] = epoch
        same_epoch = channel not in epochs or epoch is None or epochs[channel] == epoch
        if channel in last_seen and same_epoch:
            sess.track(channel, last_seen[channel] + 1, t, "connected")
        elif head is not None:
            sess.track(channel, head + 1, t, "connected")


def _on_reset(sess: Session, channel: str, head: int | None, epoch: str | None, t: float) -> None:
    """A gap-fill refused, or a new numbering: the channel is owed from ``head + 1`` and what
    the session received before no longer counts for guarantee 2. In a new epoch, the stretch
    of the old one ends here (its messages are owed no more) and a new stretch starts."""
    if head is None:
        return
    sess.received.pop(channel, None)
    sess.top.pop(channel, None)
    seg = sess.open_segments.get(channel)
    new_epoch = epoch is not None and epoch != sess.epochs.get(channel)
    if seg is not None and not new_epoch:
        seg.start_seq = head + 1
        sess.expected[channel] = head + 1
        return
    if seg is not None:
        sess.untrack(channel, t)
    _enter_epoch(sess, channel, epoch)
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
