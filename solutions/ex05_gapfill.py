"""Exercise 5, solved: the gateway's gap-fill merge of store history and live bus messages.

The whole design is one number and two maps: ``head`` (the highest seq delivered), ``pending``
(messages that arrived early, by seq) and at most one outstanding fetch. Every event adds what
it brings to ``pending`` unless it is at or below ``head`` (a duplicate), then ``_advance``
delivers the contiguous run after ``head`` and, if something is still missing, asks for exactly
the hole: from ``head + 1`` up to just before the first buffered message (or up to the highest
seq known to exist, for a lost tail), at most ``MAX_FETCH`` at a time.

Because a fetched message and its late bus copy go through the same ``pending`` map and the same
``head`` test, whichever arrives second is dropped: the backfill race cannot duplicate.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from labkit.core.feed import Step

P = TypeVar("P")

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
        self.known_head = max(self.known_head, head)
        return self._advance()

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
