"""Exercise 7: the typing throttle.

Task
----
Implement :class:`TypingThrottle` (same interface as :mod:`labkit.core.typing_throttle`):
``allow(user, channel, now)`` says whether this ``typing`` event should be relayed to the
channel's other members, and records it if so.

- The first event of a (user, channel) is relayed; after a relayed event at ``t``, events before
  ``t + interval_s`` are dropped and the first one at or after ``t + interval_s`` is relayed.
- Dropped events change nothing: a client that sends ``typing`` on every keystroke must still be
  relayed once per interval, not starved.
- Each (user, channel) is independent.
- ``prune(now)`` forgets entries that can no longer refuse anything (``now >= t + interval_s``)
  and returns how many it forgot; ``len(throttle)`` is how many are remembered.
- ``interval_s`` is a constructor argument (default 2.0); 0 relays everything.

Why
---
A client sends ``typing`` on keystrokes, several a second, and each relayed event is a frame to
every other member's connections: in a 10,000-member channel, an unthrottled typist costs more
than the messages. Clients show "alice is typing…" for a few seconds after the last event, so one
event per interval keeps the indicator alive at a small fraction of the fanout. The protocol lets
the server drop typing events silently, so a throttled event is simply not relayed.

Interview angle
---------------
Rate limiting ephemeral events: why throttle (first event per window passes) rather than
debounce (wait for quiet) for a liveness indicator; why the key is (user, channel); how memory
stays bounded (prune); and why this is fine to do per gateway rather than globally (a user's
typing in a channel mostly comes through one connection, and an occasional extra event is
harmless).

Grade it: ``labkit grade ex07``.
"""

from __future__ import annotations


class TypingThrottle:
    """Allow the first ``typing`` of a (user, channel), then at most one per ``interval_s``."""

    def __init__(self, interval_s: float = 2.0) -> None:
        raise NotImplementedError("TypingThrottle.__init__")

    def allow(self, user: str, channel: str, now: float) -> bool:
        """True if this ``typing`` should be relayed (and record it); False to drop it."""
        raise NotImplementedError("TypingThrottle.allow")

    def prune(self, now: float) -> int:
        """Forget entries that can no longer throttle anything; return how many were dropped."""
        raise NotImplementedError("TypingThrottle.prune")

    def __len__(self) -> int:
        """How many (user, channel) pairs are remembered."""
        raise NotImplementedError("TypingThrottle.__len__")
