"""What every benchmark gets from the runner: where to write, how big to run, what to include."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from labkit.bench.progress import Progress


class Skip(Exception):
    """A benchmark or a peer cannot run here; the message says why (it is reported, not hidden)."""


@dataclass
class Context:
    out: Path
    quick: bool = False
    peers: bool = True
    profile: bool = False
    repeat: int = 3

    @property
    def logs(self) -> Path:
        return self.out / "logs"

    def size(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    def progress(self, label: str, total: float) -> Progress:
        return Progress(label, total)
