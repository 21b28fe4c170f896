"""The typing throttle: one relayed event per (user, channel) per interval, bounded memory."""

from __future__ import annotations

import itertools
import random

import pytest

from labkit.core.typing_throttle import TypingThrottle


def test_default_is_one_event_per_two_seconds() -> None:
    throttle = TypingThrottle()
    assert throttle.allow("alice", "general", 100.0)
    assert not throttle.allow("alice", "general", 100.1)
    assert not throttle.allow("alice", "general", 101.999)
    assert throttle.allow("alice", "general", 102.0)  # exactly one interval later
    assert not throttle.allow("alice", "general", 103.0)


def test_users_and_channels_are_throttled_separately() -> None:
    throttle = TypingThrottle(interval_s=2.0)
    assert throttle.allow("alice", "general", 0.0)
    assert throttle.allow("alice", "random", 0.1)
    assert throttle.allow("bob", "general", 0.2)
    assert not throttle.allow("alice", "general", 0.3)


def test_steady_typing_is_relayed_once_per_interval() -> None:
    throttle = TypingThrottle(interval_s=2.0)
    relayed = [t / 10 for t in range(0, 600) if throttle.allow("alice", "general", t / 10)]
    assert len(relayed) == 30  # keystrokes 10 per second for 60 s
    assert all(b - a >= 2.0 for a, b in itertools.pairwise(relayed))


def test_zero_interval_throttles_nothing_and_negative_is_refused() -> None:
    throttle = TypingThrottle(interval_s=0.0)
    assert all(throttle.allow("alice", "general", 5.0) for _ in range(3))
    with pytest.raises(ValueError):
        TypingThrottle(interval_s=-1.0)


def test_prune_drops_only_entries_that_no_longer_matter() -> None:
    throttle = TypingThrottle(interval_s=2.0)
    throttle.allow("alice", "general", 0.0)
    throttle.allow("bob", "general", 1.5)
    assert len(throttle) == 2
    assert throttle.prune(2.0) == 1
    assert len(throttle) == 1
    assert not throttle.allow("bob", "general", 3.0)
    assert throttle.prune(100.0) == 1
    assert len(throttle) == 0


@pytest.mark.parametrize("seed", range(20))
def test_pruning_never_changes_a_decision(seed: int) -> None:
    rng = random.Random(seed)
    pruned, kept = TypingThrottle(1.5), TypingThrottle(1.5)
    t = 0.0
    for _ in range(500):
        t += rng.expovariate(2.0)
        user, channel = f"u{rng.randrange(5)}", f"c{rng.randrange(3)}"
        if rng.random() < 0.1:
            pruned.prune(t)
        assert pruned.allow(user, channel, t) == kept.allow(user, channel, t), f"seed {seed}"
    pruned.prune(t + 1.5)
    assert len(pruned) == 0, f"seed {seed}"
