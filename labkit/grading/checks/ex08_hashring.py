"""Checks for ex08_hashring: channel ownership by consistent hashing.

The budget here is movement: when a server joins a ring of N, the ideal is that ``K / (N + 1)``
of K channels move, all of them to the newcomer; the checks allow 1.5 times that. When a server
leaves, only its own channels may move. Balance (each server's share near ``1 / N``) is what the
virtual nodes buy, and agreement between processes is what a stable hash buys.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import labkit
from labkit.grading.framework import CheckList, Failure, expect, need, show

checks = CheckList()

MOVE_BUDGET = 1.5
"""Keys moved when a node joins, at most this many times the ideal ``K / (N + 1)``."""
BALANCE = (0.5, 1.6)
"""Each node's share of the keys, relative to a fair ``K / N``, with 100 virtual nodes."""


def _ring(module: ModuleType, nodes: list[str], vnodes: int | None = None) -> Any:
    cls = need(module, "HashRing")
    return cls(list(nodes)) if vnodes is None else cls(list(nodes), vnodes=vnodes)


def _keys(count: int, rng: random.Random | None = None) -> list[str]:
    if rng is None:
        return [f"channel-{i}" for i in range(count)]
    return [f"ch-{rng.randrange(10**9):09d}" for _ in range(count)]


def _nodes(count: int, rng: random.Random) -> list[str]:
    names: dict[str, None] = {}
    while len(names) < count:
        names[f"srv-{rng.randrange(10**6)}"] = None
    return list(names)


def _owners(ring: Any, keys: list[str]) -> dict[str, str]:
    return {key: ring.owner(key) for key in keys}


def _expect_same(before: dict[str, str], after: dict[str, str], what: str) -> None:
    changed = [k for k in before if before[k] != after[k]]
    expect(
        not changed,
        what,
        f"{len(changed)} of {len(before)} keys changed owner, e.g. {changed[0]!r}:"
        f" {before[changed[0]]!r} → {after[changed[0]]!r}"
        if changed
        else "",
    )


@checks.add("every key has one owner among the nodes, the same every time it is asked")
def check_owner_valid(module: ModuleType, rng: random.Random) -> None:
    nodes = ["srv-a", "srv-b", "srv-c", "srv-d", "srv-e"]
    ring = _ring(module, nodes)
    keys = _keys(2000)
    first = _owners(ring, keys)
    strangers = {k: o for k, o in first.items() if o not in nodes}
    expect(
        not strangers,
        f"every owner to be one of {nodes}",
        f"owner({next(iter(strangers), '')!r}) is {show(next(iter(strangers.values()), ''))}",
    )
    _expect_same(first, _owners(ring, keys), "asking twice to give the same owners")
    _expect_same(
        first,
        _owners(_ring(module, nodes), keys),
        "a second ring with the same nodes to give the same owners",
    )
    used = Counter(first.values())
    expect(
        len(used) == len(nodes),
        "2000 keys to be spread over all 5 nodes",
        f"only {sorted(used)} own any",
    )


@checks.add("an empty ring raises LookupError instead of inventing an owner")
def check_empty_ring(module: ModuleType, rng: random.Random) -> None:
    ring = _ring(module, [])
    try:
        got = ring.owner("general")
    except LookupError:
        pass
    else:
        raise Failure(
            "owner('general') on a ring with no nodes to raise LookupError", f"it returned {got!r}"
        )
    ring = _ring(module, ["srv-a"])
    ring.remove("srv-a")
    try:
        got = ring.owner("general")
    except LookupError:
        return
    raise Failure(
        "owner() on a ring whose only node was removed to raise LookupError", f"it returned {got!r}"
    )


@checks.add("owners depend on the set of nodes, not on the order they were given or added")
def check_order_independent(module: ModuleType, rng: random.Random) -> None:
    nodes = _nodes(8, rng)
    keys = _keys(2000)
    base = _owners(_ring(module, nodes), keys)
    shuffled = nodes[:]
    rng.shuffle(shuffled)
    _expect_same(
        base,
        _owners(_ring(module, shuffled), keys),
        f"HashRing({shuffled}) to agree with HashRing({nodes}) on every key",
    )
    grown = _ring(module, [])
    for node in reversed(nodes):
        grown.add(node)
    _expect_same(
        base,
        _owners(grown, keys),
        "a ring built with add(), in another order, to agree on every key",
    )


