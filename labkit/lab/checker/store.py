"""The phases that read the store: its own numbering, and the posts it acknowledged.

A channel's numbering lives in an *epoch* (PROTOCOL.md, "Starting a session"): a data loss
starts the channel again at seq 1 under a new epoch. The store is therefore read as one *log*
per (channel, epoch): the epoch it holds now, and each epoch a data loss ended
(:class:`LostEpoch`, kept by whoever injected the loss). A store given without epoch names is
one log per channel, whatever epochs the clients were told.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from labkit.lab.checker.gather import Ack, as_int, as_num, as_str
from labkit.lab.checker.report import Violation

LogKey = tuple[str, str | None]
"""(channel, epoch); the epoch is None for a store whose epochs were not named."""


@dataclass(frozen=True, slots=True)
class LostEpoch:
    """One numbering of a channel that a data loss ended."""

    channel: str
    epoch: str
    frames: Sequence[Mapping[str, Any]]
    """The ``message`` frames the store held under this epoch when it was lost."""
    lost_at: float
    """When it was lost: nothing of it is owed to anyone after this."""


@dataclass(slots=True)
class Stored:
    """The store's contents, indexed for the later phases."""

    by_seq: dict[LogKey, dict[int, Mapping[str, Any]]] = field(default_factory=dict)
    """Log → seq → the first frame stored under that seq."""
    said_at: dict[tuple[LogKey, int], list[tuple[Any, Any, float | None]]] = field(
        default_factory=dict
    )
    """(log, seq) → the (user, text, ts) of every frame stored under it."""
    lost_at: dict[LogKey, float] = field(default_factory=dict)
    """The logs a data loss ended, and when."""
    named: dict[str, None] = field(default_factory=dict)
    """Channels whose epochs are named."""
    messages: int = 0
    """Frames stored, duplicates included, over every epoch."""

    def key(self, channel: str, epoch: str | None) -> LogKey:
        """The log holding ``channel``'s seqs under ``epoch`` (as a client was told it)."""
        return (channel, epoch) if channel in self.named else (channel, None)

    def logs_of(self, channel: str) -> list[LogKey]:
        """``channel``'s logs, the current one last."""
        return [key for key in self.by_seq if key[0] == channel]

    def where(self, key: LogKey) -> str:
        """``general`` or, once a channel has had several epochs, ``general (epoch e2)``."""
        channel, epoch = key
        if epoch is None or len(self.logs_of(channel)) < 2:
            return channel
        return f"{channel} (epoch {epoch})"


def check_store(
    store: Mapping[str, Sequence[Mapping[str, Any]]],
    epochs: Mapping[str, str] | None = None,
    lost: Iterable[LostEpoch] = (),
) -> tuple[Stored, list[Violation]]:
    """Guarantee 1 (PROTOCOL.md, "Guarantees"): each log's stored seqs are exactly 1..N.

    ``store`` holds each channel's current frames, ``epochs`` names their epochs, ``lost`` the
    epochs lost before. A seq stored twice in one log is a ``store_duplicate`` (the first frame
    is kept for the later phases), a seq missing below the highest one a ``store_gap``.
    """
    names = dict(epochs or {})
    lost = list(lost)
    for old in lost:
        if old.channel not in names:
            raise ValueError(f"lost epoch {old.epoch} of {old.channel} given without epoch names")
    stored = Stored(named=dict.fromkeys(names))
    logs: list[tuple[LogKey, Sequence[Mapping[str, Any]]]] = []
    for old in lost:
        logs.append(((old.channel, old.epoch), old.frames))
        stored.lost_at[(old.channel, old.epoch)] = old.lost_at
    for channel in sorted(store):
        logs.append(((channel, names.get(channel)), store[channel]))
    logs.sort(key=lambda log: log[0][0])  # by channel, lost epochs first (a stable sort)
    for key, _ in logs:
        stored.by_seq[key] = {}
    violations: list[Violation] = []
    for key, frames in logs:
        stored.messages += len(frames)
        violations += _check_log(stored, key, frames)
    return stored, violations


