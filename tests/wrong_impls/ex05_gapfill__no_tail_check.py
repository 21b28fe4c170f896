"""Ignores the periodic store-head check: a lost message with nothing after it stays lost."""

from __future__ import annotations

from typing import Generic, TypeVar

from labkit.core.feed import Step

P = TypeVar("P")

EXERCISE = "ex05_gapfill"
MISTAKE = "a lost tail stays lost: the last message before a quiet period never arrives"
CAUGHT_BY = ("lost_tail", "lossy_bus")

MAX_FETCH = 1000


class ChannelFeed(Generic[P]):
    """Gap-free, duplicate-free, in-order delivery of one channel at one gateway."""

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.head: int | None = None
        self.known_head = 0
        self.pending: dict[int, P] = {}
        self.fetching: tuple[int, int] | None = None

    @property
    def started(self) -> bool:
        return self.head is not None

    def start(self, head: int) -> Step[P]:
        self.head = head
        self.known_head = max(self.known_head, head)
        for seq in [s for s in self.pending if s <= head]:
            del self.pending[seq]
        return self._advance()

    def reset(self, head: int) -> None:
        self.head = head
        self.known_head = head
        self.pending.clear()
        self.fetching = None

    def on_bus(self, seq: int, payload: P) -> Step[P]:
        self.known_head = max(self.known_head, seq)
        if (self.head is not None and seq <= self.head) or seq in self.pending:
            return Step()
        self.pending[seq] = payload
        return self._advance()

    def on_fetched(self, items: list[tuple[int, P]]) -> Step[P]:
        self.fetching = None
        for seq, payload in items:
            self.known_head = max(self.known_head, seq)
            if (self.head is None or seq > self.head) and seq not in self.pending:
                self.pending[seq] = payload
        return self._advance()

    def fetch_failed(self) -> None:
        self.fetching = None

    def on_store_head(self, head: int) -> Step[P]:
        return Step()  # "the bus will tell us when something is missing"

    def _advance(self) -> Step[P]:
        step: Step[P] = Step()
        if self.head is None:
            return step
        while self.head + 1 in self.pending:
            self.head += 1
            step.deliver.append((self.head, self.pending.pop(self.head)))
        if self.fetching is None and self.known_head > self.head:
            before_next = min(self.pending) - 1 if self.pending else self.known_head
            self.fetching = (self.head + 1, min(before_next, self.head + MAX_FETCH))
            step.fetch = self.fetching
        return step
