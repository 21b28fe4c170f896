"""The weaker designs: each is off unless named, and each fails the way the design warns.

Every scenario test runs one seeded schedule twice, with the real design and with the variant,
and asserts that the checker passes the first and reports the variant's violation kind (with
the exact user, channel and seq filled in) for the second. That is also the proof that the
checker can fail.
"""

from __future__ import annotations

from collections import Counter

import pytest

from labkit.core.feed import ChannelFeed
from labkit.core.presence import OFFLINE, ONLINE, PresenceTracker
from labkit.core.resume import plan_resume
from labkit.lab.checker import Violation
from labkit.lab.sim import SimConfig, SimResult, run
from labkit.lab.variants import (
    REAL,
    VARIANTS,
    FlappingPresenceTracker,
    HistoryBeforeSubscribeCore,
    NoRepairCore,
    NoRepairFeed,
    ReadThenWriteSequencer,
    check_variant,
    design,
    plan_resume_from_head,
)

# -- the registry ----------------------------------------------------------------------------


def test_registry_describes_every_variant_in_one_sentence() -> None:
    assert set(VARIANTS) == {
        "read_then_write_sequencer",
        "resume_from_head",
        "no_bus_repair",
        "history_before_subscribe",
        "flapping_presence",
    }
    for text in VARIANTS.values():
        assert text.endswith(".") and text.count(". ") == 0


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError) as info:
        design("eventual_consistency")
    for name in VARIANTS:
        assert name in str(info.value)
    with pytest.raises(ValueError):
        check_variant("")


def test_the_real_design_is_the_default() -> None:
    assert design(None) is REAL
    assert SimConfig().variant is None
    assert REAL.plan is plan_resume and not REAL.read_then_write and not REAL.history_first
    for name in VARIANTS:
        assert design(name).name == name and design(name) != REAL


# -- the pure classes ------------------------------------------------------------------------


def test_read_then_write_hands_out_the_same_seq_twice() -> None:
    seqr = ReadThenWriteSequencer()
    a, b = seqr.read("general"), seqr.read("general")  # two message servers, same moment
    seqr.write("general", a + 1)
    seqr.write("general", b + 1)
    assert (a + 1, b + 1, seqr.head("general")) == (1, 1, 1)


def test_resume_from_head_ignores_last_seen() -> None:
    assert plan_resume("general", 45, "e", 41, "e").cursor == 41
    plan = plan_resume_from_head("general", 45, "e", 41, "e")
    assert plan.cursor == 45 and not plan.needs_reset
    assert plan_resume_from_head("general", 45, "e", 41, "other").needs_reset


def test_no_repair_feed_skips_holes_and_never_fetches() -> None:
    real: ChannelFeed[str] = ChannelFeed("general")
    weak: NoRepairFeed[str] = NoRepairFeed("general")
    for feed in (real, weak):
        feed.start(0)
        feed.on_bus(1, "m1")
    assert real.on_bus(3, "m3").fetch == (2, 2)
    step = weak.on_bus(3, "m3")
    assert step.deliver == [(3, "m3")] and step.fetch is None
    assert weak.on_bus(2, "m2").deliver == []  # late: dropped, lost for good
    assert weak.on_store_head(10).fetch is None  # a lost tail is never noticed
    tail: ChannelFeed[str] = ChannelFeed("general")
    tail.start(3)
    assert tail.on_store_head(10).fetch == (4, 10)

    core: NoRepairCore[str, str] = NoRepairCore()
    core.attach("c1", "general", 0)
    assert isinstance(core.feeds["general"], NoRepairFeed)


def test_history_before_subscribe_joins_the_live_stream_where_it_is() -> None:
    core: HistoryBeforeSubscribeCore[str, str] = HistoryBeforeSubscribeCore()
    core.attach("old", "general", 10)
    core.start_feed("general", 10)
    assert core.try_go_live("old", "general")
    core.on_bus("general", 11, "m11")
    core.on_bus("general", 12, "m12")
    # "new" read history up to 10; by the time it attaches the feed is at 12
    core.attach("new", "general", 10)
    cursor = core.cursor("new", "general")
    assert cursor is not None and cursor.live and cursor.seq == 12
    outcome = core.on_bus("general", 13, "m13")
    assert outcome.sends == [(13, "m13", ["old", "new"])] and outcome.fill == []


