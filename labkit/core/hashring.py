"""Channel ownership by consistent hashing: which server owns which channel.

Theory of operation
-------------------
Slack's channel servers each own a share of the channels; a gateway asks "who owns #general?"
and every gateway must get the same answer without asking anyone. Hashing the channel name
modulo the number of servers gives that answer, but when a server joins or leaves almost every
channel changes owner (``hash % 10`` and ``hash % 11`` agree for about one key in eleven), and
each move costs a hand-over.

A consistent-hash ring places every server at ``vnodes`` pseudo-random points on a circle of
64-bit numbers, and gives a key to the first point at or clockwise after the key's own hash. So:

- a server that joins takes over only the arcs that end at its new points: about ``K / (N + 1)``
  of ``K`` keys, all of them moving *to* the new server, none between old servers;
- a server that leaves hands only its own keys to its clockwise neighbours;
- many points per server (virtual nodes) even out the arc lengths, so each server's share is
  close to ``1 / N`` instead of anything from almost nothing to several times its due.

The hash is :func:`hash64` (BLAKE2b), never Python's ``hash()``: ``hash()`` of a string changes
from one process to the next (``PYTHONHASHSEED``), and two gateways that disagree on an owner
send the same channel to two servers. Equal hashes of two points are ordered by node name, so
the ring depends only on the set of nodes, not on the order they were added in.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable, Mapping

DEFAULT_VNODES = 100


def hash64(text: str) -> int:
    """A stable 64-bit hash of ``text``: the same in every process, on every machine."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


class HashRing:
    """Nodes on a hash ring, each at ``vnodes`` points; a key belongs to the next point clockwise.

    ``owner`` is O(log(N · vnodes)); ``add`` and ``remove`` rebuild the sorted point list,
    O(N · vnodes · log), which is fine for membership changes that happen a few times a day.
    """

    def __init__(self, nodes: Iterable[str] = (), vnodes: int = DEFAULT_VNODES) -> None:
        if vnodes < 1:
            raise ValueError(f"vnodes must be at least 1, got {vnodes!r}")
        self.vnodes = vnodes
        self._nodes: set[str] = set()
        self._points: list[tuple[int, str]] = []
        self._hashes: list[int] = []
        for node in nodes:
            self._nodes.add(node)
        self._rebuild()

    @property
    def nodes(self) -> tuple[str, ...]:
        """The nodes on the ring, sorted."""
        return tuple(sorted(self._nodes))

    def points_of(self, node: str) -> list[int]:
        """The ring positions of ``node``'s virtual nodes (for drawing the ring)."""
        return [hash64(f"{node}#{i}") for i in range(self.vnodes)]

    def add(self, node: str) -> None:
        """Put ``node`` on the ring; adding a node already there changes nothing."""
        if node in self._nodes:
            return
        self._nodes.add(node)
        self._rebuild()

    def remove(self, node: str) -> None:
        """Take ``node`` off the ring; its keys go to the next points clockwise.

        Raises ``KeyError`` if ``node`` is not on the ring.
        """
        if node not in self._nodes:
            raise KeyError(node)
        self._nodes.remove(node)
        self._rebuild()

    def owner(self, key: str) -> str:
        """The node that owns ``key``: the first point at or after ``hash64(key)``, wrapping.

        Raises ``LookupError`` when the ring is empty.
        """
        if not self._points:
            raise LookupError("the ring has no nodes")
        i = bisect.bisect_left(self._hashes, hash64(key))
        return self._points[i % len(self._points)][1]

    def owners(self, keys: Iterable[str]) -> dict[str, str]:
        """``{key: owner}`` for many keys (what a notebook compares before and after a change)."""
        return {key: self.owner(key) for key in keys}

    def __contains__(self, node: object) -> bool:
        return node in self._nodes

    def __len__(self) -> int:
        return len(self._nodes)

    def __repr__(self) -> str:
        return f"HashRing({list(self.nodes)!r}, vnodes={self.vnodes})"

    def _rebuild(self) -> None:
        self._points = sorted((p, node) for node in self._nodes for p in self.points_of(node))
        self._hashes = [p for p, _ in self._points]


def moved_keys(before: Mapping[str, str], after: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """Keys whose owner differs between two ``owners()`` maps: ``{key: (old, new)}``."""
    return {k: (before[k], after[k]) for k in before if k in after and before[k] != after[k]}


def ideal_moves(keys: int, nodes_after: int) -> float:
    """How many of ``keys`` keys must move, at least, when a node joins to make ``nodes_after``."""
    return keys / nodes_after if nodes_after else 0.0
