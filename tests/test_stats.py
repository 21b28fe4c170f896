"""The one percentile: nearest rank, on an ascending sequence, used by every latency report."""

from __future__ import annotations

import math
import random

import pytest

from labkit.bench.harness import percentiles as bench_percentiles
from labkit.core.records import FrameRecord, Recording
from labkit.core.stats import percentile
from labkit.lab.checker import check
from labkit.lab.polling import percentiles as polling_percentiles


def test_nearest_rank_of_one_to_a_hundred() -> None:
    values = [float(i) for i in range(1, 101)]
    assert percentile(values, 0.50) == 50.0
    assert percentile(values, 0.95) == 95.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile(values, 0.0) == 1.0
    assert percentile(values, 0.001) == 1.0
    assert percentile(values, 0.505) == 51.0  # rank ceil(50.5) = 51


def test_small_samples_report_a_measured_value() -> None:
    assert percentile([3.0], 0.5) == 3.0
    assert percentile([3.0], 0.99) == 3.0
    assert percentile([0.1, 0.3], 0.5) == 0.1  # rank 1 of 2: no invented 0.2
    assert percentile([0.1, 0.3], 0.51) == 0.3
    assert percentile([1, 2, 3], 0.5) == 2


def test_floating_point_does_not_push_an_exact_rank_up() -> None:
    values = list(range(1, 101))
    assert 0.07 * 100 > 7  # the trap
    assert percentile(values, 0.07) == 7
    for p in range(101):
        assert percentile(values, p / 100) == max(1, p)


def test_matches_the_definition_on_random_samples() -> None:
    rng = random.Random(7)
    for _ in range(300):
        n = rng.randint(1, 60)
        values = sorted(rng.uniform(0.0, 5.0) for _ in range(n))
        q = rng.choice([0.0, 0.25, 0.5, 0.9, 0.95, 0.99, 1.0, rng.random()])
        got = percentile(values, q)
        assert got in values
        # Nearest rank: the smallest value with at least q * n values at or below it.
        at_or_below = sum(1 for v in values if v <= got)
        assert at_or_below >= q * n - 1e-9
        assert all(sum(1 for w in values if w <= v) < q * n - 1e-9 for v in values if v < got)


def test_works_on_any_element_type() -> None:
    runs = sorted([{"rate": 3.0}, {"rate": 1.0}, {"rate": 2.0}], key=lambda r: r["rate"])
    assert percentile(runs, 0.5) == {"rate": 2.0}


@pytest.mark.parametrize("q", [-0.01, 1.01, math.nan])
def test_refuses_a_q_outside_zero_to_one(q: float) -> None:
    with pytest.raises(ValueError):
        percentile([1.0, 2.0], q)


def test_refuses_an_empty_sequence() -> None:
    with pytest.raises(ValueError, match="empty"):
        percentile([], 0.5)


def test_every_latency_report_uses_it() -> None:
    rng = random.Random(3)
    delays = [round(rng.uniform(0.001, 0.5), 6) for _ in range(40)]
    ordered = sorted(delays)
    want = {f"p{p}": percentile(ordered, p / 100) for p in (50, 95, 99)}
    want["max"] = ordered[-1]

    assert polling_percentiles(delays) == want
    bench = bench_percentiles(delays)
    assert {k: bench[f"{k}_ms"] for k in want} == pytest.approx(
        {k: v * 1000 for k, v in want.items()}
    )
    assert bench["quantiles_ms"][50] == pytest.approx(want["p50"] * 1000)

    recording = Recording()
    for seq, delay in enumerate(delays, start=1):
        frame = {
            "type": "message",
            "channel": "#c",
            "seq": seq,
            "user": "u",
            "text": "t",
            "ts": 10.0,
        }
        recording.add(FrameRecord(10.0 + delay, "a#1", "a", 1, "in", frame))
    latency = check(recording, {}).latency
    assert latency == pytest.approx(want)