def _check_log(stored: Stored, key: LogKey, frames: Sequence[Mapping[str, Any]]) -> list[Violation]:
    channel = key[0]
    where = stored.where(key)
    by_seq = stored.by_seq[key]
    violations: list[Violation] = []
    for frame in frames:
        seq = as_int(frame.get("seq"))
        if seq is None:
            continue
        stored.said_at.setdefault((key, seq), []).append(
            (frame.get("user"), frame.get("text"), as_num(frame.get("ts")))
        )
        if seq not in by_seq:
            by_seq[seq] = frame
            continue
        detail = f"the store holds {where} seq {seq} twice: {said(by_seq[seq])} and {said(frame)}"
        user = as_str(frame.get("user"))
        violations.append(Violation("store_duplicate", None, user, channel, seq, detail))
    top = max(by_seq, default=0)
    for seq in (s for s in range(1, top + 1) if s not in by_seq):
        detail = f"the store has no {where} seq {seq} although it holds seqs up to {top}"
        violations.append(Violation("store_gap", None, None, channel, seq, detail))
    return violations


def ack_log(stored: Stored, ack: Ack, post: Mapping[str, Any] | None, user: str) -> LogKey | None:
    """The log an ``ack`` was given in (an ack names no epoch): the one holding the post, as
    posted, under the ack's seq (with the ack's ``ts`` if several do), else the latest one
    holding the seq at all, else None."""
    candidates = [key for key in stored.logs_of(ack.channel) if ack.seq in stored.by_seq[key]]
    if post is not None:
        want = (user, post.get("text"))
        holding = [
            key for key in candidates if any(s[:2] == want for s in stored.said_at[(key, ack.seq)])
        ]
        same_ts = [
            key
            for key in holding
            if ack.ts is not None and any(s[2] == ack.ts for s in stored.said_at[(key, ack.seq)])
        ]
        candidates = same_ts or holding or candidates
    return candidates[-1] if candidates else None


def check_acked(
    acks: Mapping[tuple[str, str], Ack],
    posts: Mapping[tuple[str, str], Mapping[str, Any]],
    stored: Stored,
) -> tuple[list[Violation], dict[tuple[str, str], LogKey]]:
    """Guarantee 4: an acked post is stored, under the seq the ``ack`` names, as posted, in
    the epoch it was acked in (which a later data loss may have ended: no persistence, no
    promise that it survives, only that it was stored).

    ``acked_missing`` when no epoch of the channel has such a seq, or none holds the post's
    user and text there, or the post named another channel. A post the records do not show
    (its ``post`` frame was not recorded) can only be checked for presence. Also returns the
    log each ack was matched to, for the delivery phase.
    """
    violations: list[Violation] = []
    logs: dict[tuple[str, str], LogKey] = {}
    for (user, post_id), ack in acks.items():
        client, channel, seq, t = ack.client, ack.channel, ack.seq, ack.t
        post = posts.get((user, post_id))
        key = ack_log(stored, ack, post, user)
        if key is None:
            detail = (
                f"{client} got an ack for post {post_id!r} as {channel} seq {seq} at "
                f"{t:.2f} s, but the store has no {channel} seq {seq}"
            )
            violations.append(Violation("acked_missing", client, user, channel, seq, detail))
            continue
        logs[(user, post_id)] = key
        if post is None:
            continue
        want = (user, post.get("text"))
        held = [s[:2] for s in stored.said_at[(key, seq)]]
        if want not in held or post.get("channel", channel) != channel:
            detail = (
                f"{client} got an ack for post {post_id!r} ({user}: {post.get('text')!r}) "
                f"as {channel} seq {seq}, but the store holds "
                f"{said(stored.by_seq[key][seq])} there"
            )
            violations.append(Violation("acked_missing", client, user, channel, seq, detail))
    return violations, logs


def said(frame: Mapping[str, Any]) -> str:
    """``user: 'text'`` of a stored frame, for a violation's sentence."""
    return f"{frame.get('user')}: {frame.get('text')!r}"
