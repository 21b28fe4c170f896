"""Rate limiting with token buckets, one per key (pure: time is passed in as ``now``).

A user who sends faster than the server allows gets an ``error`` frame with code
``rate_limited`` and the connection stays open (PROTOCOL.md, "Errors and limits"). A token
bucket is the usual shape for that: a steady rate with room for a burst, so a client that
reconnects and flushes a few queued posts is not punished, while a script posting in a loop is
held to ``rate_per_s``.
"""

from __future__ import annotations


class TokenBucket:
    """Holds up to ``burst`` tokens, refilled continuously at ``rate_per_s``; starts full.

    :meth:`take` spends ``cost`` tokens if that many are there. A ``cost`` above ``burst`` can
    never be paid and is always refused (rather than letting one huge request through).
    If ``now`` goes backwards (two clocks feeding one limiter) no tokens are added and the
    bucket keeps its later time, so a clock step cannot mint tokens.
    """

    __slots__ = ("_last", "_tokens", "burst", "rate_per_s")

    def __init__(self, rate_per_s: float, burst: float) -> None:
        if rate_per_s <= 0:
            raise ValueError(f"rate_per_s must be positive, got {rate_per_s!r}")
        if burst <= 0:
            raise ValueError(f"burst must be positive, got {burst!r}")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._tokens = burst
        self._last: float | None = None

    def _refill(self, now: float) -> None:
        if self._last is None:
            self._last = now
        elif now > self._last:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate_per_s)
            self._last = now

    def take(self, now: float, cost: float = 1.0) -> bool:
        """Spend ``cost`` tokens at ``now`` if available; True if allowed."""
        if cost < 0:
            raise ValueError(f"cost must be >= 0, got {cost!r}")
        self._refill(now)
        if cost <= self._tokens:
            self._tokens -= cost
            return True
        return False

    def tokens(self, now: float) -> float:
        """Tokens available at ``now`` (refills as a side effect; for tests and metrics)."""
        self._refill(now)
        return self._tokens

    def is_full(self, now: float) -> bool:
        """True if the bucket would be full at ``now``: then it is indistinguishable from a new
        one and can be dropped. Does not change the bucket.
        """
        if self._last is None:
            return self._tokens >= self.burst
        elapsed = max(0.0, now - self._last)
        return self._tokens + elapsed * self.rate_per_s >= self.burst


class RateLimiter:
    """A :class:`TokenBucket` per key (a user, usually), created on first use.

    Idle keys are pruned: a bucket that has refilled to ``burst`` behaves exactly like a fresh
    one, so dropping it changes no decision. :meth:`allow` prunes by itself at most once per
    ``burst / rate_per_s`` seconds (the time an empty bucket takes to refill), which keeps
    memory proportional to the keys active in that window at an amortised O(1) per call.
    """

    def __init__(self, rate_per_s: float = 20.0, burst: float = 40.0) -> None:
        TokenBucket(rate_per_s, burst)  # validate the settings once, with the same messages
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._buckets: dict[str, TokenBucket] = {}
        self._prune_every = burst / rate_per_s
        self._next_prune: float | None = None

    def allow(self, key: str, now: float, cost: float = 1.0) -> bool:
        """Spend ``cost`` from ``key``'s bucket at ``now``; True if allowed."""
        if self._next_prune is None:
            self._next_prune = now + self._prune_every
        elif now >= self._next_prune:
            self.prune(now)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate_per_s, self.burst)
        return bucket.take(now, cost)

    def prune(self, now: float) -> int:
        """Drop the buckets that are full at ``now``; return how many were dropped."""
        idle = [k for k, b in self._buckets.items() if b.is_full(now)]
        for k in idle:
            del self._buckets[k]
        self._next_prune = now + self._prune_every
        return len(idle)

    def __len__(self) -> int:
        """How many keys currently hold a bucket."""
        return len(self._buckets)
