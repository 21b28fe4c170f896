"""The phases that compare what the members received with each other and with the store."""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping

from labkit.lab.checker.gather import Ack, Receipt, as_num
from labkit.lab.checker.report import Violation
from labkit.lab.checker.store import LogKey, Stored
from labkit.lab.checker.streams import Found, Session


def check_same_order(
    receipts: Iterable[Receipt], epoch_at: Mapping[int, str | None] | None = None
) -> Found:
    """Guarantee 5 (PROTOCOL.md, "Guarantees"): every member sees a channel in one order.

    The first receipt of a (channel, epoch, seq) fixes its (user, text); any client that later
    receives that seq of that epoch as something else is an ``order_mismatch``, reported once
    per (channel, epoch, seq). ``epoch_at`` gives the epoch each receipt (by recording index)
    was received under. ``receipts`` must come in recording order, so "first" means first in
    time.
    """
    epoch_at = epoch_at or {}
    first: dict[tuple[str, str | None, int], Receipt] = {}
    mismatched: set[tuple[str, str | None, int]] = set()
    found: Found = []
    for r in receipts:
        key = (r.channel, epoch_at.get(r.index), r.seq)
        prior = first.setdefault(key, r)
        if prior.said == r.said or key in mismatched:
            continue
        mismatched.add(key)
        detail = (
            f"{r.client} received {r.channel} seq {r.seq} as "
            f"{r.said[0]}: {r.said[1]!r} at {r.t:.2f} s but {prior.client} received "
            f"it as {prior.said[0]}: {prior.said[1]!r} at {prior.t:.2f} s"
        )
        violation = Violation("order_mismatch", r.client, r.user, r.channel, r.seq, detail)
        found.append((r.index, violation))
    return found


def check_delivered(
    sessions: Iterable[Session],
    stored: Stored,
    acks: Iterable[tuple[Ack, LogKey]],
    settle_s: float,
) -> list[Violation]:
    """Guarantee 3, the "lost tail" clause: a stored seq at or after a session's resume point,
    acked (or, never acked, stored by its ``ts``) at least ``settle_s`` before the session
    stopped tracking the channel, reached it. ``acks`` come with the log each was matched to.

    A stretch is owed the seqs of its own epoch only, and none stored less than ``settle_s``
    before the stretch ended or (a data loss) its epoch was lost. A stretch tracked for less
    than ``settle_s`` is owed nothing: a session cut a moment after its welcome cannot have
    been gap-filled yet.
    """
    owed = _owed_at(stored.by_seq, _acked_at(acks))
    violations: list[Violation] = []
    for sess in sessions:
        for seg in sess.segments:
            key = stored.key(seg.channel, seg.epoch)
            if key not in owed or seg.end_t is None:
                continue
            seqs, times = owed[key]
            got = sess.got.get((seg.channel, seg.epoch), set())
            cutoff = min(seg.end_t, stored.lost_at.get(key, seg.end_t)) - settle_s
            if seg.start_t > cutoff:
                continue
            for i in range(bisect.bisect_left(seqs, seg.start_seq), len(seqs)):
                seq = seqs[i]
                if times[i] > cutoff or seq in got:
                    continue
                detail = (
                    f"{sess.name} never received {stored.where(key)} seq {seq} (acked at "
                    f"{times[i]:.2f} s) although it stayed {seg.how} from {seg.start_t:.2f} s "
                    f"to {seg.end_t:.2f} s"
                )
                violations.append(
                    Violation("not_delivered", sess.client, sess.user, seg.channel, seq, detail)
                )
    return violations


def _acked_at(acks: Iterable[tuple[Ack, LogKey]]) -> dict[tuple[LogKey, int], float]:
    """(log, seq) → when its first ``ack`` arrived."""
    acked_at: dict[tuple[LogKey, int], float] = {}
    for ack, key in acks:
        acked_at.setdefault((key, ack.seq), ack.t)
    return acked_at


def _owed_at(
    by_seq: Mapping[LogKey, Mapping[int, Mapping[str, object]]],
    acked_at: Mapping[tuple[LogKey, int], float],
) -> dict[LogKey, tuple[list[int], list[float]]]:
    """Log → its stored seqs, ascending, and when each became owed: its ack, else its ``ts``,
    else never (infinity)."""
    owed: dict[LogKey, tuple[list[int], list[float]]] = {}
    for key, frames in by_seq.items():
        seqs = sorted(frames)
        times: list[float] = []
        for seq in seqs:
            when = acked_at.get((key, seq))
            if when is None:
                when = as_num(frames[seq].get("ts"))
            times.append(math.inf if when is None else when)
        owed[key] = (seqs, times)
    return owed
