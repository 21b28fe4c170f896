"""Hashes modulo the number of nodes instead of using a ring."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

EXERCISE = "ex08_hashring"
MISTAKE = "hash(key) % N: adding one server moves almost every channel"
CAUGHT_BY = ("join_moves_little", "leave_moves_own", "random_changes")


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


class HashRing:
    def __init__(self, nodes: Iterable[str] = (), vnodes: int = 100) -> None:
        self._nodes = sorted(set(nodes))

    def add(self, node: str) -> None:
        if node not in self._nodes:
            self._nodes = sorted([*self._nodes, node])

    def remove(self, node: str) -> None:
        self._nodes.remove(node)

    def owner(self, key: str) -> str:
        if not self._nodes:
            raise LookupError("no nodes")
        return self._nodes[_hash(key) % len(self._nodes)]
