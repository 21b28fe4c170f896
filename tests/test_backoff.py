"""Tests for labkit.core.backoff: the envelope doubles up to its cap, the jitter stays in
[0.5, 1.5) of it, and a seed decides every delay."""

from __future__ import annotations

import random

import pytest

from labkit.core.backoff import MAX_DOUBLINGS, backoff_delay

BASE_S, CAP_S = 0.05, 2.0  # the live and simulated clients' defaults


def envelope(attempt: int, base_s: float = BASE_S, cap_s: float = CAP_S) -> float:
    return min(cap_s, base_s * 2 ** min(attempt, MAX_DOUBLINGS))


@pytest.mark.parametrize("attempt", [0, 1, 2, 3, 5, 6, 7, 10, 11, 50, 10**6])
def test_every_delay_is_within_half_and_one_and_a_half_envelopes(attempt: int) -> None:
    rng = random.Random(attempt)
    for _ in range(200):
        delay = backoff_delay(attempt, rng, BASE_S, CAP_S)
        assert 0.5 * envelope(attempt) <= delay < 1.5 * envelope(attempt)


def test_the_envelope_doubles_from_the_base_then_stops_at_the_cap() -> None:
    # An rng whose random() is always 0.5 makes the jitter factor exactly 1: each delay is then
    # the envelope itself.
    class Middle(random.Random):
        def random(self) -> float:
            return 0.5

    delays = [backoff_delay(a, Middle(), BASE_S, CAP_S) for a in range(0, 9)]
    assert delays == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0])


def test_the_exponent_stops_growing_so_a_huge_attempt_count_is_fine() -> None:
    # Without a cap on the exponent, 2 ** attempt would be a gigantic integer that no float holds.
    delay = backoff_delay(10**9, random.Random(0), 1e300, 1e308)
    assert delay == pytest.approx(1e300 * 2**MAX_DOUBLINGS * (0.5 + random.Random(0).random()))


def test_the_same_seed_gives_the_same_delays() -> None:
    def run(seed: int) -> list[float]:
        rng = random.Random(seed)
        return [backoff_delay(a, rng, BASE_S, CAP_S) for a in range(1, 30)]

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_one_draw_per_call_so_interleaved_uses_of_the_rng_stay_in_step() -> None:
    # The simulator shares one rng among every client; a second draw here would shift every
    # later random decision of the run.
    used, twin = random.Random(3), random.Random(3)
    backoff_delay(4, used, BASE_S, CAP_S)
    twin.random()
    assert used.random() == twin.random()


def test_delays_match_the_formula_both_clients_used_inline() -> None:
    # The live client and the simulator computed this expression themselves before; the same
    # seed must give the very same floats, so recorded runs replay unchanged.
    rng, twin = random.Random(11), random.Random(11)
    for attempt in [1, 2, 3, 1, 4, 9, 10, 11, 12, 1, 2]:
        old = min(CAP_S, BASE_S * 2 ** min(attempt, 10)) * (0.5 + twin.random())
        assert backoff_delay(attempt, rng, BASE_S, CAP_S) == old


def test_jitter_spreads_a_herd_of_clients_over_the_whole_window() -> None:
    # 500 clients of a crashed gateway, each with its own seed, on their 8th attempt (capped).
    delays = [backoff_delay(8, random.Random(seed), BASE_S, CAP_S) for seed in range(500)]
    assert min(delays) < 0.55 * CAP_S and max(delays) > 1.45 * CAP_S
    assert len(set(delays)) == len(delays)
    # No tenth of the window holds more than twice its share.
    tenths = [int((d / CAP_S - 0.5) * 10) for d in delays]
    assert max(tenths.count(t) for t in range(10)) < 2 * len(delays) / 10


@pytest.mark.parametrize(
    ("attempt", "base_s", "cap_s"), [(-1, BASE_S, CAP_S), (1, -0.1, CAP_S), (1, BASE_S, -1.0)]
)
def test_negative_arguments_are_refused(attempt: int, base_s: float, cap_s: float) -> None:
    with pytest.raises(ValueError):
        backoff_delay(attempt, random.Random(0), base_s, cap_s)
