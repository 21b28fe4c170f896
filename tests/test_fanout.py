"""The fanout core: routing, feeds and cursors kept consistent, with no I/O.

Connections are plain strings (or ints, where hashing order matters) and payloads ``"m<seq>"``.
:func:`expect_sends` checks every send of an :class:`Outcome`: a write the test did not name
fails it.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

import pytest

from labkit.core.fanout import FanoutCore, Outcome
from labkit.lab.variants import NoRepairFeed


def m(seq: int) -> str:
    return f"m{seq}"


def expect_sends(
    outcome: Outcome[str, str],
    sends: Iterable[tuple[int, list[str]]] = (),
    fetch: tuple[int, int] | None = None,
    fill: Iterable[str] = (),
) -> None:
    """The outcome writes exactly ``sends`` (seq → recipients), asks for ``fetch`` and
    reports exactly ``fill``."""
    assert [(seq, payload, recipients) for seq, payload, recipients in outcome.sends] == [
        (seq, m(seq), recipients) for seq, recipients in sends
    ], "sends"
    assert outcome.fetch == fetch, "fetch"
    assert outcome.fill == list(fill), "fill"


def live_core(head: int, *conns: str, channel: str = "general") -> FanoutCore[str, str]:
    """A core whose feed started at ``head`` with every one of ``conns`` live there."""
    core: FanoutCore[str, str] = FanoutCore()
    for conn in conns:
        core.attach(conn, channel, head)
    expect_sends(core.start_feed(channel, head))
    for conn in conns:
        assert core.try_go_live(conn, channel)
    return core


# -- membership -----------------------------------------------------------------------------


def test_attach_says_subscribe_for_the_first_member_and_makes_the_feed() -> None:
    core: FanoutCore[str, str] = FanoutCore()
    assert core.attach("a", "general", 3) is True
    feed = core.feeds["general"]
    assert not feed.started
    assert core.attach("b", "general", 5) is False
    assert core.feeds["general"] is feed, "one feed per channel"
    cursor = core.cursor("b", "general")
    assert cursor is not None and (cursor.seq, cursor.live) == (5, False), "starts filling"
    assert core.routing.connections("general") == ["a", "b"]


def test_detach_unsubscribes_and_drops_the_feed_with_the_last_member() -> None:
    core = live_core(0, "a", "b")
    assert core.detach("c", "general") is False
    assert core.detach("a", "general") is False
    assert core.cursor("a", "general") is None
    assert "general" in core.feeds
    expect_sends(core.on_bus("general", 1, m(1)), [(1, ["b"])])
    assert core.detach("b", "general") is True
    assert "general" not in core.feeds
    expect_sends(core.on_bus("general", 2, m(2)))  # nobody subscribed: nothing to do
    assert core.attach("a", "general", 9) is True
    assert not core.feeds["general"].started, "a new feed, started afresh"


def test_drop_connection_unsubscribes_only_the_channels_it_emptied() -> None:
    core: FanoutCore[str, str] = FanoutCore()
    for channel in ("general", "eng", "random"):
        core.attach("a", channel, 0)
    core.attach("b", "eng", 0)
    assert core.drop_connection("a") == ["general", "random"]
    assert sorted(core.feeds) == ["eng"]
    assert core.cursor("a", "eng") is None and core.cursor("b", "eng") is not None
    assert core.drop_connection("a") == []


# -- live delivery --------------------------------------------------------------------------


def test_sends_go_to_live_cursors_whose_next_seq_it_is() -> None:
    core: FanoutCore[str, str] = FanoutCore()
    core.attach("live", "general", 0)
    core.attach("filling", "general", 0)
    core.attach("ahead", "general", 2)  # gap-fill already sent it 1 and 2
    expect_sends(core.start_feed("general", 0))
    assert core.try_go_live("live", "general")
    assert core.try_go_live("ahead", "general")
    expect_sends(core.on_bus("general", 1, m(1)), [(1, ["live"])])
    expect_sends(core.on_bus("general", 2, m(2)), [(2, ["live"])])
    expect_sends(core.on_bus("general", 3, m(3)), [(3, ["live", "ahead"])])
    filling = core.cursor("filling", "general")
    assert filling is not None and (filling.seq, filling.live) == (0, False)


def test_one_event_can_send_several_seqs_in_order() -> None:
    core = live_core(0, "a")
    expect_sends(core.on_bus("general", 3, m(3)), fetch=(1, 2))
    expect_sends(core.on_bus("general", 1, m(1)), [(1, ["a"])])
    expect_sends(core.on_fetched("general", [(2, m(2))]), [(2, ["a"]), (3, ["a"])])


def test_duplicates_and_other_channels_send_nothing() -> None:
    core = live_core(0, "a")
    expect_sends(core.on_bus("general", 1, m(1)), [(1, ["a"])])
    expect_sends(core.on_bus("general", 1, m(1)))
    expect_sends(core.on_bus("eng", 1, m(1)))
    expect_sends(core.on_fetched("eng", [(1, m(1))]))
    expect_sends(core.on_store_head("eng", 5))
    expect_sends(core.start_feed("eng", 5))
    core.fetch_failed("eng")  # no feed: ignored


def test_fetch_failed_lets_the_head_check_ask_again() -> None:
    core = live_core(0, "a")
    expect_sends(core.on_store_head("general", 2), fetch=(1, 2))
    core.fetch_failed("general")
    expect_sends(core.on_store_head("general", 2), fetch=(1, 2))
    expect_sends(core.on_fetched("general", [(1, m(1)), (2, m(2))]), [(1, ["a"]), (2, ["a"])])


def test_the_head_check_waits_for_the_feed_to_start() -> None:
    core: FanoutCore[str, str] = FanoutCore()
    core.attach("a", "general", 0)
    expect_sends(core.on_store_head("general", 4))
    expect_sends(core.start_feed("general", 4))
    assert core.feeds["general"].head == 4


def test_a_live_connection_behind_the_feed_is_reported_for_fill() -> None:
    # NoRepairFeed (the ``no_bus_repair`` variant) delivers a jump when the bus lost a seq.
    core: FanoutCore[str, str] = FanoutCore(channel_feed=NoRepairFeed)
    core.attach("a", "general", 0)
    core.attach("b", "general", 0)
    core.start_feed("general", 0)
    assert core.try_go_live("a", "general") and core.try_go_live("b", "general")
    expect_sends(core.on_bus("general", 1, m(1)), [(1, ["a", "b"])])
    expect_sends(core.on_bus("general", 3, m(3)), [(3, [])], fill=["a", "b"])
    a = core.cursor("a", "general")
    assert a is not None and (a.seq, a.live) == (1, False)
    expect_sends(core.on_bus("general", 4, m(4)), [(4, [])], fill=[])  # filling: not again
    assert not core.try_go_live("a", "general")
    assert a.filled(2) and a.filled(3) and a.filled(4)
    assert core.try_go_live("a", "general")
    expect_sends(core.on_bus("general", 5, m(5)), [(5, ["a"])])


def test_connections_behind_are_reported_once_each_in_routing_order() -> None:
    # ints hash to themselves: a set would list 1 before 5, whatever joined first
    core: FanoutCore[int, str] = FanoutCore(channel_feed=NoRepairFeed)
    for conn in (5, 1, 3):
        core.attach(conn, "general", 0)
    core.start_feed("general", 0)
    for conn in (5, 1, 3):
        assert core.try_go_live(conn, "general")
    outcome = core.on_bus("general", 2, m(2))
    assert outcome.fill == [5, 1, 3]


# -- going live -----------------------------------------------------------------------------


def test_try_go_live_only_once_caught_up_with_the_feed() -> None:
    core: FanoutCore[str, str] = FanoutCore()
    assert not core.try_go_live("a", "general"), "not attached"
    core.attach("a", "general", 3)
    assert not core.try_go_live("a", "general"), "the feed has not started"
    core.start_feed("general", 5)
    assert not core.try_go_live("a", "general"), "4 and 5 still to page"
    cursor = core.cursor("a", "general")
    assert cursor is not None and cursor.filled(4)
    assert not core.try_go_live("a", "general")
    assert cursor.filled(5)
    assert core.try_go_live("a", "general")
    assert core.try_go_live("a", "general"), "stays live"
    expect_sends(core.on_bus("general", 6, m(6)), [(6, ["a"])])


def test_reset_channel_puts_every_connection_live_at_the_new_head() -> None:
    core = live_core(40, "a", "b")
    core.attach("c", "general", 12)  # still filling in the old numbering
    expect_sends(core.on_bus("general", 45, m(45)), fetch=(41, 44))
    assert core.reset_channel("general", 2) == ["a", "b", "c"]
    for conn in ("a", "b", "c"):
        cursor = core.cursor(conn, "general")
        assert cursor is not None and (cursor.seq, cursor.live) == (2, True), conn
    feed = core.feeds["general"]
    assert (feed.head, feed.pending, feed.fetching) == (2, {}, None)
    expect_sends(core.on_bus("general", 3, m(3)), [(3, ["a", "b", "c"])])
    assert core.reset_channel("nowhere", 7) == []


# -- property: a gateway's life, seeded ---------------------------------------------------


class GatewaySim:
    """The adapter's side, reduced to bookkeeping: a store, a lossy bus, connections joining
    at resume points, fetches and history pages answered in a seeded order."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.core: FanoutCore[str, str] = FanoutCore()
        self.store: dict[int, str] = {}
        self.delayed: list[int] = []
        self.fetch: tuple[int, int] | None = None
        self.feed_start_due = False
        self.filling: dict[str, None] = {}
        self.resume_at: dict[str, int] = {}
        self.received: dict[str, list[int]] = {}

    @property
    def head(self) -> int:
        return len(self.store)

    def apply(self, outcome: Outcome[str, str]) -> None:
        for seq, payload, recipients in outcome.sends:
            assert payload == self.store[seq], f"seed {self.seed}: payload of {seq}"
            for conn in recipients:
                self.received[conn].append(seq)
        if outcome.fetch is not None:
            assert self.fetch is None, f"seed {self.seed}: two fetches outstanding"
            self.fetch = outcome.fetch
        for conn in outcome.fill:
            self.filling[conn] = None

    def post(self) -> None:
        seq = self.head + 1
        self.store[seq] = m(seq)  # stored before published
        roll = self.rng.random()
        if roll < 0.2:
            return  # lost on the bus
        if roll < 0.35:
            self.delayed.append(seq)
            return
        self.apply(self.core.on_bus("general", seq, m(seq)))
        if roll < 0.45:
            self.delayed.append(seq)  # and again later: a duplicate

    def deliver_delayed(self) -> None:
        seq = self.delayed.pop(self.rng.randrange(len(self.delayed)))
        self.apply(self.core.on_bus("general", seq, m(seq)))

    def join(self, conn: str) -> None:
        resume = self.rng.randint(max(0, self.head - 40), self.head)
        self.resume_at[conn], self.received[conn] = resume, []
        if self.core.attach(conn, "general", resume):
            self.feed_start_due = True  # subscribed; the head read returns later
        self.filling[conn] = None

    def start_feed(self) -> None:
        self.feed_start_due = False
        self.apply(self.core.start_feed("general", self.head))

    def answer_fetch(self, may_fail: bool) -> None:
        assert self.fetch is not None
        first, last = self.fetch
        self.fetch = None
        if may_fail and self.rng.random() < 0.2:
            self.core.fetch_failed("general")
            return
        items = [(seq, self.store[seq]) for seq in range(first, last + 1)]
        self.apply(self.core.on_fetched("general", items))

    def fill_page(self, conn: str) -> None:
        """One page of history, then try to go live in the same step (no await between)."""
        if not self.core.feeds["general"].started:
            return
        cursor = self.core.cursor(conn, "general")
        assert cursor is not None
        for seq in range(cursor.seq + 1, min(cursor.seq + 5, self.head) + 1):
            if cursor.filled(seq):
                self.received[conn].append(seq)
        if self.core.try_go_live(conn, "general"):
            del self.filling[conn]

    def run(self, events: int, max_conns: int) -> None:
        for _ in range(10):
            self.post()  # history from before any member arrived
        joined = 0
        for _ in range(events):
            roll = self.rng.random()
            if roll < 0.45:
                self.post()
            elif roll < 0.55 and self.delayed:
                self.deliver_delayed()
            elif roll < 0.62 and joined < max_conns:
                self.join(f"c{joined}")
                joined += 1
            elif roll < 0.7 and self.feed_start_due:
                self.start_feed()
            elif roll < 0.8 and self.fetch is not None:
                self.answer_fetch(may_fail=True)
            elif roll < 0.85 and self.core.feeds:
                self.apply(self.core.on_store_head("general", self.head))
            elif self.filling:
                self.fill_page(self.rng.choice(list(self.filling)))
        self.drain()

    def drain(self) -> None:
        """No more posts: the bus empties, fetches succeed, the head check and gap-fill run."""
        while self.delayed:
            self.deliver_delayed()
        if self.feed_start_due:
            self.start_feed()
        for _ in range(10 * self.head):
            if self.fetch is not None:
                self.answer_fetch(may_fail=False)
            elif self.filling:
                self.fill_page(next(iter(self.filling)))
            else:
                self.apply(self.core.on_store_head("general", self.head))
                if self.fetch is None:
                    return
        raise AssertionError(f"seed {self.seed}: never settled")


@pytest.mark.parametrize("seed", range(30))
def test_every_connection_gets_every_seq_after_its_resume_point_once_in_order(
    seed: int,
) -> None:
    sim = GatewaySim(seed)
    sim.run(events=400, max_conns=6)
    assert sim.received, f"seed {seed}: nobody joined"
    for conn, got in sim.received.items():
        expected = list(range(sim.resume_at[conn] + 1, sim.head + 1))
        assert got == expected, f"seed {seed}: {conn} resumed at {sim.resume_at[conn]}"
        cursor = sim.core.cursor(conn, "general")
        assert cursor is not None and cursor.live, f"seed {seed}: {conn} never went live"
