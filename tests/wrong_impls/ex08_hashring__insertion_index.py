"""Names virtual nodes by the node's position in the list instead of by the node's name."""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable

EXERCISE = "ex08_hashring"
MISTAKE = (
    "points are hashed from the node's index, so the ring depends on insertion order and a "
    "removal reshuffles"
)
CAUGHT_BY = ("order_independent", "leave_moves_own")


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


class HashRing:
    def __init__(self, nodes: Iterable[str] = (), vnodes: int = 100) -> None:
        self.vnodes = vnodes
        self._nodes: list[str] = []
        for node in nodes:
            if node not in self._nodes:
                self._nodes.append(node)
        self._rebuild()

    def add(self, node: str) -> None:
        if node not in self._nodes:
            self._nodes.append(node)
            self._rebuild()

    def remove(self, node: str) -> None:
        self._nodes.remove(node)
        self._rebuild()

    def owner(self, key: str) -> str:
        if not self._points:
            raise LookupError("no nodes")
        i = bisect.bisect_left(self._hashes, _hash(key)) % len(self._points)
        return self._points[i][1]

    def _rebuild(self) -> None:
        self._points = sorted(
            (_hash(f"server-{index}#{v}"), node)  # "node number index, replica v"
            for index, node in enumerate(self._nodes)
            for v in range(self.vnodes)
        )
        self._hashes = [h for h, _ in self._points]
