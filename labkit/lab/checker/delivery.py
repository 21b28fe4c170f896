"""The phases that compare what the members received with each other and with the store."""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping

from labkit.lab.checker.gather import Ack, Receipt, as_num
from labkit.lab.checker.report import Violation
from labkit.lab.checker.store import Stored
from labkit.lab.checker.streams import Found, Session


def check_same_order(receipts: Iterable[Receipt]) -> Found:
    """Guarantee 5 (PROTOCOL.md, "Guarantees"): every member sees a channel in one order.

    The first receipt of a (channel, seq) fixes its (user, text); any client that later receives
    that seq as something else is an ``order_mismatch``, reported once per (channel, seq).
    ``receipts`` must come in recording order, so "first" means first in time.
    """
    first: dict[tuple[str, int], Receipt] = {}
    mismatched: set[tuple[str, int]] = set()
    found: Found = []
    for r in receipts:
        key = (r.channel, r.seq)
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
    acks: Iterable[Ack],
    settle_s: float,
) -> list[Violation]:
    """Guarantee 3, the "lost tail" clause: a stored seq at or after a session's resume point,
    acked (or, never acked, stored by its ``ts``) at least ``settle_s`` before the session
    stopped tracking the channel, reached it.

    A stretch tracked for less than ``settle_s`` is owed nothing: a session cut a moment after
    its welcome cannot have been gap-filled yet.
    """
    owed = _owed_at(stored.by_seq, _acked_at(acks))
    violations: list[Violation] = []
    for sess in sessions:
        for seg in sess.segments:
            if seg.channel not in owed or seg.end_t is None:
                continue
            seqs, times = owed[seg.channel]
            got = sess.received.get(seg.channel, {})
            cutoff = seg.end_t - settle_s
            if seg.start_t > cutoff:
                continue
            for i in range(bisect.bisect_left(seqs, seg.start_seq), len(seqs)):
                seq = seqs[i]
                if times[i] > cutoff or seq in got:
                    continue
                detail = (
                    f"{sess.name} never received {seg.channel} seq {seq} (acked at "
                    f"{times[i]:.2f} s) although it stayed {seg.how} from {seg.start_t:.2f} s "
                    f"to {seg.end_t:.2f} s"
                )
                violations.append(
                    Violation("not_delivered", sess.client, sess.user, seg.channel, seq, detail)
                )
    return violations


def _acked_at(acks: Iterable[Ack]) -> dict[tuple[str, int], float]:
    """(channel, seq) → when its first ``ack`` arrived."""
    acked_at: dict[tuple[str, int], float] = {}
    for ack in acks:
        acked_at.setdefault((ack.channel, ack.seq), ack.t)
    return acked_at


def _owed_at(
    by_seq: Mapping[str, Mapping[int, Mapping[str, object]]],
    acked_at: Mapping[tuple[str, int], float],
) -> dict[str, tuple[list[int], list[float]]]:
    """Channel → its stored seqs, ascending, and when each became owed: its ack, else its
    ``ts``, else never (infinity)."""
    owed: dict[str, tuple[list[int], list[float]]] = {}
    for channel, frames in by_seq.items():
        seqs = sorted(frames)
        times: list[float] = []
        for seq in seqs:
            when = acked_at.get((channel, seq))
            if when is None:
                when = as_num(frames[seq].get("ts"))
            times.append(math.inf if when is None else when)
        owed[channel] = (seqs, times)
    return owed
