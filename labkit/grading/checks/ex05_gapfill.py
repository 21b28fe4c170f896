"""Checks for ex05_gapfill: the gateway's merge of store history and live bus messages.

Every check drives a ``ChannelFeed`` the way the gateway does: ``start(head)`` after
subscribing, ``on_bus`` for each bus message, and for every ``Step.fetch`` it reads that range
from a pretend store and hands it back with ``on_fetched`` (or says ``fetch_failed``). The
outcome that matters is the concatenation of every ``Step.deliver``: each seq after the start
head exactly once, in order. The budget: store reads in proportion to what was missed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from labkit.grading.framework import CheckList, Failure, expect, need, show

checks = CheckList()

MAX_FETCH = 1000


def payload(seq: int) -> str:
    return f"m{seq}"


def _feed(module: ModuleType) -> Any:
    return need(module, "ChannelFeed")("general")


def _deliveries(step: Any) -> list[tuple[int, Any]]:
    deliver = getattr(step, "deliver", None)
    if deliver is None:
        raise Failure("a Step with .deliver and .fetch", f"{show(step)}")
    return [(int(s), p) for s, p in deliver]


def _seqs(step: Any) -> list[int]:
    return [s for s, _ in _deliveries(step)]


def _fetch(step: Any) -> tuple[int, int] | None:
    fetch = getattr(step, "fetch", None)
    return None if fetch is None else (int(fetch[0]), int(fetch[1]))


def _items(first: int, last: int) -> list[tuple[int, str]]:
    return [(s, payload(s)) for s in range(first, last + 1)]


def _said(deliver: list[int], fetch: tuple[int, int] | None) -> str:
    what = f"deliver {show(deliver)}" if deliver else "deliver nothing"
    return what + (f" and fetch {fetch}" if fetch is not None else " and fetch nothing")


def _expect_step(step: Any, deliver: list[int], fetch: tuple[int, int] | None, doing: str) -> None:
    got_deliver, got_fetch = _seqs(step), _fetch(step)
    if got_deliver != deliver or got_fetch != fetch:
        raise Failure(
            f"{doing} to {_said(deliver, fetch)}", f"it chose to {_said(got_deliver, got_fetch)}"
        )
    for seq, p in _deliveries(step):
        expect(
            p == payload(seq),
            f"seq {seq} delivered with its own payload {payload(seq)!r}",
            f"it came with {show(p)}",
        )


@checks.add("in-order bus messages are delivered as they come")
def check_in_order(module: ModuleType, rng: random.Random) -> None:
    feed = _feed(module)
    _expect_step(feed.start(0), [], None, "start(0) on an empty channel")
    for seq in (1, 2, 3):
        _expect_step(feed.on_bus(seq, payload(seq)), [seq], None, f"on_bus({seq})")
    expect(feed.head == 3, "feed.head to be 3 (the highest seq delivered)", f"it is {feed.head!r}")


@checks.add("a duplicate from the bus is dropped")
def check_duplicate(module: ModuleType, rng: random.Random) -> None:
    feed = _feed(module)
    feed.start(0)
    for seq in (1, 2, 3):
        feed.on_bus(seq, payload(seq))
    _expect_step(feed.on_bus(2, payload(2)), [], None, "a second on_bus(2)")
    _expect_step(feed.on_bus(3, payload(3)), [], None, "a second on_bus(3)")
    _expect_step(feed.on_bus(4, payload(4)), [4], None, "on_bus(4)")


@checks.add("messages that arrive before start(head) wait; only seqs above head are delivered")
def check_before_start(module: ModuleType, rng: random.Random) -> None:
    feed = _feed(module)
    for seq in (4, 5, 6):
        step = feed.on_bus(seq, payload(seq))
        expect(
            _seqs(step) == [] and _fetch(step) is None,
            f"on_bus({seq}) before start() to deliver nothing and fetch nothing (the head"
            " is not known yet)",
            f"it delivered {show(_seqs(step))} and asked to fetch {show(_fetch(step))}",
        )
    _expect_step(
        feed.start(4),
        [5, 6],
        None,
        "start(4) (the store head read after subscribing) with 4, 5, 6 buffered",
    )

    feed = _feed(module)
    for seq in (5, 6):
        feed.on_bus(seq, payload(seq))
    _expect_step(feed.start(3), [], (4, 4), "start(3) with 5 and 6 buffered (4 was lost)")


@checks.add("a gap asks the store for exactly the missing range, then delivers in order")
def check_gap_fetch(module: ModuleType, rng: random.Random) -> None:
    feed = _feed(module)
    feed.start(3)
    _expect_step(feed.on_bus(7, payload(7)), [], (4, 6), "head 3, then on_bus(7)")
    _expect_step(feed.on_fetched(_items(4, 6)), [4, 5, 6, 7], None, "on_fetched(4..6)")
    _expect_step(feed.on_bus(8, payload(8)), [8], None, "on_bus(8)")


@checks.add("backfill race: a message both fetched and late on the bus is delivered once")
def check_backfill_race(module: ModuleType, rng: random.Random) -> None:
    for order in ("bus copies first", "fetch first"):
        feed = _feed(module)
        feed.start(3)
        delivered: list[int] = []
        step = feed.on_bus(7, payload(7))
        delivered += _seqs(step)
        expect(
            _fetch(step) == (4, 6),
            "head 3, then on_bus(7), to fetch (4, 6)",
            f"it asked to fetch {show(_fetch(step))}",
        )
        if order == "bus copies first":
            delivered += _seqs(feed.on_bus(5, payload(5)))
            delivered += _seqs(feed.on_bus(4, payload(4)))
            delivered += _seqs(feed.on_fetched(_items(4, 6)))
            delivered += _seqs(feed.on_bus(6, payload(6)))
        else:
            delivered += _seqs(feed.on_fetched(_items(4, 6)))
            delivered += _seqs(feed.on_bus(5, payload(5)))
            delivered += _seqs(feed.on_bus(6, payload(6)))
        expect(
            delivered == [4, 5, 6, 7],
            f"4, 5, 6, 7 delivered once each, in order ({order}: bus copies of 4..6 race"
            " the store fetch)",
            f"the deliveries were {show(delivered)}",
        )


@checks.add("only one fetch is outstanding at a time; the next hole is asked for after it")
def check_one_fetch(module: ModuleType, rng: random.Random) -> None:
    feed = _feed(module)
    feed.start(0)
    _expect_step(feed.on_bus(5, payload(5)), [], (1, 4), "head 0, then on_bus(5)")
    _expect_step(
        feed.on_bus(10, payload(10)),
        [],
        None,
        "on_bus(10) while the fetch of (1, 4) is outstanding",
    )
    _expect_step(
        feed.on_fetched(_items(1, 4)),
        [1, 2, 3, 4, 5],
        (6, 9),
        "on_fetched(1..4) (6..9 are still missing; 10 is buffered)",
    )
    _expect_step(feed.on_fetched(_items(6, 9)), [6, 7, 8, 9, 10], None, "on_fetched(6..9)")


@checks.add("after fetch_failed, the next event asks for the range again")
def check_fetch_failed(module: ModuleType, rng: random.Random) -> None:
    feed = _feed(module)
    feed.start(0)
    _expect_step(feed.on_bus(3, payload(3)), [], (1, 2), "head 0, then on_bus(3)")
    feed.fetch_failed()
    _expect_step(
        feed.on_bus(4, payload(4)),
        [],
        (1, 2),
        "on_bus(4) after fetch_failed() (the store could not be read)",
    )
    _expect_step(feed.on_fetched(_items(1, 2)), [1, 2, 3, 4], None, "on_fetched(1..2)")


@checks.add("a lost tail (nothing after the lost message) is found by the store-head check")
def check_lost_tail(module: ModuleType, rng: random.Random) -> None:
    feed = _feed(module)
    feed.start(0)
    feed.on_bus(1, payload(1))
    _expect_step(feed.on_store_head(1), [], None, "on_store_head(1) when 1 was delivered")
    _expect_step(
        feed.on_store_head(3),
        [],
        (2, 3),
        "on_store_head(3) when only 1 was delivered (2 and 3 were lost on the bus)",
    )
    _expect_step(feed.on_fetched(_items(2, 3)), [2, 3], None, "on_fetched(2..3)")


@checks.add(f"a long outage is fetched in pages of at most {MAX_FETCH}, one after another")
def check_paging(module: ModuleType, rng: random.Random) -> None:
    feed = _feed(module)
    feed.start(0)
    step = feed.on_bus(2501, payload(2501))
    delivered = _seqs(step)
    fetches: list[tuple[int, int]] = []
    fetch = _fetch(step)
    while fetch is not None and len(fetches) < 20:
        fetches.append(fetch)
        first, last = fetch
        expect(
            last - first + 1 <= MAX_FETCH and first == (delivered[-1] if delivered else 0) + 1,
            f"each fetch to start right after the last delivered seq and span at most"
            f" {MAX_FETCH} seqs",
            f"fetch {fetch} after delivering up to {delivered[-1] if delivered else 0}",
        )
        step = feed.on_fetched(_items(first, last))
        delivered += _seqs(step)
        fetch = _fetch(step)
    expect(
        delivered == list(range(1, 2502)),
        "seqs 1..2501 delivered once each, in order",
        f"{len(delivered)} deliveries, starting {show(delivered[:5])}",
    )
    expect(
        fetches == [(1, 1000), (1001, 2000), (2001, 2500)],
        "three fetches: (1, 1000), (1001, 2000), (2001, 2500)",
        f"{show(fetches)}",
    )


@checks.add("reset(head) forgets everything buffered and outstanding")
def check_reset(module: ModuleType, rng: random.Random) -> None:
    feed = _feed(module)
    feed.start(0)
    feed.on_bus(1, payload(1))
    feed.on_bus(2, payload(2))
    _expect_step(feed.on_bus(6, payload(6)), [], (3, 5), "on_bus(6) after 1, 2")
    feed.reset(0)
    _expect_step(
        feed.on_bus(1, payload(1)),
        [1],
        None,
        "on_bus(1) after reset(0) (the channel's numbering restarted)",
    )
    _expect_step(
        feed.on_bus(3, payload(3)),
        [],
        (2, 2),
        "on_bus(3) after the reset: the old outstanding fetch is forgotten",
    )
    _expect_step(
        feed.on_fetched(_items(2, 2)),
        [2, 3],
        None,
        "on_fetched(2..2) (the old buffered 6 must not come back)",
    )


# --------------------------------------------------------------------------- simulation


@dataclass
class SimResult:
    delivered: list[tuple[int, Any]] = field(default_factory=list)
    fetches: int = 0
    fetched_items: int = 0
    lost: int = 0
    lost_runs: int = 0


def simulate(
    module: ModuleType,
    rng: random.Random,
    *,
    total: int,
    drop: float,
    duplicate: float,
    reorder: float,
    fetch_delay: int,
    fetch_fail: float,
    lost_tail: int = 0,
) -> tuple[int, SimResult]:
    """A gateway over a lossy bus: returns the start head and what the feed did.

    The store holds every seq up to the highest one that has reached the gateway (messages are
    stored before they are published); a fetch returns what the store holds of its range.
    """
    feed = _feed(module)
    out = SimResult()
    head0 = rng.randint(0, 15)
    arrivals: list[int] = []
    dropped: set[int] = set()
    for seq in range(1, total + 1):
        if seq > head0 and (rng.random() < drop or seq > total - lost_tail):
            out.lost += 1
            out.lost_runs += (seq - 1) not in dropped
            dropped.add(seq)
            continue
        arrivals.append(seq)
        if rng.random() < duplicate:
            arrivals.append(seq)
    for i in range(len(arrivals) - 1):
        if rng.random() < reorder:
            j = min(len(arrivals) - 1, i + rng.randint(1, 3))
            arrivals[i], arrivals[j] = arrivals[j], arrivals[i]
    state: dict[str, Any] = {"fetch": None, "wait": 0, "published": 0}

    def handle(step: Any, what: str) -> None:
        out.delivered.extend(_deliveries(step))
        fetch = _fetch(step)
        if fetch is None:
            return
        if state["fetch"] is not None:
            raise Failure(
                "at most one fetch outstanding at a time",
                f"{what} asked to fetch {fetch} while {state['fetch']} was still outstanding",
            )
        state["fetch"] = fetch
        state["wait"] = rng.randint(0, fetch_delay)

    def tick(force: bool = False) -> None:
        if state["fetch"] is None:
            return
        if state["wait"] > 0 and not force:
            state["wait"] -= 1
            return
        first, last = state["fetch"]
        state["fetch"] = None
        if rng.random() < fetch_fail:
            feed.fetch_failed()
            return
        items = _items(first, min(last, state["published"]))
        out.fetches += 1
        out.fetched_items += len(items)
        handle(feed.on_fetched(items), f"on_fetched({first}..{last})")

    start_at = rng.randint(0, 4)
    started = False
    for index, seq in enumerate(arrivals):
        state["published"] = max(state["published"], seq)
        if not started and index >= start_at:
            state["published"] = max(state["published"], head0)
            handle(feed.start(head0), f"start({head0})")
            started = True
        handle(feed.on_bus(seq, payload(seq)), f"on_bus({seq})")
        if started:
            tick()
            if rng.random() < 0.1:
                head = state["published"]
                handle(feed.on_store_head(head), f"on_store_head({head})")
    state["published"] = total
    if not started:
        handle(feed.start(head0), f"start({head0})")
    for _ in range(100):
        if state["fetch"] is None:
            handle(feed.on_store_head(total), f"on_store_head({total})")
            if state["fetch"] is None:
                break
        tick(force=True)
    return head0, out


def _check_stream(head0: int, total: int, delivered: list[tuple[int, Any]], how: str) -> None:
    seqs = [s for s, _ in delivered]
    want = list(range(head0 + 1, total + 1))
    if seqs == want:
        for seq, p in delivered:
            expect(
                p == payload(seq),
                f"seq {seq} delivered with payload {payload(seq)!r}",
                f"it came with {show(p)}",
            )
        return
    seen: set[int] = set()
    for i, seq in enumerate(seqs):
        if seq in seen:
            raise Failure(
                f"every seq from {head0 + 1} to {total} once, in order ({how})",
                f"seq {seq} was delivered twice (delivery #{i + 1})",
            )
        seen.add(seq)
        if i < len(want) and seq != want[i]:
            raise Failure(
                f"every seq from {head0 + 1} to {total} once, in order ({how})",
                f"delivery #{i + 1} was seq {seq} where seq {want[i]} was due",
            )
    missing = sorted(set(want) - seen)
    raise Failure(
        f"every seq from {head0 + 1} to {total} once, in order ({how})",
        f"{len(missing)} seqs never delivered, e.g. {show(missing[:8])}",
    )


@checks.add(
    "a lossy bus (drops, duplicates, reordering, slow and failing fetches): every seq once,"
    " in order",
    randomized=True,
)
def check_lossy_bus(module: ModuleType, rng: random.Random) -> None:
    for round_ in range(4):
        total = rng.randint(80, 300)
        head0, out = simulate(
            module,
            rng,
            total=total,
            drop=0.12,
            duplicate=0.08,
            reorder=0.15,
            fetch_delay=3,
            fetch_fail=0.1,
            lost_tail=rng.randint(1, 3) if round_ % 2 == 0 else 0,
        )
        _check_stream(
            head0,
            total,
            out.delivered,
            f"round {round_ + 1}: start head {head0}, {total} messages, {out.lost} lost",
        )


@checks.add(
    "store reads are proportional to what was missed, not to the channel's size (budget)",
    randomized=True,
)
def check_read_budget(module: ModuleType, rng: random.Random) -> None:
    total = 2000
    head0, out = simulate(
        module,
        rng,
        total=total,
        drop=0.03,
        duplicate=0.0,
        reorder=0.0,
        fetch_delay=0,
        fetch_fail=0.0,
    )
    _check_stream(head0, total, out.delivered, f"{total} messages, {out.lost} lost")
    budget_items = 2 * out.lost + 10
    budget_fetches = out.lost_runs + 5
    expect(
        out.fetched_items <= budget_items and out.fetches <= budget_fetches,
        f"at most {budget_fetches} store reads fetching at most {budget_items} messages, for"
        f" {out.lost} messages lost in {out.lost_runs} runs",
        f"{out.fetches} store reads fetched {out.fetched_items} messages",
    )
    feed = _feed(module)
    feed.start(0)
    step = feed.on_bus(601, payload(601))
    reads = 0
    fetch = _fetch(step)
    while fetch is not None and reads < 700:
        reads += 1
        step = feed.on_fetched(_items(*fetch))
        fetch = _fetch(step)
    expect(
        reads <= 1,
        "a hole of 600 seqs to be repaired with one store read",
        f"it took {reads} store reads",
    )


EXERCISE = checks.exercise(
    "ex05_gapfill",
    "server-side gap-fill merge: store history plus buffered live messages, no duplicate, no hole",
)
