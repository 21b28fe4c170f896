"""The phases that read the store: its own numbering, and the posts it acknowledged."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from labkit.lab.checker.gather import Ack, as_int, as_str
from labkit.lab.checker.report import Violation


@dataclass(slots=True)
class Stored:
    """The store's contents, indexed for the later phases."""

    by_seq: dict[str, dict[int, Mapping[str, Any]]] = field(default_factory=dict)
    """Channel → seq → the first frame stored under that seq."""
    said_at: dict[tuple[str, int], list[tuple[Any, Any]]] = field(default_factory=dict)
    """(channel, seq) → the (user, text) of every frame stored under it."""
    messages: int = 0
    """Frames stored, duplicates included."""


def check_store(store: Mapping[str, Sequence[Mapping[str, Any]]]) -> tuple[Stored, list[Violation]]:
    """Guarantee 1 (PROTOCOL.md, "Guarantees"): each channel's stored seqs are exactly 1..N.

    A seq stored twice is a ``store_duplicate`` (the first frame is kept for the later phases),
    a seq missing below the highest one a ``store_gap``.
    """
    stored = Stored(messages=sum(len(frames) for frames in store.values()))
    violations: list[Violation] = []
    for channel in sorted(store):
        by_seq: dict[int, Mapping[str, Any]] = {}
        for frame in store[channel]:
            seq = as_int(frame.get("seq"))
            if seq is None:
                continue
            stored.said_at.setdefault((channel, seq), []).append(
                (frame.get("user"), frame.get("text"))
            )
            if seq not in by_seq:
                by_seq[seq] = frame
                continue
            detail = (
                f"the store holds {channel} seq {seq} twice: {said(by_seq[seq])} and {said(frame)}"
            )
            user = as_str(frame.get("user"))
            violations.append(Violation("store_duplicate", None, user, channel, seq, detail))
        stored.by_seq[channel] = by_seq
        top = max(by_seq, default=0)
        for seq in (s for s in range(1, top + 1) if s not in by_seq):
            detail = f"the store has no {channel} seq {seq} although it holds seqs up to {top}"
            violations.append(Violation("store_gap", None, None, channel, seq, detail))
    return stored, violations


def check_acked(
    acks: Mapping[tuple[str, str], Ack],
    posts: Mapping[tuple[str, str], Mapping[str, Any]],
    stored: Stored,
) -> list[Violation]:
    """Guarantee 4: an acked post is stored, under the seq the ``ack`` names, as posted.

    ``acked_missing`` when the store has no such seq, or holds another user or text there, or
    the post named another channel. A post the records do not show (its ``post`` frame was not
    recorded) can only be checked for presence.
    """
    violations: list[Violation] = []
    for (user, post_id), (client, channel, seq, t, _) in acks.items():
        stored_frame = stored.by_seq.get(channel, {}).get(seq)
        if stored_frame is None:
            detail = (
                f"{client} got an ack for post {post_id!r} as {channel} seq {seq} at "
                f"{t:.2f} s, but the store has no {channel} seq {seq}"
            )
            violations.append(Violation("acked_missing", client, user, channel, seq, detail))
            continue
        post = posts.get((user, post_id))
        if post is None:
            continue
        want = (user, post.get("text"))
        if want not in stored.said_at[(channel, seq)] or post.get("channel", channel) != channel:
            detail = (
                f"{client} got an ack for post {post_id!r} ({user}: {post.get('text')!r}) "
                f"as {channel} seq {seq}, but the store holds {said(stored_frame)} there"
            )
            violations.append(Violation("acked_missing", client, user, channel, seq, detail))
    return violations


def said(frame: Mapping[str, Any]) -> str:
    """``user: 'text'`` of a stored frame, for a violation's sentence."""
    return f"{frame.get('user')}: {frame.get('text')!r}"
