"""What a client saw, as plain data: shared by the client, simulator, checker and widgets.

Every client (the real asyncio one and the simulated one) appends a :class:`FrameRecord` for
each frame it sends or receives and for each connection it opens or loses. The invariant
checker reads these records, never the clients themselves, so a run can be saved as JSON lines,
replayed in a widget, or checked after the fact.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Kind = Literal["in", "out", "open", "close"]


@dataclass(frozen=True, slots=True)
class FrameRecord:
    """One thing that happened to one client."""

    t: float
    """When it happened, by the recording clock (wall clock live, virtual time in the simulator)."""
    client: str
    """The client's name, unique within a run, e.g. ``"alice#1"``."""
    user: str
    session: int
    """Counts the client's connections: 1 for the first, 2 after the first reconnect, …"""
    kind: Kind
    """``in``: a frame received; ``out``: a frame sent; ``open``: a ``welcome`` made the
    connection usable; ``close``: the connection ended (``frame`` holds ``code`` and ``reason``)."""
    frame: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Recording:
    """An append-only list of records, with the few queries every reader needs."""

    records: list[FrameRecord] = field(default_factory=list)

    def add(self, record: FrameRecord) -> None:
        self.records.append(record)

    def extend(self, records: Iterable[FrameRecord]) -> None:
        self.records.extend(records)

    def __iter__(self) -> Iterator[FrameRecord]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)

    def clients(self) -> list[str]:
        return sorted({r.client for r in self.records})

    def received(self, client: str | None = None, type: str | None = None) -> list[FrameRecord]:
        """Frames received, optionally of one client and one frame type, in recording order."""
        return [
            r
            for r in self.records
            if r.kind == "in"
            and (client is None or r.client == client)
            and (type is None or r.frame.get("type") == type)
        ]

    def to_jsonl(self) -> str:
        return "".join(json.dumps(asdict(r), separators=(",", ":")) + "\n" for r in self.records)

    @classmethod
    def from_jsonl(cls, text: str) -> Recording:
        return cls([FrameRecord(**json.loads(line)) for line in text.splitlines() if line.strip()])
