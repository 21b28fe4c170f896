"""The channel feed: a lossy, duplicating, reordering bus in; a gap-free ordered stream out.

Payloads are ``"m<seq>"`` so every delivery can be checked against its seq. :func:`expect`
checks a whole :class:`Step` at once: a delivery or fetch the test did not name fails it.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

import pytest

from labkit.core.feed import MAX_FETCH, ChannelFeed, Step


def m(seq: int) -> str:
    return f"m{seq}"


def stored(first: int, last: int) -> list[tuple[int, str]]:
    """What the store returns for the inclusive range ``first..last``."""
    return [(seq, m(seq)) for seq in range(first, last + 1)]


def expect(
    step: Step[str], deliver: Iterable[int] = (), fetch: tuple[int, int] | None = None
) -> None:
    """The step delivers exactly ``deliver`` (with their payloads), in order, and asks for
    exactly ``fetch``."""
    assert step.deliver == [(seq, m(seq)) for seq in deliver], "deliveries"
    assert step.fetch == fetch, "fetch"


def started(head: int = 0) -> ChannelFeed[str]:
    feed: ChannelFeed[str] = ChannelFeed("general")
    expect(feed.start(head))
    return feed


# -- the four rules --------------------------------------------------------------------------


def test_rule_1_a_seq_at_or_below_head_is_a_dropped_duplicate() -> None:
    feed = started(5)
    expect(feed.on_bus(5, m(5)))
    expect(feed.on_bus(3, m(3)))
    expect(feed.on_bus(6, m(6)), deliver=[6])
    expect(feed.on_bus(6, m(6)))
    assert feed.head == 6
    assert feed.stats.duplicates == 3 and feed.stats.delivered == 1


def test_rule_2_the_next_seq_is_delivered_with_its_buffered_successors() -> None:
    feed = started(0)
    expect(feed.on_bus(1, m(1)), deliver=[1])
    expect(feed.on_bus(3, m(3)), fetch=(2, 2))
    expect(feed.on_bus(4, m(4)))  # the fetch of 2 is still outstanding
    expect(feed.on_bus(2, m(2)), deliver=[2, 3, 4])  # the bus was only late
    assert feed.head == 4 and feed.pending == {}


def test_rule_3_a_jump_is_buffered_and_the_hole_fetched() -> None:
    feed = started(10)
    expect(feed.on_bus(14, m(14)), fetch=(11, 13))
    assert feed.head == 10 and list(feed.pending) == [14]
    expect(feed.on_fetched(stored(11, 13)), deliver=[11, 12, 13, 14])
    assert feed.stats.repaired == 3 and feed.stats.fetches == 1


def test_rule_3_the_fetch_stops_below_the_first_buffered_seq() -> None:
    feed = started(0)
    expect(feed.on_bus(3, m(3)), fetch=(1, 2))
    expect(feed.on_bus(7, m(7)))
    expect(feed.on_fetched(stored(1, 2)), deliver=[1, 2, 3], fetch=(4, 6))
    expect(feed.on_fetched(stored(4, 6)), deliver=[4, 5, 6, 7])


def test_rule_4_a_store_head_above_ours_is_a_lost_tail() -> None:
    feed = started(0)
    expect(feed.on_bus(1, m(1)), deliver=[1])
    expect(feed.on_store_head(1))  # nothing lost
    expect(feed.on_store_head(3), fetch=(2, 3))
    expect(feed.on_fetched(stored(2, 3)), deliver=[2, 3])
    expect(feed.on_store_head(3))
    assert feed.known_head == 3 and feed.head == 3


def test_fetched_items_already_delivered_or_buffered_are_not_repairs() -> None:
    feed = started(2)
    expect(feed.on_bus(5, m(5)), fetch=(3, 4))
    expect(feed.on_fetched(stored(1, 5)), deliver=[3, 4, 5])
    assert feed.stats.repaired == 2, "only 3 and 4 came from the store"


# -- before start() ------------------------------------------------------------------------


def test_everything_is_buffered_until_start() -> None:
    feed: ChannelFeed[str] = ChannelFeed("general")
    assert not feed.started and feed.head is None
    expect(feed.on_bus(8, m(8)))
    expect(feed.on_bus(6, m(6)))
    expect(feed.on_bus(6, m(6)))  # a duplicate even before start
    expect(feed.on_store_head(9))
    assert feed.stats.duplicates == 1 and feed.stats.fetches == 0
    expect(feed.start(5), deliver=[6], fetch=(7, 7))
    assert feed.started
    expect(feed.on_fetched(stored(7, 7)), deliver=[7, 8], fetch=(9, 9))
    expect(feed.on_fetched(stored(9, 9)), deliver=[9])


def test_start_drops_buffered_seqs_at_or_below_the_head() -> None:
    feed: ChannelFeed[str] = ChannelFeed("general")
    for seq in (4, 5, 6, 7):
        feed.on_bus(seq, m(seq))
    expect(feed.start(5), deliver=[6, 7])
    assert feed.pending == {}
    assert feed.stats.delivered == 2


def test_start_at_the_head_with_nothing_buffered_asks_for_nothing() -> None:
    feed: ChannelFeed[str] = ChannelFeed("general")
    expect(feed.start(42))
    assert (feed.head, feed.known_head) == (42, 42)
    expect(feed.on_bus(43, m(43)), deliver=[43])


# -- fetching -------------------------------------------------------------------------------


def test_one_fetch_at_a_time_and_a_failed_one_is_retried_by_the_next_event() -> None:
    feed = started(0)
    expect(feed.on_bus(5, m(5)), fetch=(1, 4))
    expect(feed.on_bus(8, m(8)))
    expect(feed.on_store_head(9))
    assert feed.fetching == (1, 4)
    feed.fetch_failed()
    assert feed.fetching is None
    expect(feed.on_store_head(9), fetch=(1, 4))
    feed.fetch_failed()
    expect(feed.on_bus(7, m(7)), fetch=(1, 4))  # so does the next bus message
    expect(feed.on_fetched(stored(1, 4)), deliver=[1, 2, 3, 4, 5], fetch=(6, 6))
    expect(feed.on_fetched(stored(6, 6)), deliver=[6, 7, 8], fetch=(9, 9))
    expect(feed.on_fetched(stored(9, 9)), deliver=[9])
    assert feed.stats.fetches == 5


def test_an_empty_answer_asks_again_at_once() -> None:
    feed = started(0)
    expect(feed.on_bus(3, m(3)), fetch=(1, 2))
    expect(feed.on_fetched([]), fetch=(1, 2))


def test_a_big_hole_is_fetched_max_fetch_at_a_time() -> None:
    last = 2 * MAX_FETCH + 500
    feed = started(0)
    expect(feed.on_bus(last, m(last)), fetch=(1, MAX_FETCH))
    expect(
        feed.on_fetched(stored(1, MAX_FETCH)),
        deliver=range(1, MAX_FETCH + 1),
        fetch=(MAX_FETCH + 1, 2 * MAX_FETCH),
    )
    expect(
        feed.on_fetched(stored(MAX_FETCH + 1, 2 * MAX_FETCH)),
        deliver=range(MAX_FETCH + 1, 2 * MAX_FETCH + 1),
        fetch=(2 * MAX_FETCH + 1, last - 1),
    )
    expect(
        feed.on_fetched(stored(2 * MAX_FETCH + 1, last - 1)),
        deliver=range(2 * MAX_FETCH + 1, last + 1),
    )
    assert feed.stats.fetches == 3 and feed.stats.delivered == last


def test_a_long_lost_tail_is_paged_too() -> None:
    feed = started(0)
    expect(feed.on_store_head(MAX_FETCH + 1), fetch=(1, MAX_FETCH))
    expect(
        feed.on_fetched(stored(1, MAX_FETCH)),
        deliver=range(1, MAX_FETCH + 1),
        fetch=(MAX_FETCH + 1, MAX_FETCH + 1),
    )


# -- reset and stats -----------------------------------------------------------------------


def test_reset_forgets_the_old_numbering() -> None:
    feed = started(0)
    expect(feed.on_bus(1, m(1)), deliver=[1])
    expect(feed.on_bus(9, m(9)), fetch=(2, 8))
    feed.reset(3)
    assert (feed.head, feed.known_head, feed.pending, feed.fetching) == (3, 3, {}, None)
    expect(feed.on_bus(4, m(4)), deliver=[4])
    expect(feed.on_bus(9, m(9)), fetch=(5, 8))  # the new 9, not a duplicate of the old one


def test_reset_to_a_lower_head_delivers_the_new_numbering_from_there() -> None:
    feed = started(50)
    feed.reset(0)
    expect(feed.on_bus(1, m(1)), deliver=[1])
    expect(feed.on_store_head(1))


def test_stats_count_deliveries_duplicates_repairs_and_fetches() -> None:
    feed = started(0)
    feed.on_bus(1, m(1))
    feed.on_bus(1, m(1))
    feed.on_bus(4, m(4))
    feed.on_bus(4, m(4))
    feed.on_fetched(stored(2, 3))
    feed.on_store_head(6)
    feed.on_fetched(stored(5, 6))
    s = feed.stats
    assert (s.delivered, s.duplicates, s.repaired, s.fetches) == (6, 2, 4, 2)


# -- property: whatever the bus does, the stream is 1..N ----------------------------------


@pytest.mark.parametrize("seed", range(40))
def test_any_mix_of_loss_duplicates_reordering_and_late_fetches_delivers_each_seq_once(
    seed: int,
) -> None:
    rng = random.Random(seed)
    n = rng.randint(1, 300)
    store = {seq: m(seq) for seq in range(1, n + 1)}
    start_head = rng.randint(0, n // 4)
    bus = [seq for seq in range(1, n + 1) if rng.random() > 0.2]  # about 20 % lost
    bus += [rng.randint(1, n) for _ in range(rng.randint(0, n // 5))]  # duplicates
    rng.shuffle(bus)
    start_at = rng.randint(0, len(bus))  # messages before this one arrive before start()

    feed: ChannelFeed[str] = ChannelFeed("general")
    delivered: list[tuple[int, str]] = []
    outstanding: tuple[int, int] | None = None

    def take(step: Step[str]) -> None:
        nonlocal outstanding
        delivered.extend(step.deliver)
        if step.fetch is not None:
            assert outstanding is None, f"seed {seed}: a second fetch while one is outstanding"
            first, last = step.fetch
            assert 1 <= first <= last <= n and last - first < MAX_FETCH, f"seed {seed}"
            outstanding = step.fetch

    def answer_fetch() -> None:
        nonlocal outstanding
        assert outstanding is not None
        first, last = outstanding
        outstanding = None
        if rng.random() < 0.15:
            feed.fetch_failed()
        else:
            take(feed.on_fetched([(s, store[s]) for s in range(first, last + 1)]))

    for i, seq in enumerate(bus):
        if i == start_at:
            take(feed.start(start_head))
        take(feed.on_bus(seq, store[seq]))
        if outstanding is not None and rng.random() < 0.5:
            answer_fetch()
        if feed.started and rng.random() < 0.05:
            take(feed.on_store_head(rng.randint(feed.head or 0, n)))
    if not feed.started:
        take(feed.start(start_head))

    for _ in range(10 * n + 10):  # the periodic head check, until it has nothing to do
        if outstanding is not None:
            answer_fetch()
        else:
            take(feed.on_store_head(n))
            if outstanding is None:
                break
    expected = [(seq, m(seq)) for seq in range(start_head + 1, n + 1)]
    assert delivered == expected, f"seed {seed}"
    assert feed.head == n and feed.pending == {} and feed.fetching is None, f"seed {seed}"
    assert feed.stats.delivered == len(expected), f"seed {seed}"
