"""Token buckets and the per-key rate limiter, in injected time."""

from __future__ import annotations

import random

import pytest

from labkit.core.ratelimit import RateLimiter, TokenBucket


def test_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate_per_s=2.0, burst=5.0)
    assert [bucket.take(0.0) for _ in range(6)] == [True] * 5 + [False]
    assert not bucket.take(0.4)  # 0.8 token
    assert bucket.take(0.5)  # 1 token
    assert not bucket.take(0.5)
    assert bucket.tokens(100.0) == 5.0  # refills up to the burst, no further


def test_bucket_costs_and_limits() -> None:
    bucket = TokenBucket(rate_per_s=1.0, burst=3.0)
    assert bucket.take(0.0, cost=2.5)
    assert not bucket.take(0.0, cost=1.0)
    assert bucket.take(0.5, cost=1.0)
    assert not bucket.take(1000.0, cost=3.5)  # more than the bucket can ever hold
    assert bucket.take(1000.0, cost=0.0)
    with pytest.raises(ValueError):
        bucket.take(1000.0, cost=-1.0)
    for rate, burst in ((0.0, 1.0), (1.0, 0.0), (-1.0, 1.0)):
        with pytest.raises(ValueError):
            TokenBucket(rate, burst)


def test_clock_going_back_mints_no_tokens() -> None:
    bucket = TokenBucket(rate_per_s=1.0, burst=2.0)
    assert bucket.take(10.0) and bucket.take(10.0)
    assert not bucket.take(5.0)
    assert not bucket.take(10.5)  # still measured from 10.0, not from 5.0
    assert bucket.take(11.0)


@pytest.mark.parametrize("seed", range(10))
def test_long_run_rate_is_bounded(seed: int) -> None:
    rng = random.Random(seed)
    bucket = TokenBucket(rate_per_s=20.0, burst=40.0)
    t, allowed = 0.0, 0
    while t < 60.0:
        t += rng.expovariate(100.0)  # a client trying ~100/s
        allowed += bucket.take(t)
    assert allowed <= 40 + 20 * t + 1e-9, f"seed {seed}"
    assert allowed >= 20 * t * 0.95, f"seed {seed}: the limiter should not starve a busy key"


def test_limiter_defaults_and_separate_keys() -> None:
    limiter = RateLimiter()
    assert sum(limiter.allow("alice", 0.0) for _ in range(50)) == 40
    assert limiter.allow("bob", 0.0)
    assert not limiter.allow("alice", 0.0)
    assert limiter.allow("alice", 0.05)  # 20/s: one token per 50 ms


def test_limiter_prunes_idle_keys_by_itself() -> None:
    limiter = RateLimiter(rate_per_s=10.0, burst=10.0)  # refills in 1 s
    for i in range(1000):
        limiter.allow(f"user{i}", 0.0)
    assert len(limiter) == 1000
    limiter.allow("late", 5.0)
    assert len(limiter) == 1  # everyone else is full again: forgotten, nothing lost
    assert limiter.prune(5.0) == 0


@pytest.mark.parametrize("seed", range(20))
def test_pruning_never_changes_a_decision(seed: int) -> None:
    rng = random.Random(seed)
    pruned = RateLimiter(rate_per_s=5.0, burst=3.0)
    reference: dict[str, TokenBucket] = {}
    t = 0.0
    for _ in range(2000):
        t += rng.expovariate(30.0)
        key = f"k{rng.randrange(10)}"
        if rng.random() < 0.05:
            pruned.prune(t)
        want = reference.setdefault(key, TokenBucket(5.0, 3.0)).take(t)
        assert pruned.allow(key, t) == want, f"seed {seed} at {t}"
