"""Checks for ex07_typing: at most one relayed ``typing`` per user and channel per interval."""

from __future__ import annotations

import random
from types import ModuleType
from typing import Any

from labkit.grading.framework import CheckList, expect, need

checks = CheckList()


def _throttle(module: ModuleType, interval_s: float | None = None) -> Any:
    cls = need(module, "TypingThrottle")
    return cls() if interval_s is None else cls(interval_s)


def _allow(t: Any, user: str, channel: str, now: float, want: bool, why: str) -> None:
    got = t.allow(user, channel, now)
    expect(
        bool(got) == want,
        f"allow({user!r}, {channel!r}, now={now:g}) to be {want}: {why}",
        f"it was {got!r}",
    )


@checks.add("the first typing event is relayed, the next ones within 2 s are dropped")
def check_first_then_drop(module: ModuleType, rng: random.Random) -> None:
    t = _throttle(module)
    _allow(t, "alice", "general", 100.0, True, "the first event")
    _allow(t, "alice", "general", 100.5, False, "0.5 s after a relayed one")
    _allow(t, "alice", "general", 101.999, False, "1.999 s after a relayed one")


@checks.add("an event exactly one interval after the last relayed one is relayed")
def check_exact_interval(module: ModuleType, rng: random.Random) -> None:
    t = _throttle(module)
    _allow(t, "alice", "general", 100.0, True, "the first event")
    _allow(t, "alice", "general", 102.0, True, "exactly 2 s later (the default interval)")
    _allow(t, "alice", "general", 103.0, False, "1 s after the one at 102")


@checks.add("users and channels are throttled independently")
def check_independent(module: ModuleType, rng: random.Random) -> None:
    t = _throttle(module)
    _allow(t, "alice", "general", 100.0, True, "alice's first in #general")
    _allow(t, "bob", "general", 100.1, True, "bob's first in #general: alice's does not count")
    _allow(t, "alice", "random", 100.2, True, "alice's first in #random: #general does not count")
    _allow(t, "alice", "general", 100.3, False, "alice in #general 0.3 s after her first")


@checks.add("a steady typist is relayed once per interval (dropped events do not restart it)")
def check_steady_typist(module: ModuleType, rng: random.Random) -> None:
    t = _throttle(module)
    times = [100.0 + 0.5 * i for i in range(21)]  # a keystroke every 0.5 s for 10 s
    relayed = [now for now in times if t.allow("alice", "general", now)]
    wanted = [100.0, 102.0, 104.0, 106.0, 108.0, 110.0]
    expect(
        relayed == wanted,
        f"a keystroke every 0.5 s for 10 s to be relayed at {wanted}",
        f"relayed at {relayed}"
        + (" (does a dropped event restart the interval?)" if len(relayed) < len(wanted) else ""),
    )


@checks.add("the interval is a setting: TypingThrottle(5.0) and TypingThrottle(0)")
def check_interval_setting(module: ModuleType, rng: random.Random) -> None:
    t = _throttle(module, 5.0)
    _allow(t, "alice", "general", 10.0, True, "the first event")
    _allow(t, "alice", "general", 14.9, False, "4.9 s later, with a 5 s interval")
    _allow(t, "alice", "general", 15.0, True, "5 s later, with a 5 s interval")
    t = _throttle(module, 0.0)
    for now in (1.0, 1.0, 1.0001):
        _allow(t, "alice", "general", now, True, "an interval of 0 throttles nothing")


@checks.add("prune forgets only entries that can no longer throttle, and says how many")
def check_prune(module: ModuleType, rng: random.Random) -> None:
    t = _throttle(module)
    t.allow("alice", "general", 100.0)
    t.allow("bob", "general", 101.5)
    dropped = t.prune(102.0)
    expect(
        dropped == 1,
        "prune(102.0) to forget alice's entry (2 s old) and keep bob's: 1",
        f"it returned {dropped!r}",
    )
    expect(len(t) == 1, "len(throttle) to be 1 after the prune", f"it is {len(t)}")
    _allow(
        t,
        "bob",
        "general",
        103.0,
        False,
        "bob was relayed at 101.5; prune must not forget an entry that still throttles",
    )
    _allow(t, "alice", "general", 102.0, True, "alice's last relayed event is 2 s old")


@checks.add("memory stays bounded: prune forgets every idle pair (budget)")
def check_memory(module: ModuleType, rng: random.Random) -> None:
    t = _throttle(module)
    for i in range(5000):
        t.allow(f"user-{i % 500}", f"ch-{i // 500}", 1000.0 + i * 0.0001)
    expect(
        len(t) == 5000,
        "5000 distinct (user, channel) pairs to be remembered",
        f"len(throttle) is {len(t)}",
    )
    dropped = t.prune(1010.0)
    expect(
        dropped == 5000 and len(t) == 0,
        "prune(1010.0), 9 s after the last event, to forget all 5000 pairs",
        f"it returned {dropped!r} and len(throttle) is {len(t)}",
    )


@checks.add("random typing from many users matches the rule, event by event", randomized=True)
def check_random(module: ModuleType, rng: random.Random) -> None:
    interval = rng.choice([1.0, 2.0, 3.0])
    t = _throttle(module, interval)
    last: dict[tuple[str, str], float] = {}
    now = 1000.0
    for i in range(3000):
        # Steps are exact binary fractions, so `now - last >= interval` and
        # `now >= last + interval` agree: no check should hinge on float rounding.
        now += rng.choice([0.0, 0.125, 0.25, 0.375, 0.5, 1.0, interval, 2.5])
        user, channel = f"user-{rng.randint(1, 5)}", f"ch-{rng.randint(1, 4)}"
        prev = last.get((user, channel))
        want = prev is None or now >= prev + interval
        if want:
            last[(user, channel)] = now
        got = t.allow(user, channel, now)
        expect(
            bool(got) == want,
            f"event #{i + 1}, allow({user!r}, {channel!r}, now={now:.2f}) with interval"
            f" {interval:g} to be {want} (last relayed:"
            f" {'never' if prev is None else f'{prev:.2f}'})",
            f"it was {got!r}",
        )
        if rng.random() < 0.02:
            t.prune(now)


EXERCISE = checks.exercise(
    "ex07_typing",
    "typing throttle: at most one relayed typing event per user, channel and interval",
)
