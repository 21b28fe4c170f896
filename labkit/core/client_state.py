"""The client's half of gap-fill: what it has seen, per channel, and what it asks for on resume.

Theory of operation
-------------------
A client keeps, per channel it belongs to, ``last_seen`` (the highest seq it has received) and
the ``epoch`` that seq belongs to. Those two maps are exactly what the next ``hello`` carries,
so a reconnect resumes where the client left off rather than at the head (resuming at the head
is the classic bug: whatever was posted while the client was away silently vanishes).

:meth:`ClientState.on_message` classifies every incoming seq. The server guarantees gap-free,
duplicate-free delivery per connection, so anything but ``"new"`` means a guarantee was broken;
the client still protects its user (drops duplicates, reports the hole so it can be fetched
with ``history``), and the verdict goes into the client's records for the checker to see.
"""

from __future__ import annotations

from dataclasses import dataclass

NEW = "new"
DUPLICATE = "duplicate"
GAP = "gap"


@dataclass(frozen=True, slots=True)
class Verdict:
    """How one incoming message relates to what the client has already seen."""

    kind: str
    """``new``, ``duplicate`` (seq at or below ``last_seen``) or ``gap`` (seqs were skipped)."""
    missing: tuple[int, int] | None = None
    """For a gap: the inclusive range of seqs that never arrived."""


_NEW = Verdict(NEW)
_DUPLICATE = Verdict(DUPLICATE)
"""The two verdicts that carry no range, made once: one per message adds up in a fanout."""


class ClientState:
    """Per-channel ``last_seen`` and ``epoch``, updated by the frames the client receives."""

    def __init__(self) -> None:
        self.last_seen: dict[str, int] = {}
        self.epochs: dict[str, str] = {}

    def hello_fields(self) -> tuple[dict[str, int], dict[str, str]]:
        """The ``last_seen`` and ``epochs`` fields for the next ``hello``."""
        return dict(self.last_seen), dict(self.epochs)

    def on_welcome(self, channels: dict[str, tuple[int, str]]) -> None:
        """``channels`` maps each channel the user belongs to onto ``(head, epoch)``.

        Channels the client already tracks keep their ``last_seen``: the server gap-fills them
        (or sends ``reset``). New channels start at the head. Channels the user no longer
        belongs to are forgotten.
        """
        for channel in list(self.last_seen):
            if channel not in channels:
                self.on_left(channel)
        for channel, (head, epoch) in channels.items():
            if channel not in self.last_seen:
                self.last_seen[channel] = head
                self.epochs[channel] = epoch
            elif self.epochs.get(channel) is None:
                self.epochs[channel] = epoch

    def on_message(self, channel: str, seq: int) -> Verdict:
        """Record an incoming message; a gap still advances ``last_seen`` (fetch the hole)."""
        last = self.last_seen.get(channel, 0)
        if seq <= last:
            return _DUPLICATE
        self.last_seen[channel] = seq
        if seq == last + 1:
            return _NEW
        return Verdict(GAP, (last + 1, seq - 1))

    def on_reset(self, channel: str, head: int, epoch: str) -> None:
        """Gap-fill was impossible: continue live from ``head`` in ``epoch``."""
        self.last_seen[channel] = head
        self.epochs[channel] = epoch

    def on_joined(self, channel: str, head: int, epoch: str) -> None:
        """Joined a channel: live from ``head``. Re-joining one already tracked changes nothing."""
        if channel not in self.last_seen:
            self.on_reset(channel, head, epoch)

    def on_left(self, channel: str) -> None:
        self.last_seen.pop(channel, None)
        self.epochs.pop(channel, None)
