"""The reference consistent-hash ring (``labkit.core.hashring``) that the notebooks draw."""

from __future__ import annotations

import random
from collections import Counter

import pytest

import labkit.core.hashring as hashring_module
from labkit.core.hashring import HashRing, hash64, ideal_moves, moved_keys
from labkit.grading import grade_module

KEYS = [f"channel-{i}" for i in range(10_000)]


def test_hash64_is_stable_and_64_bit() -> None:
    # Pinned: two gateways, two machines, two Python versions must agree.
    assert hash64("general") == int.from_bytes(
        __import__("hashlib").blake2b(b"general", digest_size=8).digest(), "big"
    )
    assert hash64("general") == hash64("general")
    assert 0 <= hash64("x") < 2**64
    assert hash64("a") != hash64("b")


def test_owner_is_one_of_the_nodes_and_deterministic() -> None:
    ring = HashRing(["srv-a", "srv-b", "srv-c"])
    owners = ring.owners(KEYS[:2000])
    assert set(owners.values()) == {"srv-a", "srv-b", "srv-c"}
    assert owners == HashRing(["srv-c", "srv-a", "srv-b"]).owners(KEYS[:2000])


def test_membership_operations() -> None:
    ring = HashRing(vnodes=10)
    assert len(ring) == 0 and ring.nodes == ()
    with pytest.raises(LookupError):
        ring.owner("general")
    ring.add("srv-b")
    ring.add("srv-a")
    ring.add("srv-a")  # already there: no change
    assert ring.nodes == ("srv-a", "srv-b") and len(ring) == 2
    assert "srv-a" in ring and "srv-z" not in ring
    assert repr(ring) == "HashRing(['srv-a', 'srv-b'], vnodes=10)"
    with pytest.raises(KeyError):
        ring.remove("srv-z")
    ring.remove("srv-a")
    assert ring.owner("general") == "srv-b"
    assert len(ring.points_of("srv-b")) == 10
    with pytest.raises(ValueError):
        HashRing(vnodes=0)


def test_a_joining_node_takes_about_its_share_and_only_for_itself() -> None:
    rng = random.Random(7)
    nodes = [f"srv-{rng.randrange(10**6)}" for _ in range(10)]
    ring = HashRing(nodes)
    before = ring.owners(KEYS)
    ring.add("srv-new")
    after = ring.owners(KEYS)
    moved = moved_keys(before, after)
    assert all(new == "srv-new" for _, new in moved.values())
    assert 0.5 * ideal_moves(len(KEYS), 11) < len(moved) <= 1.5 * ideal_moves(len(KEYS), 11)


def test_a_leaving_node_hands_over_only_its_keys_spread_out() -> None:
    ring = HashRing([f"srv-{i}" for i in range(10)])
    before = ring.owners(KEYS)
    ring.remove("srv-3")
    moved = moved_keys(before, ring.owners(KEYS))
    assert {old for old, _ in moved.values()} == {"srv-3"}
    assert len(moved) == sum(1 for o in before.values() if o == "srv-3")
    heirs = Counter(new for _, new in moved.values())
    assert len(heirs) >= 5 and max(heirs.values()) <= 0.5 * len(moved)


def test_virtual_nodes_balance_the_shares() -> None:
    nodes = [f"srv-{i}" for i in range(10)]
    counts = Counter(HashRing(nodes).owners(KEYS).values())
    fair = len(KEYS) / len(nodes)
    assert all(0.6 * fair <= counts[n] <= 1.4 * fair for n in nodes), counts


def test_helpers() -> None:
    assert moved_keys({"a": "x", "b": "y"}, {"a": "x", "b": "z"}) == {"b": ("y", "z")}
    assert ideal_moves(1000, 10) == 100
    assert ideal_moves(1000, 0) == 0


def test_the_reference_passes_the_exercise_checks() -> None:
    result = grade_module("ex08_hashring", hashring_module, seed=3)
    assert result.complete, result.render()
