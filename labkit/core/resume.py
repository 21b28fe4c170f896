"""Where a connection resumes each channel: the gateway's side of gap-fill, with no I/O.

Theory of operation
-------------------
At ``hello`` the client says, per channel, the highest seq it has seen (``last_seen``) and the
epoch it saw it in. The gateway knows the channel's ``head`` and current ``epoch``.
:func:`plan_resume` turns those four facts into one decision (PROTOCOL.md, "Starting a
session"):

======================================  =======================================
situation                               decision
======================================  =======================================
client epoch given and different        ``reset`` (``epoch_changed``), cursor = head
no ``last_seen`` for the channel        live from head + 1, nothing to send
``last_seen`` above head                ``reset`` (``epoch_changed``): it cannot be ours
more than ``max_gap`` missed            ``reset`` (``too_far_behind``)
otherwise                               gap-fill ``last_seen + 1 .. head``, then live
======================================  =======================================

A :class:`Cursor` then follows one connection in one channel: the highest seq sent to it, and
whether it is *live* (it takes each new message straight from the feed) or *filling* (the
gateway is still paging history to it, and live messages would jump the queue). The gateway
flips a cursor to live only in the same synchronous step in which it sees that the cursor has
caught up with the feed, so a message can neither be skipped nor sent twice.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_GAP_FILL = 1000
EPOCH_CHANGED = "epoch_changed"
TOO_FAR_BEHIND = "too_far_behind"


@dataclass(frozen=True, slots=True)
class ResumePlan:
    """The decision for one channel of one connection."""

    channel: str
    cursor: int
    """The highest seq the connection is considered to have: the next one it gets is cursor + 1."""
    reset_reason: str | None = None
    """If set, send ``reset`` with this reason instead of gap-filling."""

    @property
    def needs_reset(self) -> bool:
        return self.reset_reason is not None


def plan_resume(
    channel: str,
    head: int,
    epoch: str,
    last_seen: int | None,
    client_epoch: str | None,
    max_gap: int = MAX_GAP_FILL,
) -> ResumePlan:
    """Decide how a connection resumes ``channel`` (see the table in the module docstring)."""
    if client_epoch is not None and client_epoch != epoch:
        return ResumePlan(channel, head, EPOCH_CHANGED)
    if last_seen is None:
        return ResumePlan(channel, head)
    if last_seen > head:
        return ResumePlan(channel, head, EPOCH_CHANGED)
    if head - last_seen > max_gap:
        return ResumePlan(channel, head, TOO_FAR_BEHIND)
    return ResumePlan(channel, last_seen)


class Cursor:
    """One connection's position in one channel."""

    __slots__ = ("live", "seq")

    def __init__(self, seq: int, live: bool = False) -> None:
        self.seq = seq
        self.live = live

    def offer(self, seq: int) -> bool:
        """A live message from the feed: True if it must be sent to this connection now.

        A live cursor takes exactly ``seq + 1``. Anything at or below its position was already
        sent (by gap-fill, which can run ahead of the feed). A seq further ahead would leave a
        hole, so the cursor drops back to filling and the gateway pages the hole from the store.
        """
        if not self.live or seq <= self.seq:
            return False
        if seq == self.seq + 1:
            self.seq = seq
            return True
        self.live = False
        return False

    def filled(self, seq: int) -> bool:
        """A history message sent while filling: True if it is new to the connection."""
        if seq <= self.seq:
            return False
        self.seq = seq
        return True

    def __repr__(self) -> str:
        return f"Cursor(seq={self.seq}, live={self.live})"
