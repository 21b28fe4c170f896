"""Uses Python's built-in hash(), which is salted per process."""

from __future__ import annotations

import bisect
from collections.abc import Iterable

EXERCISE = "ex08_hashring"
MISTAKE = "two gateways (processes) disagree on owners: hash() of a str changes with PYTHONHASHSEED"
CAUGHT_BY = ("other_process",)


def _hash(text: str) -> int:
    return hash(text) & 0xFFFFFFFFFFFFFFFF  # "hash() is fast and built in"


class HashRing:
    """Nodes on a hash ring at ``vnodes`` points each; a key is owned by the next point."""

    def __init__(self, nodes: Iterable[str] = (), vnodes: int = 100) -> None:
        if vnodes < 1:
            raise ValueError(f"vnodes must be at least 1, got {vnodes!r}")
        self.vnodes = vnodes
        self._nodes: set[str] = set(nodes)
        self._points: list[tuple[int, str]] = []
        self._hashes: list[int] = []
        self._rebuild()

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(sorted(self._nodes))

    def add(self, node: str) -> None:
        if node not in self._nodes:
            self._nodes.add(node)
            self._rebuild()

    def remove(self, node: str) -> None:
        self._nodes.remove(node)  # KeyError for a node that is not on the ring
        self._rebuild()

    def owner(self, key: str) -> str:
        if not self._points:
            raise LookupError("the ring has no nodes")
        i = bisect.bisect_left(self._hashes, _hash(key))
        return self._points[i % len(self._points)][1]

    def _rebuild(self) -> None:
        self._points = sorted(
            (_hash(f"{node}#{i}"), node) for node in self._nodes for i in range(self.vnodes)
        )
        self._hashes = [h for h, _ in self._points]
