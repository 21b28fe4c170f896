"""The invariant checker: did a run keep the protocol's guarantees? Pure, no I/O.

Theory of operation
-------------------
The checker never looks inside a client or a gateway. It reads two things after a run:

- the :class:`~labkit.core.records.Recording`: every frame each client sent (``out``) and received
  (``in``), and when each connection became usable (``open``) and ended (``close``);
- the *store*: for each channel, the ``message`` frames stored, as read back after the run.

The real clients, the simulated clients and a student's own client all write the same records,
so one checker judges them all. It replays the records in order, keeping for every *session*
(one connection of one client: ``client`` + ``session`` number) and every channel the session
tracks a *resume point*, the first seq it is owed (PROTOCOL.md, "Guarantees", 3):

=========================================  =====================================
event                                      resume point of the channel
=========================================  =====================================
``welcome``, channel in the hello's        ``last_seen + 1`` (the hello is the
``last_seen``                              client's latest one before the welcome)
``welcome``, otherwise                     ``head + 1``
``reset``                                  ``head + 1`` (the numbering may restart)
``joined`` (with or without ``id``)        ``head + 1``
``left``                                   tracking ends
=========================================  =====================================

and reports each broken guarantee as a :class:`Violation` whose ``detail`` is a plain sentence
naming the client, user, channel and seq:

``store_gap`` / ``store_duplicate``
    The store's seqs of a channel are not exactly 1..N (guarantee 1).
``duplicate`` / ``out_of_order``
    A session received a seq twice, or one lower than a seq it already had (guarantee 2).
``gap``
    From the resume point on, a session received a seq above the next one it was owed
    (guarantee 3): the skipped seqs are listed.
``not_delivered``
    A stored seq at or after the resume point, acked (or stored, by its ``ts``) at least
    ``settle_s`` before the session ended, never reached the session (guarantee 3, the
    "lost tail" clause: repaired within 2 seconds). A session (or a stretch of it after
    ``joined``) shorter than ``settle_s`` is owed nothing: it may have ended mid gap-fill.
``acked_missing``
    An ``ack`` names a seq the store does not hold, or holds with another user or text than
    the ``post`` it acknowledged (guarantee 4).
``order_mismatch``
    Two clients received the same channel seq with different (user, text): they saw the
    channel in different orders (guarantee 5).

:func:`check` returns a :class:`Report` with the violations and the run's statistics;
``Report.render()`` prints it the way Jepsen and Maelstrom do (``:valid? true``).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from labkit.core.records import Recording

KINDS: tuple[str, ...] = (
    "store_gap",
    "store_duplicate",
    "duplicate",
    "out_of_order",
    "gap",
    "not_delivered",
    "acked_missing",
    "order_mismatch",
)
"""Every violation kind, in the order a report lists them."""

MAX_SHOWN_PER_KIND = 20


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken guarantee."""

    kind: str
    """One of :data:`KINDS`."""
    client: str | None
    """The client that saw it (None for a fault of the store itself)."""
    user: str | None
    channel: str
    seq: int | None
    """The seq at fault: the first missing one for a ``gap``."""
    detail: str
    """A plain sentence a student can read without the code open."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "client": self.client,
            "user": self.user,
            "channel": self.channel,
            "seq": self.seq,
            "detail": self.detail,
        }


@dataclass
class Report:
    """What :func:`check` found, with the run's counts."""

    violations: list[Violation]
    messages_checked: int
    """Messages in the store."""
    posts_acked: int
    """Distinct posts (user, id) that got an ``ack``."""
    deliveries: int
    """``message`` frames received by all clients together."""
    faults: dict[str, int] = field(default_factory=dict)
    bus_messages_per_post: float | None = None
    latency: dict[str, float] = field(default_factory=dict)
    """``p50``, ``p95``, ``p99``, ``max`` seconds from a message's ``ts`` to its receipt."""

    @property
    def ok(self) -> bool:
        return not self.violations

    def by_kind(self) -> dict[str, list[Violation]]:
        """Violations grouped by kind, kinds in :data:`KINDS` order."""
        groups: dict[str, list[Violation]] = {}
        order = {kind: i for i, kind in enumerate(KINDS)}
        for v in sorted(self.violations, key=lambda v: order.get(v.kind, len(KINDS))):
            groups.setdefault(v.kind, []).append(v)
        return groups

    def render(self) -> str:
        """A readable multi-line report, Jepsen style."""
        lines = [f":valid? {'true' if self.ok else 'false'}"]
        lines.append(f":messages-checked {self.messages_checked}")
        lines.append(f":posts-acked {self.posts_acked}")
        lines.append(f":deliveries {self.deliveries}")
        if self.bus_messages_per_post is not None:
            lines.append(f":bus-messages-per-post {self.bus_messages_per_post:.2f}")
        if self.latency:
            inner = " ".join(f":{k} {v * 1000:.1f}ms" for k, v in self.latency.items())
            lines.append(f":latency {{{inner}}}")
        if self.faults:
            inner = " ".join(f":{k} {v}" for k, v in sorted(self.faults.items()))
            lines.append(f":faults {{{inner}}}")
        lines.append(f":violations {len(self.violations)}")
        for kind, group in self.by_kind().items():
            lines.append(f"  :{kind} {len(group)}")
            for v in group[:MAX_SHOWN_PER_KIND]:
                lines.append(f"    - {v.detail}")
            if len(group) > MAX_SHOWN_PER_KIND:
                lines.append(f"    ... and {len(group) - MAX_SHOWN_PER_KIND} more")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "valid": self.ok,
            "messages_checked": self.messages_checked,
            "posts_acked": self.posts_acked,
            "deliveries": self.deliveries,
            "faults": dict(self.faults),
            "bus_messages_per_post": self.bus_messages_per_post,
            "latency": dict(self.latency),
            "violation_counts": {k: len(g) for k, g in self.by_kind().items()},
            "violations": [v.to_dict() for v in self.violations],
        }

    def __str__(self) -> str:
        return self.render()


