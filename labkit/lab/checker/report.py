"""What the checker hands back: each broken guarantee as a :class:`Violation`, in a
:class:`Report` with the run's counts, printed the way Jepsen and Maelstrom print theirs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

KINDS: tuple[str, ...] = (
    "store_gap",
    "store_duplicate",
    "duplicate",
    "out_of_order",
    "gap",
    "not_delivered",
    "acked_missing",
    "order_mismatch",
)
"""Every violation kind, in the order a report lists them."""

MAX_SHOWN_PER_KIND = 20


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken guarantee."""

    kind: str
    """One of :data:`KINDS`."""
    client: str | None
    """The client that saw it (None for a fault of the store itself)."""
    user: str | None
    channel: str
    seq: int | None
    """The seq at fault: the first missing one for a ``gap``."""
    detail: str
    """A plain sentence a student can read without the code open."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "client": self.client,
            "user": self.user,
            "channel": self.channel,
            "seq": self.seq,
            "detail": self.detail,
        }


@dataclass
class Report:
    """What :func:`check` found, with the run's counts."""

    violations: list[Violation]
    messages_checked: int
    """Messages in the store."""
    posts_acked: int
    """Distinct posts (user, id) that got an ``ack``."""
    deliveries: int
    """``message`` frames received by all clients together."""
    faults: dict[str, int] = field(default_factory=dict)
    bus_messages_per_post: float | None = None
    latency: dict[str, float] = field(default_factory=dict)
    """``p50``, ``p95``, ``p99``, ``max`` seconds from a message's ``ts`` to its receipt."""

    @property
    def ok(self) -> bool:
        return not self.violations

    def by_kind(self) -> dict[str, list[Violation]]:
        """Violations grouped by kind, kinds in :data:`KINDS` order."""
        groups: dict[str, list[Violation]] = {}
        order = {kind: i for i, kind in enumerate(KINDS)}
        for v in sorted(self.violations, key=lambda v: order.get(v.kind, len(KINDS))):
            groups.setdefault(v.kind, []).append(v)
        return groups

    def render(self) -> str:
        """A readable multi-line report, Jepsen style."""
        lines = [f":valid? {'true' if self.ok else 'false'}"]
        lines.append(f":messages-checked {self.messages_checked}")
        lines.append(f":posts-acked {self.posts_acked}")
        lines.append(f":deliveries {self.deliveries}")
        if self.bus_messages_per_post is not None:
            lines.append(f":bus-messages-per-post {self.bus_messages_per_post:.2f}")
        if self.latency:
            inner = " ".join(f":{k} {v * 1000:.1f}ms" for k, v in self.latency.items())
            lines.append(f":latency {{{inner}}}")
        if self.faults:
            inner = " ".join(f":{k} {v}" for k, v in sorted(self.faults.items()))
            lines.append(f":faults {{{inner}}}")
        lines.append(f":violations {len(self.violations)}")
        for kind, group in self.by_kind().items():
            lines.append(f"  :{kind} {len(group)}")
            for v in group[:MAX_SHOWN_PER_KIND]:
                lines.append(f"    - {v.detail}")
            if len(group) > MAX_SHOWN_PER_KIND:
                lines.append(f"    ... and {len(group) - MAX_SHOWN_PER_KIND} more")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "valid": self.ok,
            "messages_checked": self.messages_checked,
            "posts_acked": self.posts_acked,
            "deliveries": self.deliveries,
            "faults": dict(self.faults),
            "bus_messages_per_post": self.bus_messages_per_post,
            "latency": dict(self.latency),
            "violation_counts": {k: len(g) for k, g in self.by_kind().items()},
            "violations": [v.to_dict() for v in self.violations],
        }

    def __str__(self) -> str:
        return self.render()
