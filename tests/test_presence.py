"""The presence core: expiry, multi-device, no flapping, crashed gateways, digests.

Time is always passed in; randomized tests are seeded and name their seed when they fail.
The reference model for the randomized tests is the protocol's sentence itself: a user is
online at ``t`` iff some heartbeat ``h`` of theirs has ``h <= t < h + 3 * heartbeat_s``.
"""

from __future__ import annotations

import random

import pytest

from labkit.core.presence import OFFLINE, ONLINE, DigestBuffer, PresenceTracker, Transition


def drive_to(tracker: PresenceTracker, now: float) -> list[Transition]:
    """Run expire() at every deadline up to ``now``, as the adapter's timer would."""
    out: list[Transition] = []
    deadline = tracker.next_deadline()
    while deadline is not None and deadline <= now:
        out += tracker.expire(deadline)
        deadline = tracker.next_deadline()
    return out


# -- expiry ----------------------------------------------------------------------------------


def test_first_connection_announces_online() -> None:
    tracker = PresenceTracker(heartbeat_s=10)
    assert tracker.expiry_s == 30
    assert tracker.status("alice", 99.0) == (OFFLINE, None)
    assert tracker.connect("alice", "c1", 100.0) == [Transition("alice", ONLINE, 100.0, 100.0)]
    assert tracker.status("alice", 100.0) == (ONLINE, 100.0)
    assert tracker.online_users(100.0) == {"alice"}


def test_expiry_at_exactly_three_heartbeats() -> None:
    tracker = PresenceTracker(heartbeat_s=10)
    tracker.connect("alice", "c1", 100.0)
    assert tracker.next_deadline() == 130.0
    assert tracker.expire(129.999) == []
    assert tracker.status("alice", 129.999) == (ONLINE, 100.0)
    # At exactly last_active + 3 * heartbeat_s the user is offline, and `at` is that instant.
    assert tracker.status("alice", 130.0) == (OFFLINE, 100.0)
    assert tracker.expire(130.0) == [Transition("alice", OFFLINE, 100.0, 130.0)]
    assert tracker.expire(1000.0) == []
    assert tracker.next_deadline() is None
    assert tracker.status("alice", 500.0) == (OFFLINE, 100.0)
    assert tracker.online_users(130.0) == set()


def test_a_late_timer_still_stamps_offline_at_the_deadline() -> None:
    tracker = PresenceTracker(heartbeat_s=10)
    tracker.connect("alice", "c1", 100.0)
    tracker.connect("bob", "c2", 105.0)
    assert tracker.expire(200.0) == [
        Transition("alice", OFFLINE, 100.0, 130.0),
        Transition("bob", OFFLINE, 105.0, 135.0),
    ]


def test_heartbeats_move_the_deadline() -> None:
    tracker = PresenceTracker(heartbeat_s=10)
    tracker.connect("alice", "c1", 0.0)
    for t in range(10, 300, 10):
        assert tracker.heartbeat("alice", "c1", float(t)) == []
        assert drive_to(tracker, float(t)) == []
    assert tracker.next_deadline() == 320.0
    assert drive_to(tracker, 320.0) == [Transition("alice", OFFLINE, 290.0, 320.0)]


def test_heartbeat_from_the_past_does_not_move_last_active_back() -> None:
    tracker = PresenceTracker(heartbeat_s=10)
    tracker.connect("alice", "c1", 100.0)
    tracker.heartbeat("alice", "c2", 90.0)  # a frame stamped by a slower clock
    assert tracker.status("alice", 100.0) == (ONLINE, 100.0)
    assert tracker.next_deadline() == 130.0


def test_heartbeat_interval_must_be_positive() -> None:
    with pytest.raises(ValueError):
        PresenceTracker(heartbeat_s=0)


# -- multi-device, reconnects, crashes -------------------------------------------------------


