"""Where a connection resumes: ``plan_resume``'s table row by row, then ``Cursor``."""

from __future__ import annotations

import pytest

from labkit.core.resume import (
    EPOCH_CHANGED,
    MAX_GAP_FILL,
    TOO_FAR_BEHIND,
    Cursor,
    ResumePlan,
    plan_resume,
)

EPOCH = "k3x9"


# -- plan_resume -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "last_seen", "client_epoch", "expected"),
    [
        # client epoch given and different: reset, whatever else holds
        (45, 41, "old1", ResumePlan("general", 45, EPOCH_CHANGED)),
        (45, 45, "old1", ResumePlan("general", 45, EPOCH_CHANGED)),  # nothing missed: still
        (45, None, "old1", ResumePlan("general", 45, EPOCH_CHANGED)),
        (0, 0, "old1", ResumePlan("general", 0, EPOCH_CHANGED)),
        # no last_seen: live from head
        (45, None, None, ResumePlan("general", 45)),
        (45, None, EPOCH, ResumePlan("general", 45)),
        # last_seen above head: it cannot be ours
        (45, 46, EPOCH, ResumePlan("general", 45, EPOCH_CHANGED)),
        (0, 3, None, ResumePlan("general", 0, EPOCH_CHANGED)),
        # more than max_gap missed
        (MAX_GAP_FILL + 1, 0, EPOCH, ResumePlan("general", MAX_GAP_FILL + 1, TOO_FAR_BEHIND)),
        (5000, 3999, None, ResumePlan("general", 5000, TOO_FAR_BEHIND)),
        # otherwise: gap-fill from last_seen
        (MAX_GAP_FILL, 0, EPOCH, ResumePlan("general", 0)),  # exactly 1000 missed: filled
        (5000, 4000, None, ResumePlan("general", 4000)),
        (45, 41, EPOCH, ResumePlan("general", 41)),
        (45, 45, EPOCH, ResumePlan("general", 45)),  # up to date: nothing to send
        (0, 0, None, ResumePlan("general", 0)),
    ],
)
def test_plan_resume_follows_the_table(
    head: int, last_seen: int | None, client_epoch: str | None, expected: ResumePlan
) -> None:
    plan = plan_resume("general", head, EPOCH, last_seen, client_epoch)
    assert plan == expected
    assert plan.needs_reset == (expected.reset_reason is not None)


def test_the_gap_bound_is_a_parameter() -> None:
    assert plan_resume("eng", 10, EPOCH, 5, EPOCH, max_gap=5) == ResumePlan("eng", 5)
    assert plan_resume("eng", 10, EPOCH, 4, EPOCH, max_gap=5) == ResumePlan(
        "eng", 10, TOO_FAR_BEHIND
    )


def test_the_max_gap_fill_is_the_protocols_thousand() -> None:
    assert MAX_GAP_FILL == 1000
    assert (EPOCH_CHANGED, TOO_FAR_BEHIND) == ("epoch_changed", "too_far_behind")


# -- Cursor ---------------------------------------------------------------------------------


def test_a_new_cursor_is_filling_and_refuses_live_messages() -> None:
    cursor = Cursor(7)
    assert not cursor.live
    assert cursor.offer(8) is False
    assert (cursor.seq, cursor.live) == (7, False)


def test_a_live_cursor_takes_exactly_the_next_seq() -> None:
    cursor = Cursor(7, live=True)
    assert cursor.offer(8) is True
    assert cursor.offer(9) is True
    assert (cursor.seq, cursor.live) == (9, True)


def test_a_live_cursor_skips_what_gap_fill_already_sent() -> None:
    cursor = Cursor(10, live=True)  # gap-fill ran ahead of the feed
    assert [cursor.offer(seq) for seq in (8, 9, 10)] == [False, False, False]
    assert (cursor.seq, cursor.live) == (10, True), "still live: nothing was missed"
    assert cursor.offer(11) is True


def test_a_jump_makes_a_live_cursor_fall_back_to_filling() -> None:
    cursor = Cursor(7, live=True)
    assert cursor.offer(9) is False
    assert (cursor.seq, cursor.live) == (7, False), "8 must be paged from the store first"
    assert cursor.offer(8) is False, "a filling cursor takes nothing live"
    assert cursor.filled(8) and cursor.filled(9)
    assert cursor.seq == 9


def test_filled_is_true_only_for_seqs_new_to_the_connection() -> None:
    cursor = Cursor(3)
    assert cursor.filled(2) is False
    assert cursor.filled(3) is False
    assert cursor.filled(4) is True
    assert cursor.filled(4) is False
    assert cursor.seq == 4
    assert not cursor.live, "filling never flips a cursor to live by itself"
    assert repr(cursor) == "Cursor(seq=4, live=False)"
