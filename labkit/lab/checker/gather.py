"""Phase 1 of the check: read the recording once and sort it into what the other phases read.

No guarantee is judged here. The records of all clients come interleaved in time; this phase
splits them into one :class:`Stream` per session (PROTOCOL.md, "Guarantees", 2 and 3 are
promises to a session), lists every ``message`` received as a :class:`Receipt` in recording
order (guarantee 5 compares receipts across members), and keeps the posts a client sent and the
``ack`` each got (guarantee 4).

Every event and receipt keeps its position in the recording (``index``), so the phases that
judge them separately can still list their violations in the order the records show them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from labkit.core.records import FrameRecord, Recording

STREAM_FRAMES = frozenset({"message", "welcome", "reset", "joined", "left"})
"""Received frames that bring a session a message or move its resume points."""


@dataclass(frozen=True, slots=True)
class Event:
    """One record of a session that the per-session check replays."""

    index: int
    """The record's position in the recording."""
    t: float
    type: str
    """The received frame's ``type`` (one of :data:`STREAM_FRAMES`), or ``"close"``."""
    frame: Mapping[str, Any]
    last_seen: Mapping[str, int] = field(default_factory=dict)
    """For a ``welcome``: the ``last_seen`` of the hello it answers, the client's latest one
    (the live client numbers a session at its welcome, so its hello carries the previous
    session number, and the hello is found by client, not by session)."""
    epochs: Mapping[str, str] = field(default_factory=dict)
    """For a ``welcome``: the ``epochs`` of that hello."""


@dataclass(slots=True)
class Stream:
    """What one session (one connection of one client) received, in order."""

    client: str
    user: str
    number: int
    events: list[Event] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Receipt:
    """One ``message`` frame, with a seq, received by one client."""

    index: int
    t: float
    client: str
    user: str
    channel: str
    seq: int
    said: tuple[str, str]
    """The message's (user, text), as received."""
    ts: float | None
    """The message's ``ts``, when it carries a number."""


class Ack(NamedTuple):
    """The first ``ack`` a user got for one post id."""

    client: str
    channel: str
    seq: int
    t: float
    post_id: str
    ts: float | None = None
    """The ack's ``ts``: when the seq was assigned (it tells epochs apart)."""


@dataclass(slots=True)
class Gathered:
    """The recording, sorted for the phases that judge it."""

    streams: dict[tuple[str, int], Stream] = field(default_factory=dict)
    """(client, session) → stream, in the order the sessions first appear."""
    receipts: list[Receipt] = field(default_factory=list)
    posts: dict[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)
    """(user, post id) → the first ``post`` frame sent with that id."""
    acks: dict[tuple[str, str], Ack] = field(default_factory=dict)
    """(user, post id) → its first ``ack``, in the order they arrived."""
    deliveries: int = 0
    """``message`` frames received, with or without a seq."""
    last_t: float = 0.0
    """The latest record's time."""
    hellos: dict[str, tuple[dict[str, int], dict[str, str]]] = field(default_factory=dict)
    """Client → ``last_seen`` and ``epochs`` of its latest hello not yet answered by a
    welcome."""


def gather(recording: Recording) -> Gathered:
    """Sort ``recording`` into streams, receipts, posts and acks (see the module notes)."""
    found = Gathered()
    for index, record in enumerate(recording.records):
        if record.t > found.last_t:
            found.last_t = record.t
        key = (record.client, record.session)
        stream = found.streams.get(key)
        if stream is None:
            stream = found.streams[key] = Stream(record.client, record.user, record.session)
        if record.kind == "in":
            _gather_in(found, stream, index, record)
        elif record.kind == "out":
            _gather_out(found, record)
        elif record.kind == "close":
            stream.events.append(Event(index, record.t, "close", record.frame))
    return found


def _gather_in(found: Gathered, stream: Stream, index: int, record: FrameRecord) -> None:
    frame = record.frame
    ftype = frame.get("type")
    if ftype == "message":
        found.deliveries += 1
        seq = as_int(frame.get("seq"))
        if seq is None:
            return
        channel = str(frame.get("channel"))
        said = (as_str(frame.get("user")) or "", str(frame.get("text")))
        ts = as_num(frame.get("ts"))
        receipt = Receipt(index, record.t, record.client, record.user, channel, seq, said, ts)
        found.receipts.append(receipt)
        stream.events.append(Event(index, record.t, ftype, frame))
    elif ftype == "welcome":
        last_seen, epochs = found.hellos.pop(record.client, ({}, {}))
        stream.events.append(Event(index, record.t, ftype, frame, last_seen, epochs))
    elif isinstance(ftype, str) and ftype in STREAM_FRAMES:
        stream.events.append(Event(index, record.t, ftype, frame))
    elif ftype == "ack":
        post_id = as_str(frame.get("id"))
        seq = as_int(frame.get("seq"))
        if post_id is not None and seq is not None:
            ack_key = (record.user, post_id)
            if ack_key not in found.acks:
                channel = str(frame.get("channel"))
                ts = as_num(frame.get("ts"))
                found.acks[ack_key] = Ack(record.client, channel, seq, record.t, post_id, ts)


def _gather_out(found: Gathered, record: FrameRecord) -> None:
    frame = record.frame
    ftype = frame.get("type")
    if ftype == "hello":
        last_seen, epochs = frame.get("last_seen"), frame.get("epochs")
        found.hellos[record.client] = (
            {str(c): s for c, s in last_seen.items() if as_int(s) is not None}
            if isinstance(last_seen, Mapping)
            else {},
            {str(c): e for c, e in epochs.items() if isinstance(e, str)}
            if isinstance(epochs, Mapping)
            else {},
        )
    elif ftype == "post":
        post_id = as_str(frame.get("id"))
        if post_id is not None:
            found.posts.setdefault((record.user, post_id), frame)


def as_int(value: object) -> int | None:
    """``value`` if it is an int (a bool is not a seq), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def as_num(value: object) -> float | None:
    """``value`` as a float if it is a number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def as_str(value: object) -> str | None:
    """``value`` if it is a string, else None."""
    return value if isinstance(value, str) else None