def test_two_devices_are_one_presence_and_one_closing_keeps_it_online() -> None:
    tracker = PresenceTracker(heartbeat_s=10)
    assert tracker.connect("alice", "laptop@gw1", 0.0) == [Transition("alice", ONLINE, 0.0, 0.0)]
    assert tracker.connect("alice", "phone@gw2", 2.0) == []  # one presence, announced once
    assert tracker.disconnect("alice", "laptop@gw1", 5.0) == []
    for t in (12.0, 22.0, 32.0, 42.0, 52.0):
        assert tracker.heartbeat("alice", "phone@gw2", t) == []
        assert drive_to(tracker, t) == []
        assert tracker.status("alice", t) == (ONLINE, t)
    assert drive_to(tracker, 200.0) == [Transition("alice", OFFLINE, 52.0, 82.0)]


def test_close_is_not_offline_and_reconnect_inside_the_window_never_flaps() -> None:
    tracker = PresenceTracker(heartbeat_s=10)
    events = tracker.connect("alice", "c1", 0.0)
    events += tracker.heartbeat("alice", "c1", 10.0)
    events += tracker.disconnect("alice", "c1", 12.0)
    events += drive_to(tracker, 12.0)
    assert tracker.status("alice", 12.0) == (ONLINE, 10.0)  # closing announces nothing
    events += drive_to(tracker, 39.0)
    events += tracker.connect("alice", "c2", 39.0)  # 29 s after the last heartbeat
    for t in range(49, 200, 10):
        events += drive_to(tracker, float(t))
        events += tracker.heartbeat("alice", "c2", float(t))
    assert events == [Transition("alice", ONLINE, 0.0, 0.0)]


def test_reconnect_after_the_window_is_offline_then_online() -> None:
    tracker = PresenceTracker(heartbeat_s=10)
    tracker.connect("alice", "c1", 10.0)
    tracker.disconnect("alice", "c1", 12.0)
    assert drive_to(tracker, 41.0) == [Transition("alice", OFFLINE, 10.0, 40.0)]
    assert tracker.connect("alice", "c2", 41.0) == [Transition("alice", ONLINE, 41.0, 41.0)]


def test_crashed_gateway_users_go_offline_at_their_deadlines() -> None:
    tracker = PresenceTracker(heartbeat_s=10)
    tracker.connect("alice", "a@gw1", 0.0)
    tracker.connect("bob", "b@gw1", 3.0)
    tracker.connect("carol", "c@gw1", 5.0)
    tracker.connect("carol", "c@gw2", 6.0)  # carol also has a phone on a healthy gateway
    # gw1 dies at t=8 without a word: its connections just stop heartbeating.
    transitions: list[Transition] = []
    for t in range(16, 120, 10):
        transitions += drive_to(tracker, float(t))
        tracker.heartbeat("carol", "c@gw2", float(t))
    assert transitions == [
        Transition("alice", OFFLINE, 0.0, 30.0),
        Transition("bob", OFFLINE, 3.0, 33.0),
    ]
    assert tracker.online_users(120.0) == {"carol"}


def test_heartbeat_after_the_deadline_before_expire_repeats_online() -> None:
    # Rule 4: nobody was told "offline", so no offline/online pair; a repeated "online"
    # corrects anyone who asked status() inside the window.
    tracker = PresenceTracker(heartbeat_s=10)
    tracker.connect("alice", "c1", 0.0)
    assert tracker.status("alice", 35.0) == (OFFLINE, 0.0)
    assert tracker.heartbeat("alice", "c1", 35.0) == [Transition("alice", ONLINE, 35.0, 35.0)]
    assert tracker.expire(40.0) == []
    assert tracker.next_deadline() == 65.0


def test_stale_connections_are_forgotten_when_a_new_one_arrives() -> None:
    tracker = PresenceTracker(heartbeat_s=10)
    for i in range(100):  # a flaky phone: a new connection every 5 s, each closed at once
        tracker.heartbeat("alice", f"c{i}", 5.0 * i)
        assert drive_to(tracker, 5.0 * i) == []
    assert len(tracker._conns["alice"]) <= 7  # only those within the last 30 s


# -- randomized: against the protocol's definition -------------------------------------------


