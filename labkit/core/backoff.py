"""How long a client waits before its next reconnect attempt: exponential backoff, seeded jitter.

Theory of operation
-------------------
PROTOCOL.md lets a client reconnect after any close but 4001 (``CloseCode.UNAUTHORIZED``): after
a drain (1012, "Clients reconnect, to another gateway if one is given"), a slow-consumer close
(4008, "it reconnects and resumes through ``last_seen``") or a silent one (4002); and the close
code table of docs/protocol.md asks a client refused with 1013 to "retry later with backoff". The
contract does not fix the delays. labkit's clients, the live one
(``labkit.server.client.Client``) and the simulated one (``labkit.lab.sim.client.SimClient``),
share this formula so a simulated run reconnects exactly as a live one would:

* the envelope doubles with every failed attempt, from ``base_s`` up to ``cap_s``, so a gateway
  that is down is not hammered while one that blinked is retried at once;
* a jitter factor drawn uniformly from [0.5, 1.5) spreads the clients of a drained or crashed
  gateway over time instead of sending them all back in the same instant (a thundering herd).

The jitter comes from a ``random.Random`` the caller owns and seeds: one draw per call, so the
same seed gives the same delays, and a notebook can replay a reconnect storm exactly.
"""

from __future__ import annotations

import random

MAX_DOUBLINGS = 10
"""The exponent stops growing here: with the default 50 ms base the envelope is past any sensible
cap long before, and ``2 ** attempt`` for a client retrying all night stays a small number."""


def backoff_delay(attempt: int, rng: random.Random, base_s: float, cap_s: float) -> float:
    """Seconds to wait before reconnect attempt number ``attempt`` (1 for the first retry).

    The delay is ``min(cap_s, base_s * 2 ** min(attempt, MAX_DOUBLINGS))`` times a jitter factor
    in [0.5, 1.5) drawn with one ``rng.random()`` call; so the first retry waits about
    ``2 * base_s``, and no delay reaches ``1.5 * cap_s``. ``cap_s`` bounds the envelope, not the
    jittered delay, so clients that have all reached the cap still spread out.

    Callers count ``attempt`` from 1 after a connection is lost and reset it to 0 once a
    connection opens, so a client that was connected for a while starts again from ``base_s``.
    """
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    if base_s < 0 or cap_s < 0:
        raise ValueError(f"base_s and cap_s must be >= 0, got {base_s} and {cap_s}")
    return min(cap_s, base_s * 2.0 ** min(attempt, MAX_DOUBLINGS)) * (0.5 + rng.random())
