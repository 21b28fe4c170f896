"""What a scenario's clients observed, in a form two executors can be compared on.

Theory of operation
-------------------
Both executors fill a :class:`Transcript`: every frame every client received, in arrival order,
per connection name. :func:`observe` reduces it to what the protocol fixes, and nothing else:

- per connection and per channel, the ordered ``message`` (seq, user, text), ``reset``
  (reason, head), ``joined`` (id, head) and ``left`` (id) frames, and a ``welcome`` entry (head)
  for each channel a ``welcome`` lists, so a session boundary shows where gap-fill begins;
- per connection, the replies to requests in arrival order: ``ack`` (id, channel, seq),
  ``error`` (code, id) and ``history`` (id, channel, head, [(seq, user, text)]); steps run one at
  a time, so their order is fixed;
- per connection, the last ``presence`` status of each watched user.

Left out on purpose, because the protocol does not fix them: time stamps, the gateway name in
``welcome``, epoch values (a ``reset`` is compared, its epoch is not), ``typing`` frames (they
may be throttled by wall-clock time, which differs between virtual and real time), ``pong``,
and the interleaving of different channels (or of an ``ack`` with the poster's own copy) on one
connection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Frame = dict[str, Any]
Observation = dict[str, dict[str, Any]]
"""Connection name → ``{"channels": {...}, "replies": [...], "presence": {...}}``."""


@dataclass
class Transcript:
    """Every frame each client received, in arrival order."""

    frames: dict[str, list[Frame]] = field(default_factory=dict)
    fired: list[tuple[str, str, int, str]] = field(default_factory=list)
    """Named bus faults that hit a delivery: ``(kind, channel, seq, gateway name)``."""
    marks: list[dict[str, int]] = field(default_factory=list)
    """:meth:`counts` after each step: how much each client had received once it was quiet."""

    def record(self, conn: str, frame: Frame) -> None:
        self.frames.setdefault(conn, []).append(frame)

    def start(self, conn: str) -> None:
        """Make ``conn`` appear even if it never receives anything."""
        self.frames.setdefault(conn, [])

    def counts(self) -> dict[str, int]:
        """Frames received per client, ``typing`` left out (it depends on wall-clock time)."""
        return {
            conn: sum(1 for f in frames if f.get("type") != "typing")
            for conn, frames in self.frames.items()
        }

    def mark(self) -> None:
        self.marks.append(self.counts())


def _triple(frame: Frame) -> tuple[Any, Any, Any]:
    return (frame.get("seq"), frame.get("user"), frame.get("text"))


def _reduce(frames: list[Frame]) -> dict[str, Any]:
    channels: dict[str, list[tuple[Any, ...]]] = {}
    replies: list[tuple[Any, ...]] = []
    presence: dict[str, Any] = {}

    def add(channel: Any, entry: tuple[Any, ...]) -> None:
        channels.setdefault(str(channel), []).append(entry)

    for frame in frames:
        kind = frame.get("type")
        if kind == "welcome":
            for channel, info in sorted(frame.get("channels", {}).items()):
                add(channel, ("welcome", info.get("head")))
        elif kind == "message":
            add(frame.get("channel"), ("message", *_triple(frame)))
        elif kind == "reset":
            add(frame.get("channel"), ("reset", frame.get("reason"), frame.get("head")))
        elif kind == "joined":
            add(frame.get("channel"), ("joined", frame.get("id"), frame.get("head")))
        elif kind == "left":
            add(frame.get("channel"), ("left", frame.get("id")))
        elif kind == "ack":
            replies.append(("ack", frame.get("id"), frame.get("channel"), frame.get("seq")))
        elif kind == "error":
            replies.append(("error", frame.get("code"), frame.get("id")))
        elif kind == "history":
            messages = tuple(_triple(m) for m in frame.get("messages", []))
            replies.append(
                ("history", frame.get("id"), frame.get("channel"), frame.get("head"), messages)
            )
        elif kind == "presence":
            presence[str(frame.get("user"))] = frame.get("status")
    return {"channels": channels, "replies": replies, "presence": presence}


def observe(transcript: Transcript) -> Observation:
    """Reduce ``transcript`` to what the protocol fixes (see the module docstring)."""
    return {conn: _reduce(frames) for conn, frames in sorted(transcript.frames.items())}


def compare(expected: Transcript, got: Transcript) -> list[str]:
    """Every difference between two runs of one scenario (empty when they agree).

    Which named bus faults fired is compared too: whether a gateway was subscribed to a
    channel when its seq was published is part of what the drivers must agree on.
    """
    lines = differences(observe(expected), observe(got))
    if sorted(expected.fired) != sorted(got.fired):
        lines.append(
            f"named bus faults fired:\n  expected {sorted(expected.fired)}"
            f"\n  got      {sorted(got.fired)}"
        )
    return lines


def differences(expected: Observation, got: Observation) -> list[str]:
    """Human-readable lines, one per place where ``got`` differs from ``expected``."""
    lines: list[str] = []
    for conn in sorted(set(expected) | set(got)):
        want, have = expected.get(conn), got.get(conn)
        if want is None or have is None:
            lines.append(f"{conn}: only in {'got' if want is None else 'expected'}")
            continue
        for channel in sorted(set(want["channels"]) | set(have["channels"])):
            a = want["channels"].get(channel, [])
            b = have["channels"].get(channel, [])
            if a != b:
                lines.append(f"{conn} #{channel}:\n  expected {a}\n  got      {b}")
        for key in ("replies", "presence"):
            if want[key] != have[key]:
                lines.append(f"{conn} {key}:\n  expected {want[key]}\n  got      {have[key]}")
    return lines