def test_flapping_presence_goes_offline_at_every_disconnect() -> None:
    real = PresenceTracker(heartbeat_s=10)
    weak = FlappingPresenceTracker(heartbeat_s=10)
    for tracker in (real, weak):
        assert [t.status for t in tracker.connect("bob", "c1", 0.0)] == [ONLINE]
    assert real.disconnect("bob", "c1", 1.0) == []
    assert [t.status for t in weak.disconnect("bob", "c1", 1.0)] == [OFFLINE]
    assert weak.status("bob", 1.5)[0] == OFFLINE and real.status("bob", 1.5)[0] == ONLINE
    assert real.connect("bob", "c2", 2.0) == []
    assert [t.status for t in weak.connect("bob", "c2", 2.0)] == [ONLINE]
    # gone again: offline at once, and the deadline passing later announces nothing twice
    assert [t.status for t in weak.disconnect("bob", "c2", 3.0)] == [OFFLINE]
    assert weak.expire(100.0) == []
    assert [t.status for t in real.expire(100.0)] == [OFFLINE]


# -- seeded scenarios: the checker catches each one -----------------------------------------


def kinds(result: SimResult) -> Counter[str]:
    return Counter(v.kind for v in result.report.violations)


def first(result: SimResult, kind: str) -> Violation:
    v = next(v for v in result.report.violations if v.kind == kind)
    assert v.channel in result.config.channels
    assert v.seq is not None and str(v.seq) in v.detail
    return v


def both(seed: int, variant: str, **overrides: object) -> tuple[SimResult, SimResult]:
    real = run(seed, SimConfig(log=False, **overrides))  # type: ignore[arg-type]
    weak = run(seed, SimConfig(variant=variant, log=False, **overrides))  # type: ignore[arg-type]
    assert real.report.ok, real.report.render()
    assert not weak.report.ok
    return real, weak


def test_read_then_write_sequencer_stores_duplicate_seqs() -> None:
    # Bus jitter lets gateways see different posts first under one seq: order_mismatch.
    _, weak = both(1, "read_then_write_sequencer", bus_reorder=0.3, bus_loss=0.1)
    found = kinds(weak)
    assert found["store_duplicate"] > 0 and found["order_mismatch"] > 0, found
    v = first(weak, "store_duplicate")
    assert v.user is not None and f"{v.channel} seq {v.seq} twice" in v.detail
    assert first(weak, "order_mismatch").client is not None
    assert "acked_missing" not in found  # both acked posts are stored, just under one seq


def test_resume_from_head_loses_what_was_missed() -> None:
    _, weak = both(1, "resume_from_head", cuts=4)
    found = kinds(weak)
    assert found["gap"] > 0 and found["not_delivered"] > 0, found
    v = first(weak, "gap")
    assert v.client is not None and v.client.startswith(f"{v.user}#")
    assert "still owed seq" in v.detail


def test_no_bus_repair_loses_tails() -> None:
    _, weak = both(1, "no_bus_repair", bus_loss=0.3)
    found = kinds(weak)
    assert found["not_delivered"] > 0, found
    v = first(weak, "not_delivered")
    assert v.user is not None and "never received" in v.detail


def test_history_before_subscribe_loses_the_backfill_race() -> None:
    # A slower store widens the window between reading history and joining the live stream.
    _, weak = both(
        1,
        "history_before_subscribe",
        posts=1500,
        duration_s=10.0,
        cuts=30,
        membership_changes=10,
        store_delay_ms=(2.0, 10.0),
    )
    found = kinds(weak)
    assert found["gap"] > 0, found
    assert first(weak, "gap").user is not None


def test_flapping_presence_flaps_where_the_real_tracker_does_not() -> None:
    config = {"cuts": 6, "crashes": 1, "log": False}
    real = run(5, SimConfig(**config))  # type: ignore[arg-type]
    weak = run(5, SimConfig(variant="flapping_presence", **config))  # type: ignore[arg-type]
    # presence never touches messaging: the same schedule delivers the same frames
    assert weak.recording == real.recording
    assert real.report.ok and weak.report.ok
    assert real.presence_flaps() == 0
    assert weak.presence_flaps() > 0
    assert any(t.status == OFFLINE for t in weak.presence)
