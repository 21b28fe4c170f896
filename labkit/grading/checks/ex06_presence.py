"""Checks for ex06_presence: heartbeats, expiry, several devices, and no flapping.

Times are exact binary fractions and ``heartbeat_s`` is 10 (so ``expiry_s`` is 30) unless a
check says otherwise. The randomized check calls ``expire(now)`` before every event, as a
gateway whose timer fires at ``next_deadline()`` would, and compares every returned transition
with a model of the rule: a user is online while some connection of theirs heartbeated within
the last ``expiry_s``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from labkit.core.presence import OFFLINE, ONLINE
from labkit.grading.framework import CheckList, Failure, expect, need, show

checks = CheckList()

Seen = tuple[str, str, float | None, float]


def _tracker(module: ModuleType, heartbeat_s: float = 10.0) -> Any:
    return need(module, "PresenceTracker")(heartbeat_s=heartbeat_s)


def _plain(transitions: Any, doing: str) -> list[Seen]:
    try:
        return [(t.user, t.status, t.last_active, t.at) for t in transitions]
    except (TypeError, AttributeError):
        raise Failure(
            f"{doing} to return a list of Transition(user, status, last_active, at)",
            f"it returned {show(transitions)}",
        ) from None


def _describe(items: Sequence[Seen]) -> str:
    if not items:
        return "nothing"
    return ", ".join(
        f"{u} {s} (last_active {la:g}, at {at:g})" if la is not None else f"{u} {s} (at {at:g})"
        for u, s, la, at in items
    )


def _step(got: Any, want: list[Seen], doing: str, why: str = "") -> None:
    plain = _plain(got, doing)
    expect(
        plain == want,
        f"{doing} to announce {_describe(want)}{f': {why}' if why else ''}",
        f"it announced {_describe(plain)}",
    )


@checks.add("a user's first connection announces them online")
def check_first_connect(module: ModuleType, rng: random.Random) -> None:
    p = _tracker(module)
    _step(
        p.connect("alice", "c1", 100.0),
        [("alice", ONLINE, 100.0, 100.0)],
        "connect('alice', 'c1', 100)",
    )


@checks.add("a second device, and heartbeats of an online user, announce nothing")
def check_second_device(module: ModuleType, rng: random.Random) -> None:
    p = _tracker(module)
    p.connect("alice", "c1", 100.0)
    _step(
        p.connect("alice", "c2", 105.0),
        [],
        "connect('alice', 'c2', 105)",
        "alice is already online; her phone joining changes nothing anyone can see",
    )
    _step(p.heartbeat("alice", "c1", 110.0), [], "heartbeat('alice', 'c1', 110)")
    _step(p.heartbeat("alice", "c2", 112.0), [], "heartbeat('alice', 'c2', 112)")


@checks.add("offline comes exactly expiry_s after the latest heartbeat, with at = that deadline")
def check_expiry_exact(module: ModuleType, rng: random.Random) -> None:
    p = _tracker(module)
    p.connect("alice", "c1", 100.0)
    p.heartbeat("alice", "c1", 110.0)
    deadline = p.next_deadline()
    expect(
        deadline == 140.0,
        "next_deadline() to be 140 (latest heartbeat 110 + expiry 30)",
        f"it is {deadline!r}",
    )
    _step(p.expire(139.5), [], "expire(139.5)", "the deadline is 140")
    got = p.status("alice", 139.5)
    expect(tuple(got) == (ONLINE, 110.0), "status('alice', 139.5) to be ('online', 110)", show(got))
    _step(p.expire(140.0), [("alice", OFFLINE, 110.0, 140.0)], "expire(140)")
    got = p.status("alice", 140.0)
    expect(tuple(got) == (OFFLINE, 110.0), "status('alice', 140) to be ('offline', 110)", show(got))
    expect(
        p.next_deadline() is None,
        "next_deadline() to be None once nobody is online",
        f"it is {p.next_deadline()!r}",
    )
    p.connect("bob", "b1", 100.0)
    _step(
        p.expire(200.0),
        [("bob", OFFLINE, 100.0, 130.0)],
        "expire(200) for bob (seen at 100)",
        "at is when presence lapsed (130), not when the timer ran",
    )


@checks.add("closing a connection announces nothing; a quick reconnect is invisible (no flapping)")
def check_no_flapping(module: ModuleType, rng: random.Random) -> None:
    p = _tracker(module)
    p.connect("alice", "c1", 100.0)
    _step(
        p.disconnect("alice", "c1", 105.0),
        [],
        "disconnect('alice', 'c1', 105)",
        "a phone changing networks closes and reopens; offline now would flap her status",
    )
    _step(p.expire(110.0), [], "expire(110)")
    _step(
        p.connect("alice", "c2", 112.0),
        [],
        "connect('alice', 'c2', 112)",
        "she never appeared offline, so nothing changed",
    )
    _step(p.expire(141.0), [], "expire(141)", "her latest heartbeat was at 112: deadline 142")
    _step(p.expire(142.0), [("alice", OFFLINE, 112.0, 142.0)], "expire(142)")


@checks.add("a user stays online while any one device heartbeats")
def check_multi_device(module: ModuleType, rng: random.Random) -> None:
    p = _tracker(module)
    p.connect("alice", "laptop", 100.0)
    p.connect("alice", "phone", 100.0)
    for now in range(110, 210, 10):
        _step(
            p.expire(float(now)),
            [],
            f"expire({now})",
            "her phone heartbeats every 10 s even though the laptop went quiet at 100",
        )
        p.heartbeat("alice", "phone", float(now))
    got = p.status("alice", 205.0)
    expect(tuple(got) == (ONLINE, 200.0), "status('alice', 205) to be ('online', 200)", show(got))
    _step(p.expire(230.0), [("alice", OFFLINE, 200.0, 230.0)], "expire(230)")


@checks.add("a user who went offline comes back online with the next heartbeat")
def check_back_online(module: ModuleType, rng: random.Random) -> None:
    p = _tracker(module)
    p.connect("alice", "c1", 100.0)
    p.expire(130.0)
    _step(
        p.heartbeat("alice", "c1", 300.0),
        [("alice", ONLINE, 300.0, 300.0)],
        "heartbeat('alice', 'c1', 300) after she expired at 130",
    )
    _step(p.connect("alice", "c9", 301.0), [], "connect('alice', 'c9', 301)")


@checks.add("status and online_users follow the same rule; a stranger is (offline, None)")
def check_queries(module: ModuleType, rng: random.Random) -> None:
    p = _tracker(module)
    got = p.status("nobody", 1.0)
    expect(tuple(got) == (OFFLINE, None), "status('nobody', 1) to be ('offline', None)", show(got))
    p.connect("alice", "a1", 100.0)
    p.connect("bob", "b1", 110.0)
    for now, want in ((120.0, {"alice", "bob"}), (130.0, {"bob"}), (140.0, set())):
        p.expire(now)
        got_set = set(p.online_users(now))
        expect(
            got_set == want, f"online_users({now:g}) to be {sorted(want)}", show(sorted(got_set))
        )


@checks.add("heartbeat_s is a setting: expiry is 3 × heartbeat_s")
def check_heartbeat_setting(module: ModuleType, rng: random.Random) -> None:
    p = _tracker(module, heartbeat_s=2.0)
    p.connect("alice", "c1", 0.0)
    _step(p.expire(5.5), [], "expire(5.5) with heartbeat_s = 2 (expiry 6)")
    _step(p.expire(6.0), [("alice", OFFLINE, 0.0, 6.0)], "expire(6) with heartbeat_s = 2")


@checks.add(
    "a random day of devices connecting, heartbeating and closing, checked against the rule",
    randomized=True,
)
def check_random(module: ModuleType, rng: random.Random) -> None:
    p = _tracker(module)
    expiry = 30.0
    users = [f"user-{i}" for i in range(1, 6)]
    devices = {u: [f"{u}/d{j}" for j in range(1, 4)] for u in users}
    open_conns: dict[str, set[str]] = {u: set() for u in users}
    last: dict[str, float] = {}
    online: set[str] = set()
    now = 1000.0
    history: list[str] = []

    def context() -> str:
        return f"at t={now:g}, after {'; '.join(history[-3:]) or 'nothing'}"

    for _ in range(800):
        now += rng.choice([0.0, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 45.0])
        due = sorted(
            ((last[u] + expiry, u) for u in online if last[u] + expiry <= now),
        )
        want = [(u, OFFLINE, last[u], at) for at, u in due]
        for _, u in due:
            online.discard(u)
        got = _plain(p.expire(now), f"expire({now:g})")
        expect(
            sorted(got, key=lambda t: (t[3], t[0])) == want,
            f"{context()}: expire({now:g}) to announce {_describe(want)}",
            f"it announced {_describe(got)}",
        )
        user = rng.choice(users)
        roll = rng.random()
        if roll < 0.25 or not open_conns[user]:
            conn = rng.choice(devices[user])
            open_conns[user].add(conn)
            doing = f"connect({user!r}, {conn!r}, {now:g})"
            got = _plain(p.connect(user, conn, now), doing)
        elif roll < 0.4:
            conn = rng.choice(sorted(open_conns[user]))
            open_conns[user].discard(conn)
            doing = f"disconnect({user!r}, {conn!r}, {now:g})"
            got = _plain(p.disconnect(user, conn, now), doing)
            history.append(doing)
            expect(
                got == [],
                f"{context()}: {doing} to announce nothing",
                f"it announced {_describe(got)}",
            )
            continue
        else:
            conn = rng.choice(sorted(open_conns[user]))
            doing = f"heartbeat({user!r}, {conn!r}, {now:g})"
            got = _plain(p.heartbeat(user, conn, now), doing)
        want = [] if user in online else [(user, ONLINE, now, now)]
        online.add(user)
        last[user] = now
        history.append(doing)
        expect(
            got == want,
            f"{context()}: {doing} to announce {_describe(want)}",
            f"it announced {_describe(got)}",
        )
        if rng.random() < 0.2:
            probe = rng.choice(users)
            status = (ONLINE if probe in online else OFFLINE, last.get(probe))
            got_status = tuple(p.status(probe, now))
            expect(
                got_status == status,
                f"{context()}: status({probe!r}, {now:g}) to be {status}",
                show(got_status),
            )
            deadline = min((last[u] + expiry for u in online), default=None)
            got_deadline = p.next_deadline()
            expect(
                got_deadline == deadline,
                f"{context()}: next_deadline() to be {deadline}",
                show(got_deadline),
            )


EXERCISE = checks.exercise(
    "ex06_presence",
    "presence tracker: heartbeats, expiry, several devices, no flapping",
)