_PROBE = r"""
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("_labkit_ring_probe", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
data = json.load(sys.stdin)
ring = module.HashRing(data["nodes"])
print(json.dumps([ring.owner(key) for key in data["keys"]]))
"""


@checks.add(
    "two processes agree on every owner (a stable hash, not Python's hash())", time_limit_s=30
)
def check_other_process(module: ModuleType, rng: random.Random) -> None:
    file = getattr(module, "__file__", None)
    if not file:
        return  # an in-memory module: nothing to start elsewhere
    nodes = ["gw-1", "gw-2", "gw-3", "gw-4"]
    keys = _keys(300)
    here = _owners(_ring(module, nodes), keys)
    paths = [
        str(Path(labkit.__file__).resolve().parent.parent),
        str(Path(file).resolve().parents[1]),
    ]
    answers = []
    procs = []
    for hashseed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hashseed)
        env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")])
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", _PROBE, file],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
        )
    for proc in procs:
        out, err = proc.communicate(json.dumps({"nodes": nodes, "keys": keys}), timeout=25)
        if proc.returncode != 0:
            last = (err.strip().splitlines() or ["?"])[-1]
            raise Failure("the ring to work in a fresh Python process", f"it failed: {last}")
        answers.append(dict(zip(keys, json.loads(out), strict=True)))
    for other in answers:
        changed = [k for k in keys if here[k] != other[k]]
        expect(
            not changed,
            "every process (gateway) to compute the same owner for every key",
            f"a process with another PYTHONHASHSEED disagreed on {len(changed)} of"
            f" {len(keys)} keys (Python's hash() of a str changes from one process to the"
            " next: use hashlib)",
        )


@checks.add("with 100 virtual nodes each, every node owns close to its fair share", randomized=True)
def check_balanced(module: ModuleType, rng: random.Random) -> None:
    keys = _keys(10_000)
    lo, hi = BALANCE
    for _ in range(3):
        nodes = _nodes(10, rng)
        counts = Counter(_owners(_ring(module, nodes, vnodes=100), keys).values())
        fair = len(keys) / len(nodes)
        shares = {n: counts.get(n, 0) / fair for n in nodes}
        worst_lo = min(shares, key=lambda n: shares[n])
        worst_hi = max(shares, key=lambda n: shares[n])
        expect(
            shares[worst_lo] >= lo and shares[worst_hi] <= hi,
            f"each of 10 nodes to own between {lo:g} and {hi:g} times its fair share of"
            f" {len(keys)} keys",
            f"{worst_hi} owns {shares[worst_hi]:.2f}× and {worst_lo}"
            f" {shares[worst_lo]:.2f}× its fair share (are the virtual nodes spread out?)",
        )


@checks.add(
    f"a joining node takes keys only for itself, at most {MOVE_BUDGET:g}× the ideal"
    " K/(N+1) (budget)",
    randomized=True,
)
def check_join_moves_little(module: ModuleType, rng: random.Random) -> None:
    keys = _keys(10_000, rng)
    nodes = _nodes(11, rng)
    ring = _ring(module, nodes[:10])
    before = _owners(ring, keys)
    ring.add(nodes[10])
    after = _owners(ring, keys)
    moved = [k for k in keys if before[k] != after[k]]
    astray = [k for k in moved if after[k] != nodes[10]]
    expect(
        not astray,
        f"every key that moves to go to the new node {nodes[10]!r}",
        f"{len(astray)} keys moved between old nodes, e.g. {astray[0]!r}:"
        f" {before[astray[0]]!r} → {after[astray[0]]!r}"
        if astray
        else "",
    )
    ideal = len(keys) / 11
    expect(
        len(moved) <= MOVE_BUDGET * ideal,
        f"at most {MOVE_BUDGET * ideal:.0f} of {len(keys)} keys to move (ideal {ideal:.0f})",
        f"{len(moved)} moved ({len(moved) / ideal:.1f}× the ideal)",
    )
    expect(len(moved) > 0, "the new node to take some keys", "it took none")


