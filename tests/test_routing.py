"""The routing table: who is routed where, and exactly when to subscribe and unsubscribe."""

from __future__ import annotations

import random

import pytest

from labkit.core.routing import RoutingTable


def test_add_says_subscribe_only_for_the_first_connection_of_a_channel() -> None:
    table: RoutingTable[str] = RoutingTable()
    assert table.add("a", "general") is True, "first local member: subscribe"
    assert table.add("b", "general") is False
    assert table.add("a", "general") is False, "adding twice is not a new first member"
    assert table.add("b", "eng") is True
    assert table.connections("general") == ["a", "b"]
    assert table.channels_of("b") == ["general", "eng"]
    assert len(table) == 2


def test_remove_says_unsubscribe_only_when_the_last_connection_goes() -> None:
    table: RoutingTable[str] = RoutingTable()
    table.add("a", "general")
    table.add("b", "general")
    assert table.remove("a", "general") is False, "b is still routed"
    assert table.remove("a", "general") is False, "removing twice is no unsubscribe moment"
    assert table.remove("b", "general") is True, "last local member gone: unsubscribe"
    assert table.remove("b", "general") is False
    assert table.channels() == []
    assert len(table) == 0


def test_remove_of_an_unrouted_pair_changes_nothing() -> None:
    table: RoutingTable[str] = RoutingTable()
    table.add("a", "general")
    assert table.remove("b", "general") is False
    assert table.remove("a", "eng") is False
    assert table.connections("general") == ["a"]
    assert table.channels_of("a") == ["general"]
    assert table.has("a", "general") and not table.has("a", "eng")


def test_remove_connection_returns_exactly_the_channels_it_emptied() -> None:
    table: RoutingTable[str] = RoutingTable()
    for channel in ("general", "eng", "random"):
        table.add("a", channel)
    table.add("b", "eng")
    assert table.remove_connection("a") == ["general", "random"]
    assert table.channels() == ["eng"]
    assert table.channels_of("a") == [] and not table.has("a", "eng")
    assert table.connections("eng") == ["b"]
    assert table.remove_connection("a") == [], "an unknown connection empties nothing"
    assert table.remove_connection("b") == ["eng"]
    assert len(table) == 0


def test_iteration_follows_insertion_order_not_hashing() -> None:
    table: RoutingTable[str] = RoutingTable()
    for conn in ("zed", "amy", "kim"):
        table.add(conn, "general")
    for channel in ("zulu", "alpha", "mike"):
        table.add("amy", channel)
    assert table.connections("general") == ["zed", "amy", "kim"], "oldest first"
    assert table.channels_of("amy") == ["general", "zulu", "alpha", "mike"]
    assert table.channels() == ["general", "zulu", "alpha", "mike"]
    table.remove("zed", "general")
    table.add("zed", "general")
    assert table.connections("general") == ["amy", "kim", "zed"], "a re-added one is newest"


def test_connections_is_a_copy_safe_to_change_the_table_under() -> None:
    table: RoutingTable[str] = RoutingTable()
    table.add("a", "general")
    table.add("b", "general")
    emptied = [conn for conn in table.connections("general") if table.remove(conn, "general")]
    assert emptied == ["b"]
    assert table.connections("nowhere") == []


def test_add_all_subscribes_in_sorted_order_and_only_to_new_channels() -> None:
    table: RoutingTable[str] = RoutingTable()
    table.add("b", "general")
    assert table.add_all("a", {"random", "general", "eng"}) == ["eng", "random"]
    assert table.channels_of("a") == ["eng", "general", "random"]


@pytest.mark.parametrize("seed", range(25))
def test_random_adds_and_removes_agree_with_a_simple_model(seed: int) -> None:
    rng = random.Random(seed)
    conns = [f"c{i}" for i in range(5)]
    channel_names = [f"ch{i}" for i in range(4)]
    table: RoutingTable[str] = RoutingTable()
    model: dict[str, set[str]] = {ch: set() for ch in channel_names}
    subscribed: dict[str, bool] = dict.fromkeys(channel_names, False)

    def subscribe(channel: str, step: int) -> None:
        assert not subscribed[channel], f"seed {seed} step {step}: #{channel} subscribed twice"
        subscribed[channel] = True

    def unsubscribe(channel: str, step: int) -> None:
        assert subscribed[channel], f"seed {seed} step {step}: #{channel} unsubscribed twice"
        subscribed[channel] = False

    for step in range(400):
        conn, channel = rng.choice(conns), rng.choice(channel_names)
        roll = rng.random()
        if roll < 0.5:
            was_empty = not model[channel]
            if table.add(conn, channel):
                subscribe(channel, step)
            else:
                assert not was_empty, f"seed {seed} step {step}: missed a subscribe"
            model[channel].add(conn)
        elif roll < 0.9:
            empties = model[channel] == {conn}
            if table.remove(conn, channel):
                unsubscribe(channel, step)
            else:
                assert not empties, f"seed {seed} step {step}: missed an unsubscribe"
            model[channel].discard(conn)
        else:
            expected = [ch for ch in table.channels_of(conn) if model[ch] == {conn}]
            emptied = table.remove_connection(conn)
            assert emptied == expected, f"seed {seed} step {step}"
            for ch in emptied:
                unsubscribe(ch, step)
            for members in model.values():
                members.discard(conn)

        nonempty = {ch for ch, members in model.items() if members}
        assert set(table.channels()) == nonempty, f"seed {seed} step {step}"
        assert {ch for ch, on in subscribed.items() if on} == nonempty, f"seed {seed} step {step}"
        for ch, members in model.items():
            assert set(table.connections(ch)) == members, f"seed {seed} step {step} #{ch}"
        for c in conns:
            routed = {ch for ch, members in model.items() if c in members}
            assert set(table.channels_of(c)) == routed, f"seed {seed} step {step} {c}"
        routed_conns = {c for members in model.values() for c in members}
        assert len(table) == len(routed_conns), f"seed {seed} step {step}"
