"""The presence cost model: deterministic, no flapping, and the table in docs/presence.md is
what the code measures (regenerate it with ``python -m labkit.lab.presence_cost``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit.lab.presence_cost import (
    SIDEBAR_K,
    TEAM_SIZES,
    CostRow,
    main,
    measure,
    render_markdown,
    simulate,
)

DOC = Path(__file__).resolve().parent.parent / "docs" / "presence.md"


def test_same_seed_same_numbers_and_another_seed_differs() -> None:
    assert simulate(100, seed=3) == simulate(100, seed=3)
    assert simulate(100, seed=3) != simulate(100, seed=4)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_small_teams_churn_without_flapping(seed: int) -> None:
    # simulate() raises if a reconnect inside the window announced anything, or if a user's
    # transitions ever failed to alternate; here we check it had something to check.
    row = simulate(100, seed=seed)
    assert row.reconnects > 20, f"seed {seed}"
    assert row.status_changes > 50, f"seed {seed}"
    assert row.connects >= row.reconnects, f"seed {seed}"


def test_presence_sub_is_bounded_by_the_sidebar_and_naive_is_not() -> None:
    small, large = measure((100, 1000), seed=2)
    for row in (small, large):
        assert row.sidebar == SIDEBAR_K
        assert row.per_change(row.presence_sub) <= SIDEBAR_K
        assert row.naive_channel >= row.naive_unique >= row.presence_sub
        assert row.digest_frames <= row.digest_entries <= row.presence_sub
    # Naive grows with the team; presence_sub does not.
    assert large.per_change(large.naive_unique) > 5 * small.per_change(small.naive_unique)
    assert large.per_change(large.presence_sub) < 2 * small.per_change(small.presence_sub)


def test_tiny_team_sidebar_is_everyone_else() -> None:
    row = simulate(10)
    assert row.sidebar == 9
    assert row.channels >= 3
    with pytest.raises(ValueError):
        simulate(1)


def test_render_markdown_has_a_row_per_team() -> None:
    rows = measure((10, 100), seed=1)
    text = render_markdown(rows)
    assert text.count("\n| 10 |") == 2 and text.count("\n| 100 |") == 2
    assert "presence_sub" in text and "digest 60 s" in text
    empty = CostRow(10, 3, 20, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    assert empty.per_change(5) == 0.0


def test_docs_table_is_the_measured_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert TEAM_SIZES == (10, 100, 1000, 10000)
    assert main([]) == 0  # measure() with the defaults, printed by render_markdown()
    table = capsys.readouterr().out
    assert table.count("\n| 10,000 |") == 2
    assert table in DOC.read_text(encoding="utf-8"), (
        "docs/presence.md is out of date: paste the output of `python -m labkit.lab.presence_cost`"
    )
