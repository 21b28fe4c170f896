"""Exercise 6: the presence tracker (heartbeats, expiry, several devices, no flapping).

Task
----
Implement :class:`PresenceTracker` (same interface as :mod:`labkit.core.presence`). It is pure: the
gateway passes the time in as ``now`` (seconds) and publishes the
:class:`~labkit.core.presence.Transition` objects the methods return. The rule (PROTOCOL.md,
"Heartbeats and presence"): a user is ``online`` while at least one of their connections has
heartbeated within the last ``expiry_s = 3 * heartbeat_s`` seconds.

- ``connect(user, conn_id, now)`` and ``heartbeat(user, conn_id, now)``: record a heartbeat.
  Return ``[Transition(user, "online", last_active=now, at=now)]`` when this makes the user
  online, else ``[]``: a second device, or a routine heartbeat, announces nothing.
- ``disconnect(user, conn_id, now)``: announce nothing (return ``[]``). The connection just stops
  heartbeating; the user goes offline at the deadline unless some connection heartbeats first.
- ``expire(now)``: announce offline every online user whose deadline ``last_active + expiry_s``
  is ``<= now``, as ``Transition(user, "offline", last_active, at=deadline)``, ordered by ``at``.
- ``status(user, now)`` -> ``(status, last_active)``, ``("offline", None)`` for a user never seen;
  ``online_users(now)``; ``next_deadline()``: the earliest time ``expire`` would announce
  someone, or None.

Why
---
Presence is the most-read and least-important data in a chat system: every client watches dozens
of users, and every status change is a frame to each watcher. Announcing offline when a phone
switches from Wi-Fi to 4G, then online two seconds later, doubles the traffic and makes avatars
blink for everyone (flapping). Deciding from heartbeats with a grace window, per user rather than
per connection, is what Slack and most chat systems do.

Interview angle
---------------
"Design presence for 10 million users": heartbeats versus connection events, why a grace window
(hysteresis) beats immediate offline, multi-device merging, how to expire cheaply (a heap or a
timing wheel, not a scan of every user on every tick), and why presence is decoupled from and
never delays messaging.

Grade it: ``labkit grade ex06``.
"""

from __future__ import annotations

from labkit.core.presence import OFFLINE, ONLINE, Transition

__all__ = ["OFFLINE", "ONLINE", "PresenceTracker", "Transition"]


class PresenceTracker:
    """Heartbeats per connection; a user expires ``expiry_s = 3 * heartbeat_s`` after the latest."""

    heartbeat_s: float
    expiry_s: float

    def __init__(self, heartbeat_s: float = 10.0) -> None:
        raise NotImplementedError("PresenceTracker.__init__")

    def connect(self, user: str, conn_id: str, now: float) -> list[Transition]:
        """A new connection (at its ``welcome``): its first heartbeat."""
        raise NotImplementedError("PresenceTracker.connect")

    def heartbeat(self, user: str, conn_id: str, now: float) -> list[Transition]:
        """``conn_id`` of ``user`` sent a frame at ``now``."""
        raise NotImplementedError("PresenceTracker.heartbeat")

    def disconnect(self, user: str, conn_id: str, now: float) -> list[Transition]:
        """A connection closed: announce nothing."""
        raise NotImplementedError("PresenceTracker.disconnect")

    def expire(self, now: float) -> list[Transition]:
        """Announce offline every online user whose deadline is ``<= now``."""
        raise NotImplementedError("PresenceTracker.expire")

    def status(self, user: str, now: float) -> tuple[str, float | None]:
        """``(status, last_active)`` of ``user`` at ``now``."""
        raise NotImplementedError("PresenceTracker.status")

    def online_users(self, now: float) -> set[str]:
        """Users online at ``now``."""
        raise NotImplementedError("PresenceTracker.online_users")

    def next_deadline(self) -> float | None:
        """The earliest time at which ``expire`` would announce someone; None if nobody."""
        raise NotImplementedError("PresenceTracker.next_deadline")
