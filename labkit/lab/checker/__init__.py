"""The invariant checker: did a run keep the protocol's guarantees? Pure, no I/O.

Theory of operation
-------------------
The checker never looks inside a client or a gateway. It reads two things after a run:

- the :class:`~labkit.core.records.Recording`: every frame each client sent (``out``) and received
  (``in``), and when each connection became usable (``open``) and ended (``close``);
- the *store*: for each channel, the ``message`` frames stored, as read back after the run,
  and, when a data loss gave a channel a new epoch, what it held under each earlier epoch.

The real clients, the simulated clients and a student's own client all write the same records,
so one checker judges them all. It replays the records in order, keeping for every *session*
(one connection of one client: ``client`` + ``session`` number) and every channel the session
tracks a *resume point*, the first seq it is owed (PROTOCOL.md, "Guarantees", 3):

=========================================  =====================================
event                                      resume point of the channel
=========================================  =====================================
``welcome``, channel in the hello's        ``last_seen + 1`` (the hello is the
``last_seen``                              client's latest one before the welcome)
``welcome``, otherwise (or the hello's      ``head + 1``
epoch differs from the welcome's)
``reset``                                  ``head + 1`` (the numbering may restart)
``joined`` (with or without ``id``)        ``head + 1``
``left``                                   tracking ends
=========================================  =====================================

Epochs
------
Seqs count within an *epoch* of a channel: a data loss (a Redis restart without persistence)
starts the channel again at seq 1 under a new epoch, and the gateways tell every member with a
``reset`` (``epoch_changed``). The checker keeps, for every session and channel, the epoch the
session was last told (``welcome``, ``joined``, ``reset``) and judges each message as a seq of
that epoch: a ``reset`` into a new epoch ends the session's stretch of the old one (nothing of
the old epoch is owed after it, nor after the moment the epoch was lost) and starts a stretch of
the new one. Receipts are compared across members per (channel, epoch, seq), and each log
(channel, epoch) of the store is checked for 1..N on its own. An ``ack`` names no epoch: it is
matched to the epoch holding its post under its seq (guarantee 4 asks that an acked post was
stored; without persistence nothing promises that it outlives a data loss).

To judge epochs apart, :func:`check` needs the current epoch of each channel (``epochs``) and
the epochs lost before (``lost``, a :class:`LostEpoch` each, which the simulator keeps). Given
the store alone, it reads one log per channel, as for a run without data loss.

 whose ``detail`` is a plain sentence
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

The phases
----------
:func:`check` is a pipeline of phases, each a function that checks one or two guarantees:

1. :func:`~labkit.lab.checker.store.check_store`: the store numbers each channel 1..N (1);
2. :func:`~labkit.lab.checker.gather.gather`: the records, sorted into one stream per session,
   the messages received, the posts sent and the acks got (no verdict);
3. :func:`~labkit.lab.checker.streams.check_streams`: each session's stream replayed with its
   resume points: ``duplicate``, ``out_of_order`` (2) and ``gap`` (3);
4. :func:`~labkit.lab.checker.delivery.check_same_order`: receipts compared across members (5);
5. :func:`~labkit.lab.checker.store.check_acked`: every acked post stored as posted (4);
6. :func:`~labkit.lab.checker.delivery.check_delivered`: every owed message delivered (3);
7. the summaries: delivery latency percentiles (nearest rank, :mod:`labkit.core.stats`), bus
   messages per acked post, and the faults the run injected, passed through.

Violations are listed store first, then those phases 3 and 4 found in the order of the records
that show them, then ``acked_missing``, then ``not_delivered``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from labkit.core.records import Recording
from labkit.core.stats import percentile
from labkit.lab.checker.delivery import check_delivered, check_same_order
from labkit.lab.checker.gather import Receipt, gather
from labkit.lab.checker.report import KINDS, MAX_SHOWN_PER_KIND, Report, Violation
from labkit.lab.checker.store import LostEpoch, check_acked, check_store
from labkit.lab.checker.streams import check_streams

__all__ = ["KINDS", "MAX_SHOWN_PER_KIND", "LostEpoch", "Report", "Violation", "check"]


def check(
    recording: Recording,
    store: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    faults: Mapping[str, int] | None = None,
    bus_messages: int | None = None,
    settle_s: float = 2.0,
    end_t: float | None = None,
    epochs: Mapping[str, str] | None = None,
    lost: Sequence[LostEpoch] = (),
) -> Report:
    """Check ``recording`` against ``store`` (channel → stored ``message`` frames).

    ``end_t`` is when the run stopped, for sessions still open at the end (default: the last
    record's time). A message is owed to a session only if it was acked (or, never acked,
    stored with ``ts``) at least ``settle_s`` before the session ended. ``epochs`` names the
    epoch of each channel's frames in ``store`` and ``lost`` lists the epochs data losses
    ended (see "Epochs" above); a lost epoch's channel must be named in ``epochs``.
    """
    stored, violations = check_store(store, epochs, lost)
    found = gather(recording)
    stop_t = end_t if end_t is not None else found.last_t
    sessions, in_streams = check_streams(list(found.streams.values()), stop_t)
    epoch_at = {i: e for sess in sessions for i, e in sess.epoch_at.items()}
    in_order = sorted(in_streams + check_same_order(found.receipts, epoch_at), key=lambda f: f[0])
    violations += [v for _, v in in_order]
    acked, ack_logs = check_acked(found.acks, found.posts, stored)
    violations += acked
    matched = [(ack, ack_logs[key]) for key, ack in found.acks.items() if key in ack_logs]
    violations += check_delivered(sessions, stored, matched, settle_s)
    posts_acked = len(found.acks)
    return Report(
        violations=violations,
        messages_checked=stored.messages,
        posts_acked=posts_acked,
        deliveries=found.deliveries,
        faults=dict(faults or {}),
        bus_messages_per_post=(
            bus_messages / posts_acked if bus_messages is not None and posts_acked else None
        ),
        latency=latency_summary(found.receipts),
    )


def latency_summary(receipts: Sequence[Receipt]) -> dict[str, float]:
    """``p50``, ``p95``, ``p99`` (nearest rank) and ``max`` seconds from a message's ``ts`` to
    its receipt, over the receipts whose message carries a ``ts``; empty when none does.

    Not a guarantee: PROTOCOL.md promises order and completeness, not speed. The figures show
    what a fault schedule cost in delay.
    """
    latencies = sorted(r.t - r.ts for r in receipts if r.ts is not None)
    if not latencies:
        return {}
    return {
        "p50": percentile(latencies, 0.50),
        "p95": percentile(latencies, 0.95),
        "p99": percentile(latencies, 0.99),
        "max": latencies[-1],
    }