def reference_transitions(beats: dict[str, list[float]], expiry: float) -> list[Transition]:
    """Transitions of "online iff some heartbeat h has h <= t < h + expiry"."""
    out: list[Transition] = []
    for user, times in beats.items():
        times = sorted(times)
        start = end = times[0]
        last = times[0]
        out.append(Transition(user, ONLINE, start, start))
        end = start + expiry
        for h in times[1:]:
            if h >= end:
                out.append(Transition(user, OFFLINE, last, end))
                out.append(Transition(user, ONLINE, h, h))
            last = h
            end = h + expiry
        out.append(Transition(user, OFFLINE, last, end))
    return out


@pytest.mark.parametrize("seed", range(40))
def test_transitions_match_the_definition(seed: int) -> None:
    rng = random.Random(seed)
    heartbeat_s = rng.choice([1.0, 5.0, 10.0])
    tracker = PresenceTracker(heartbeat_s)
    users = [f"u{i}" for i in range(rng.randint(1, 6))]
    beats: dict[str, list[float]] = {}
    got: list[Transition] = []
    t = 0.0
    for _ in range(rng.randint(1, 300)):
        # Gaps around the expiry, so both "just made it" and "just missed it" happen.
        t += rng.expovariate(1 / (heartbeat_s * rng.choice([0.2, 1.0, 3.0])))
        got += drive_to(tracker, t)
        user = rng.choice(users)
        conn = f"{user}/{rng.randrange(3)}"
        action = rng.random()
        if action < 0.1:
            got += tracker.disconnect(user, conn, t)
            continue
        beats.setdefault(user, []).append(t)
        got += tracker.heartbeat(user, conn, t)
        probe = rng.choice(users)
        expected = (
            ONLINE if any(h <= t < h + tracker.expiry_s for h in beats.get(probe, [])) else OFFLINE
        )
        assert tracker.status(probe, t)[0] == expected, f"seed {seed}: status({probe}, {t})"
    got += drive_to(tracker, float("inf"))
    want = reference_transitions(beats, tracker.expiry_s)

    def key(tr: Transition) -> tuple[str, float, bool]:
        return tr.user, tr.at, tr.status == ONLINE

    assert sorted(got, key=key) == sorted(want, key=key), f"seed {seed}"
    # Each user's transitions alternate, starting with online: there is no flapping to hide.
    for user in users:
        statuses = [tr.status for tr in got if tr.user == user]
        assert statuses == [ONLINE, OFFLINE] * (len(statuses) // 2), f"seed {seed}: {user}"


@pytest.mark.parametrize("seed", range(20))
def test_next_deadline_is_exact(seed: int) -> None:
    rng = random.Random(1000 + seed)
    tracker = PresenceTracker(heartbeat_s=10)
    t = 0.0
    for _ in range(200):
        t += rng.uniform(0, 15)
        drive_to(tracker, t)
        tracker.heartbeat(f"u{rng.randrange(8)}", "c", t)
        deadline = tracker.next_deadline()
        assert deadline is not None, f"seed {seed}"
        assert tracker.expire(deadline - 1e-9) == [], f"seed {seed}"
        assert tracker.next_deadline() == deadline, f"seed {seed}"
        online = tracker.online_users(deadline - 1e-9)
        assert len(online - tracker.online_users(deadline)) >= 1, f"seed {seed}"


# -- digests ---------------------------------------------------------------------------------


def on(user: str, at: float) -> Transition:
    return Transition(user, ONLINE, at, at)


def off(user: str, last: float) -> Transition:
    return Transition(user, OFFLINE, last, last + 30.0)


def test_digest_is_due_every_period_and_lists_changes_in_time_order() -> None:
    buf = DigestBuffer(60.0, now=1000.0)
    assert not buf.due(1059.9)
    assert buf.due(1060.0)
    buf.add(on("carol", 1010.0))
    buf.add(off("bob", 990.0))  # at 1020
    buf.add(on("alice", 1010.0))
    changes, since, until = buf.flush(1060.0)
    assert (since, until) == (1000.0, 1060.0)
    assert changes == [on("alice", 1010.0), on("carol", 1010.0), off("bob", 990.0)]
    assert not buf.due(1061.0)
    assert buf.due(1120.0)


def test_digest_nets_out_a_round_trip_within_one_period() -> None:
    buf = DigestBuffer(60.0, now=0.0)
    buf.add(off("bob", 1.0))
    buf.add(on("bob", 40.0))  # away and back inside one period: the picture did not change
    buf.add(on("carol", 2.0))
    buf.add(off("carol", 3.0))  # at 33
    buf.add(on("carol", 45.0))  # carol: offline -> online overall: once, the latest
    buf.add(off("dave", 0.0))  # at 30
    buf.add(on("dave", 31.0))
    buf.add(off("dave", 5.0))  # at 35; dave: online -> offline overall
    changes, _, _ = buf.flush(60.0)
    assert changes == [off("dave", 5.0), on("carol", 45.0)]


def test_digest_keeps_a_change_that_spans_periods() -> None:
    buf = DigestBuffer(60.0, now=0.0)
    buf.add(off("bob", 1.0))
    assert buf.flush(60.0)[0] == [off("bob", 1.0)]
    buf.add(on("bob", 70.0))
    assert buf.flush(120.0)[0] == [on("bob", 70.0)]


def test_empty_digest_leaves_since_so_digests_cover_time_without_gaps() -> None:
    buf = DigestBuffer(60.0, now=0.0)
    assert buf.flush(60.0) == ([], 0.0, 60.0)
    assert buf.flush(120.0) == ([], 0.0, 120.0)
    buf.add(on("bob", 130.0))
    assert buf.flush(180.0) == ([on("bob", 130.0)], 0.0, 180.0)
    buf.add(off("bob", 130.0))
    assert buf.flush(240.0) == ([off("bob", 130.0)], 180.0, 240.0)


def test_digest_uses_the_snapshot_it_is_given() -> None:
    # A repeated "online" (rule 4) for a user the subscriber already sees online is not news.
    buf = DigestBuffer(60.0, now=0.0, told={"bob": ONLINE, "carol": OFFLINE})
    buf.add(on("bob", 35.0))
    buf.add(on("carol", 36.0))
    assert buf.flush(60.0)[0] == [on("carol", 36.0)]


def test_digest_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        DigestBuffer(0.0, now=0.0)
    with pytest.raises(ValueError):
        DigestBuffer(60.0, now=0.0, told={"bob": "away"})
    with pytest.raises(ValueError):
        DigestBuffer(60.0, now=0.0).add(Transition("bob", "away", 1.0, 1.0))


@pytest.mark.parametrize("seed", range(30))
def test_snapshot_plus_digests_equals_the_truth_at_every_flush(seed: int) -> None:
    rng = random.Random(5000 + seed)
    tracker = PresenceTracker(heartbeat_s=10)
    users = [f"u{i}" for i in range(6)]
    t = 0.0
    for _ in range(20):  # some history before the subscription
        t += rng.uniform(0, 20)
        tracker.heartbeat(rng.choice(users), "c", t)
    drive_to(tracker, t)
    view = {u: tracker.status(u, t)[0] for u in users}
    buf = DigestBuffer(60.0, t, told=view if seed % 2 else None)
    next_flush = t + 60.0
    for _ in range(400):
        t += rng.expovariate(1 / 8.0)
        while next_flush <= t:
            buf.add_all(drive_to(tracker, next_flush))
            assert buf.due(next_flush)
            changes, _, _ = buf.flush(next_flush)
            assert len({c.user for c in changes}) == len(changes), f"seed {seed}"
            for c in changes:
                assert view[c.user] != c.status, f"seed {seed}: {c} is not a change"
                view[c.user] = c.status
            truth = {u: tracker.status(u, next_flush)[0] for u in users}
            assert view == truth, f"seed {seed} at {next_flush}"
            next_flush += 60.0
        buf.add_all(drive_to(tracker, t))
        if rng.random() < 0.7:
            buf.add_all(tracker.heartbeat(rng.choice(users), f"c{rng.randrange(2)}", t))
