"""Turning an at-most-once bus into a gap-free, ordered stream: one feed per gateway and channel.

Theory of operation
-------------------
Redis pub/sub may lose a message (a subscriber reconnecting, a network blip, a fault injected on
purpose), deliver one twice (a fault) or, with fault injection, out of order. The message
server stores every message *before* publishing it, so the store is the truth and the bus is only
a fast hint. A ``ChannelFeed`` keeps ``head``, the highest seq it has delivered, and obeys four
rules:

1. ``seq <= head``: a duplicate, dropped.
2. ``seq == head + 1``: delivered, then every buffered successor that is now contiguous.
3. ``seq > head + 1``: buffered; the missing range ``head + 1 .. seq - 1`` is fetched from the
   store, and the buffered message waits until the range arrives (``on_fetched``).
4. A periodic look at the store's head (``on_store_head``) catches a *lost tail*: a message with
   nothing after it, which rule 3 can never notice.

Until ``start(head)`` tells the feed where the channel stands, everything is buffered: the
gateway subscribes first and reads the head second, so nothing published in between is lost.

The feed does no I/O. Each method returns a :class:`Step`: what to deliver now, in order, and
which range (if any) the caller should fetch and hand back through ``on_fetched``. At most one
fetch is outstanding; call ``fetch_failed`` if it could not be done, and the next event retries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

P = TypeVar("P")

MAX_FETCH = 1000
"""Largest range asked for in one fetch, so a long outage is repaired page by page."""


@dataclass(slots=True)
class Step(Generic[P]):
    """The outcome of one event: deliver these ``(seq, payload)`` now, then fetch this range."""

    deliver: list[tuple[int, P]] = field(default_factory=list)
    fetch: tuple[int, int] | None = None
    """Inclusive ``(first, last)`` seqs to read from the store, or None."""


@dataclass(slots=True)
class FeedStats:
    delivered: int = 0
    duplicates: int = 0
    repaired: int = 0
    """Messages delivered from a store fetch rather than from the bus."""
    fetches: int = 0


class ChannelFeed(Generic[P]):
    """Gap-free, duplicate-free, in-order delivery of one channel at one gateway."""

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.head: int | None = None
        """Highest seq delivered; None until ``start``."""
        self.known_head = 0
        """Highest seq known to exist (seen on the bus or in the store)."""
        self.pending: dict[int, P] = {}
        self.fetching: tuple[int, int] | None = None
        self.stats = FeedStats()

    @property
    def started(self) -> bool:
        return self.head is not None

    def start(self, head: int) -> Step[P]:
        """The store's head, read *after* subscribing: deliver what came after it."""
        self.head = head
        self.known_head = max(self.known_head, head)
        for seq in [s for s in self.pending if s <= head]:
            del self.pending[seq]
        return self._advance(Step())

    def reset(self, head: int) -> None:
        """The channel's epoch changed: its numbering restarted, forget everything."""
        self.head = head
        self.known_head = head
        self.pending.clear()
        self.fetching = None

    def on_bus(self, seq: int, payload: P) -> Step[P]:
        """A message arrived from the bus (possibly late, twice, or after a loss)."""
        self.known_head = max(self.known_head, seq)
        if (self.head is not None and seq <= self.head) or seq in self.pending:
            self.stats.duplicates += 1
            return Step()
        self.pending[seq] = payload
        return self._advance(Step())

    def on_fetched(self, items: list[tuple[int, P]]) -> Step[P]:
        """The range asked for in the last ``Step.fetch`` was read from the store."""
        self.fetching = None
        step: Step[P] = Step()
        for seq, payload in items:
            self.known_head = max(self.known_head, seq)
            if (self.head is None or seq > self.head) and seq not in self.pending:
                self.pending[seq] = payload
                self.stats.repaired += 1
        return self._advance(step)

    def fetch_failed(self) -> None:
        """The store could not be read; the next event (or head check) asks again."""
        self.fetching = None

    def on_store_head(self, head: int) -> Step[P]:
        """The periodic head check: a store head above ours means a lost tail."""
        self.known_head = max(self.known_head, head)
        return self._advance(Step())

    def _advance(self, step: Step[P]) -> Step[P]:
        if self.head is None:
            return step
        while self.head + 1 in self.pending:
            self.head += 1
            step.deliver.append((self.head, self.pending.pop(self.head)))
        self.stats.delivered += len(step.deliver)
        if self.fetching is None and self.known_head > self.head:
            later = min(self.pending) - 1 if self.pending else self.known_head
            last = min(later, self.head + MAX_FETCH)
            self.fetching = (self.head + 1, last)
            self.stats.fetches += 1
            step.fetch = self.fetching
        return step
