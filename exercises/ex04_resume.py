"""Exercise 4: client-side gap detection and the ``last_seen`` resume request.

Task
----
Implement :class:`ClientState` (same interface as :mod:`labkit.core.client_state`). Per channel the
client belongs to, it keeps ``last_seen`` (the highest seq *received*) and the ``epoch`` that seq
was counted in; :meth:`hello_fields` returns both maps (as copies) for the next ``hello``.

- ``on_welcome(channels)``: ``channels`` maps each channel of the user to ``(head, epoch)``. A
  channel the client does not track yet starts at its head. A tracked channel keeps its
  ``last_seen`` *and its epoch* (the server gap-fills it, or sends ``reset``). A tracked channel
  missing from the welcome is forgotten.
- ``on_message(channel, seq)`` returns a :class:`~labkit.core.client_state.Verdict`: ``NEW`` for
  ``last_seen + 1``; ``DUPLICATE`` for any seq at or below ``last_seen`` (nothing changes);
  ``GAP`` with ``missing = (last_seen + 1, seq - 1)`` for a jump, and ``last_seen`` still moves
  to ``seq`` (the client fetches the hole with ``history``).
- ``on_reset(channel, head, epoch)``: continue from ``head`` in ``epoch``.
- ``on_joined(channel, head, epoch)``: a new channel starts at ``head``; one already tracked is
  left alone. ``on_left(channel)`` forgets it.

Why
---
The server promises that a client resuming with ``last_seen`` gets every later message. That
promise is only as good as the number the client sends: resume at the head and whatever was
posted while the phone was in a tunnel silently vanishes; send the next-expected seq instead of
the last-received one and one message per reconnect is lost; let a late duplicate move
``last_seen`` backwards and the client asks for history it already has.

Interview angle
---------------
"How does a mobile client catch up after being offline?" A per-channel high-water mark sent on
reconnect, server-side gap-fill with a cap (beyond it: reset and page history), epochs to detect
a server that lost its numbering, and client-side gap detection as a second line of defence.
Know the difference between at-least-once plus dedup (this) and exactly-once.

Grade it: ``labkit grade ex04``.
"""

from __future__ import annotations

from labkit.core.client_state import DUPLICATE, GAP, NEW, Verdict

__all__ = ["DUPLICATE", "GAP", "NEW", "ClientState", "Verdict"]


class ClientState:
    """Per-channel ``last_seen`` and ``epoch``, updated by the frames the client receives."""

    def __init__(self) -> None:
        raise NotImplementedError("ClientState.__init__")

    def hello_fields(self) -> tuple[dict[str, int], dict[str, str]]:
        """The ``last_seen`` and ``epochs`` fields for the next ``hello`` (copies)."""
        raise NotImplementedError("ClientState.hello_fields")

    def on_welcome(self, channels: dict[str, tuple[int, str]]) -> None:
        """``channels`` maps each channel the user belongs to onto ``(head, epoch)``."""
        raise NotImplementedError("ClientState.on_welcome")

    def on_message(self, channel: str, seq: int) -> Verdict:
        """Classify an incoming message as new, duplicate or gap, and record it."""
        raise NotImplementedError("ClientState.on_message")

    def on_reset(self, channel: str, head: int, epoch: str) -> None:
        """Gap-fill was impossible: continue live from ``head`` in ``epoch``."""
        raise NotImplementedError("ClientState.on_reset")

    def on_joined(self, channel: str, head: int, epoch: str) -> None:
        """Joined a channel: live from ``head`` (a channel already tracked is left alone)."""
        raise NotImplementedError("ClientState.on_joined")

    def on_left(self, channel: str) -> None:
        """Left a channel: forget it."""
        raise NotImplementedError("ClientState.on_left")