@checks.add("a leaving node hands over only its own keys, spread over the others")
def check_leave_moves_own(module: ModuleType, rng: random.Random) -> None:
    keys = _keys(10_000)
    nodes = [f"srv-{i}" for i in range(1, 11)]
    ring = _ring(module, nodes)
    before = _owners(ring, keys)
    ring.remove("srv-4")
    after = _owners(ring, keys)
    moved = [k for k in keys if before[k] != after[k]]
    wrong = [k for k in moved if before[k] != "srv-4"]
    expect(
        not wrong,
        "only the keys of the removed srv-4 to move",
        f"{len(wrong)} other keys moved, e.g. {wrong[0]!r}: {before[wrong[0]]!r} →"
        f" {after[wrong[0]]!r}"
        if wrong
        else "",
    )
    own = [k for k in keys if before[k] == "srv-4"]
    expect(len(moved) == len(own), f"all {len(own)} keys of srv-4 to move", f"{len(moved)} moved")
    heirs = Counter(after[k] for k in own)
    top, top_count = heirs.most_common(1)[0] if heirs else ("?", 0)
    expect(
        top_count <= 0.5 * len(own),
        "srv-4's keys to spread over several nodes (its virtual nodes have different neighbours)",
        f"{top} inherited {top_count} of {len(own)}: one neighbour's load"
        " doubles when a node fails",
    )


@checks.add("adding then removing a node (or the reverse) restores every owner")
def check_roundtrip(module: ModuleType, rng: random.Random) -> None:
    keys = _keys(3000)
    nodes = ["srv-a", "srv-b", "srv-c", "srv-d"]
    ring = _ring(module, nodes)
    base = _owners(ring, keys)
    ring.add("srv-e")
    ring.remove("srv-e")
    _expect_same(base, _owners(ring, keys), "add('srv-e') then remove('srv-e') to change nothing")
    ring.remove("srv-b")
    ring.add("srv-b")
    _expect_same(base, _owners(ring, keys), "remove('srv-b') then add('srv-b') to change nothing")


@checks.add("adding a node that is already on the ring changes nothing")
def check_add_existing(module: ModuleType, rng: random.Random) -> None:
    keys = _keys(3000)
    ring = _ring(module, ["srv-a", "srv-b", "srv-c"])
    base = _owners(ring, keys)
    ring.add("srv-b")
    _expect_same(
        base, _owners(ring, keys), "add('srv-b') when srv-b is already there to change no owner"
    )
    ring.remove("srv-b")
    gone = [k for k in keys if ring.owner(k) == "srv-b"]
    expect(
        not gone,
        "remove('srv-b') to take srv-b off the ring entirely",
        f"{len(gone)} keys are still owned by srv-b (was it added twice?)",
    )


@checks.add(
    "random joins and leaves: only the changed node's keys move, near the ideal (budget)",
    randomized=True,
)
def check_random_changes(module: ModuleType, rng: random.Random) -> None:
    keys = _keys(5000, rng)
    pool = _nodes(16, rng)
    members = pool[: rng.randint(4, 8)]
    ring = _ring(module, members)
    before = _owners(ring, keys)
    history: list[str] = []
    for _ in range(8):
        outside = [n for n in pool if n not in members]
        joining = len(members) <= 3 or (outside and rng.random() < 0.5)
        node = rng.choice(outside) if joining else rng.choice(members)
        if joining:
            ring.add(node)
            members.append(node)
        else:
            ring.remove(node)
            members.remove(node)
        history.append(f"{'add' if joining else 'remove'}({node!r})")
        after = _owners(ring, keys)
        moved = [k for k in keys if before[k] != after[k]]
        if joining:
            astray = [k for k in moved if after[k] != node]
            ideal = len(keys) / len(members)
            ok = not astray and len(moved) <= MOVE_BUDGET * ideal
            detail = f"{len(moved)} keys moved ({len(astray)} of them not to {node!r})"
        else:
            astray = [k for k in moved if before[k] != node]
            ideal = sum(1 for k in keys if before[k] == node)
            ok = not astray and len(moved) == ideal
            detail = f"{len(moved)} keys moved ({len(astray)} of them not from {node!r})"
        expect(
            ok,
            f"after {'; '.join(history)}: only keys {'to' if joining else 'from'}"
            f" {node!r} to move, about {ideal:.0f}",
            detail,
        )
        before = after


EXERCISE = checks.exercise(
    "ex08_hashring",
    "channel ownership by consistent hashing, with minimal movement when servers join or leave",
)