# --------------------------------------------------------------------------- replay state


@dataclass(slots=True)
class _Segment:
    """A stretch of one session during which it tracked one channel."""

    channel: str
    start_seq: int
    start_t: float
    end_t: float | None = None
    how: str = "connected"


@dataclass(slots=True)
class _Session:
    client: str
    user: str
    number: int
    last_seen: dict[str, int] = field(default_factory=dict)
    expected: dict[str, int] = field(default_factory=dict)
    """Per tracked channel: the next seq owed."""
    open_segments: dict[str, _Segment] = field(default_factory=dict)
    segments: list[_Segment] = field(default_factory=list)
    received: dict[str, dict[int, float]] = field(default_factory=dict)
    top: dict[str, int] = field(default_factory=dict)
    closed: bool = False

    @property
    def name(self) -> str:
        return f"{self.client} (session {self.number})"

    def track(self, channel: str, start_seq: int, t: float, how: str) -> None:
        self.expected[channel] = start_seq
        seg = _Segment(channel, start_seq, t, how=how)
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


def _seq_ranges(seqs: Sequence[int]) -> str:
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


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending, non-empty sequence."""
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _num(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


# --------------------------------------------------------------------------- the check


def check(
    recording: Recording,
    store: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    faults: Mapping[str, int] | None = None,
    bus_messages: int | None = None,
    settle_s: float = 2.0,
    end_t: float | None = None,
) -> Report:
    """Check ``recording`` against ``store`` (channel → stored ``message`` frames).

    ``end_t`` is when the run stopped, for sessions still open at the end (default: the last
    record's time). A message is owed to a session only if it was acked (or, never acked,
    stored with ``ts``) at least ``settle_s`` before the session ended.
    """
    violations: list[Violation] = []

    # -- the store: exactly 1..N per channel ------------------------------------------------
    stored: dict[str, dict[int, Mapping[str, Any]]] = {}
    said_at: dict[tuple[str, int], list[tuple[Any, Any]]] = {}
    for channel in sorted(store):
        frames = store[channel]
        by_seq: dict[int, Mapping[str, Any]] = {}
        for frame in frames:
            seq = _int(frame.get("seq"))
            if seq is None:
                continue
            said_at.setdefault((channel, seq), []).append((frame.get("user"), frame.get("text")))
            if seq in by_seq:
                first = by_seq[seq]
                violations.append(
                    Violation(
                        "store_duplicate",
                        None,
                        _str(frame.get("user")),
                        channel,
                        seq,
                        f"the store holds {channel} seq {seq} twice: "
                        f"{_said(first)} and {_said(frame)}",
                    )
                )
                continue
            by_seq[seq] = frame
        stored[channel] = by_seq
        top = max(by_seq, default=0)
        missing = [s for s in range(1, top + 1) if s not in by_seq]
        for seq in missing:
            violations.append(
                Violation(
                    "store_gap",
                    None,
                    None,
                    channel,
                    seq,
                    f"the store has no {channel} seq {seq} although it holds seqs up to {top}",
                )
            )
    messages_checked = sum(len(frames) for frames in store.values())

    # -- replay the records -----------------------------------------------------------------
    sessions: dict[tuple[str, int], _Session] = {}
    posts: dict[tuple[str, str], Mapping[str, Any]] = {}
    hellos: dict[str, dict[str, int]] = {}
    acks: dict[tuple[str, str], tuple[str, str, int, float, str]] = {}
    seen_as: dict[tuple[str, int], tuple[str, str, str, float]] = {}
    mismatched: set[tuple[str, int]] = set()
    latencies: list[float] = []
    deliveries = 0
    last_t = 0.0

    for record in recording.records:
        last_t = record.t if record.t > last_t else last_t
        key = (record.client, record.session)
        sess = sessions.get(key)
        if sess is None:
            sess = sessions[key] = _Session(record.client, record.user, record.session)
        frame = record.frame
        kind = record.kind
        if kind == "in":
            ftype = frame.get("type")
            if ftype == "message":
                deliveries += 1
                channel = str(frame.get("channel"))
                seq = _int(frame.get("seq"))
                if seq is None:
                    continue
                ts = _num(frame.get("ts"))
                if ts is not None:
                    latencies.append(record.t - ts)
                _on_message(sess, channel, seq, record.t, violations)
                said = (_str(frame.get("user")) or "", str(frame.get("text")))
                prior = seen_as.get((channel, seq))
                if prior is None:
                    seen_as[(channel, seq)] = (said[0], said[1], record.client, record.t)
                elif (prior[0], prior[1]) != said and (channel, seq) not in mismatched:
                    mismatched.add((channel, seq))
                    violations.append(
                        Violation(
                            "order_mismatch",
                            record.client,
                            record.user,
                            channel,
                            seq,
                            f"{record.client} received {channel} seq {seq} as "
                            f"{said[0]}: {said[1]!r} at {record.t:.2f} s but {prior[2]} received "
                            f"it as {prior[0]}: {prior[1]!r} at {prior[3]:.2f} s",
                        )
                    )
            elif ftype == "welcome":
                # The hello this welcome answers: the client's latest. (The live client numbers
                # a session at its welcome, so its hello carries the previous session number.)
                sess.last_seen = hellos.pop(record.client, {})
                channels = frame.get("channels")
                if isinstance(channels, Mapping):
                    for channel in sorted(channels):
                        info = channels[channel]
                        head = _int(info.get("head")) if isinstance(info, Mapping) else None
                        if channel in sess.last_seen:
                            sess.track(channel, sess.last_seen[channel] + 1, record.t, "connected")
                        elif head is not None:
                            sess.track(channel, head + 1, record.t, "connected")
            elif ftype == "reset":
                channel = str(frame.get("channel"))
                head = _int(frame.get("head"))
                if head is not None:
                    # A new numbering (or a gap-fill refused): start over at head + 1.
                    sess.received.pop(channel, None)
                    sess.top.pop(channel, None)
                    seg = sess.open_segments.get(channel)
                    if seg is not None:
                        seg.start_seq = head + 1
                        sess.expected[channel] = head + 1
                    else:
                        sess.track(channel, head + 1, record.t, "connected")
            elif ftype == "joined":
                channel = str(frame.get("channel"))
                head = _int(frame.get("head"))
                if head is not None and channel not in sess.open_segments:
                    sess.track(channel, head + 1, record.t, "a member")
            elif ftype == "left":
                sess.untrack(str(frame.get("channel")), record.t)
            elif ftype == "ack":
                post_id = _str(frame.get("id"))
                seq = _int(frame.get("seq"))
                if post_id is not None and seq is not None:
                    ack_key = (record.user, post_id)
                    if ack_key not in acks:
                        channel = str(frame.get("channel"))
                        acks[ack_key] = (record.client, channel, seq, record.t, post_id)
        elif kind == "out":
            ftype = frame.get("type")
            if ftype == "hello":
                last_seen = frame.get("last_seen")
                hellos[record.client] = (
                    {str(c): s for c, s in last_seen.items() if _int(s) is not None}
                    if isinstance(last_seen, Mapping)
                    else {}
                )
            elif ftype == "post":
                post_id = _str(frame.get("id"))
                if post_id is not None:
                    posts.setdefault((record.user, post_id), frame)
        elif kind == "close":
            sess.close(record.t)

    stop_t = end_t if end_t is not None else last_t
    for sess in sessions.values():
        if not sess.closed:
            sess.close(stop_t)

    # -- acked posts are stored, as posted -------------------------------------------------
    acked_at: dict[tuple[str, int], float] = {}
    for (user, post_id), (client, channel, seq, t, _) in acks.items():
        acked_at.setdefault((channel, seq), t)
        stored_frame = stored.get(channel, {}).get(seq)
        if stored_frame is None:
            violations.append(
                Violation(
                    "acked_missing",
                    client,
                    user,
                    channel,
                    seq,
                    f"{client} got an ack for post {post_id!r} as {channel} seq {seq} at "
                    f"{t:.2f} s, but the store has no {channel} seq {seq}",
                )
            )
            continue
        post = posts.get((user, post_id))
        if post is None:
            continue
        want = (user, post.get("text"))
        if want not in said_at[(channel, seq)] or post.get("channel", channel) != channel:
            violations.append(
                Violation(
                    "acked_missing",
                    client,
                    user,
                    channel,
                    seq,
                    f"{client} got an ack for post {post_id!r} ({user}: {post.get('text')!r}) "
                    f"as {channel} seq {seq}, but the store holds {_said(stored_frame)} there",
                )
            )

    # -- every owed message reached every session that stayed long enough -------------------
    owed_at: dict[str, tuple[list[int], list[float]]] = {}
    for channel, by_seq in stored.items():
        seqs = sorted(by_seq)
        times: list[float] = []
        for seq in seqs:
            when = acked_at.get((channel, seq))
            if when is None:
                when = _num(by_seq[seq].get("ts"))
            times.append(math.inf if when is None else when)
        owed_at[channel] = (seqs, times)
    for sess in sessions.values():
        for seg in sess.segments:
            if seg.channel not in owed_at or seg.end_t is None:
                continue
            seqs, times = owed_at[seg.channel]
            got = sess.received.get(seg.channel, {})
            # Owed: acked settle_s before the end, and tracked for settle_s (a session cut
            # a moment after its welcome cannot have been gap-filled yet).
            cutoff = seg.end_t - settle_s
            if seg.start_t > cutoff:
                continue
            for i in range(bisect.bisect_left(seqs, seg.start_seq), len(seqs)):
                seq = seqs[i]
                if times[i] > cutoff or seq in got:
                    continue
                violations.append(
                    Violation(
                        "not_delivered",
                        sess.client,
                        sess.user,
                        seg.channel,
                        seq,
                        f"{sess.name} never received {seg.channel} seq {seq} (acked at "
                        f"{times[i]:.2f} s) although it stayed {seg.how} from {seg.start_t:.2f} s "
                        f"to {seg.end_t:.2f} s",
                    )
                )

    latencies.sort()
    latency: dict[str, float] = {}
    if latencies:
        latency = {
            "p50": _percentile(latencies, 0.50),
            "p95": _percentile(latencies, 0.95),
            "p99": _percentile(latencies, 0.99),
            "max": latencies[-1],
        }
    posts_acked = len(acks)
    per_post = None
    if bus_messages is not None and posts_acked:
        per_post = bus_messages / posts_acked
    return Report(
        violations=violations,
        messages_checked=messages_checked,
        posts_acked=posts_acked,
        deliveries=deliveries,
        faults=dict(faults or {}),
        bus_messages_per_post=per_post,
        latency=latency,
    )


def _on_message(
    sess: _Session, channel: str, seq: int, t: float, violations: list[Violation]
) -> None:
    got = sess.received.get(channel)
    if got is None:
        got = sess.received[channel] = {}
    if seq in got:
        violations.append(
            Violation(
                "duplicate",
                sess.client,
                sess.user,
                channel,
                seq,
                f"{sess.name} received {channel} seq {seq} twice, at {got[seq]:.2f} s "
                f"and at {t:.2f} s",
            )
        )
        return
    got[seq] = t
    top = sess.top.get(channel, 0)
    if seq < top:
        violations.append(
            Violation(
                "out_of_order",
                sess.client,
                sess.user,
                channel,
                seq,
                f"{sess.name} received {channel} seq {seq} at {t:.2f} s after it had "
                f"already received seq {top}",
            )
        )
    else:
        sess.top[channel] = seq
    expected = sess.expected.get(channel)
    if expected is None:
        return
    if seq > expected:
        missing = [s for s in range(expected, seq) if s not in got]
        if missing:
            violations.append(
                Violation(
                    "gap",
                    sess.client,
                    sess.user,
                    channel,
                    missing[0],
                    f"{sess.name} received {channel} seq {seq} at {t:.2f} s while it was "
                    f"still owed seq {_seq_ranges(missing)}",
                )
            )
    if seq >= expected:
        sess.expected[channel] = seq + 1


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _said(frame: Mapping[str, Any]) -> str:
    return f"{frame.get('user')}: {frame.get('text')!r}"
