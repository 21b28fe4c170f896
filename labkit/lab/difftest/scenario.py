"""Scenarios for differential testing: what clients do, step by step, as plain data.

Theory of operation
-------------------
A :class:`Scenario` is a number of gateways and a list of steps. Each step is one thing a
client (or the operator) does; an executor carries it out and then waits until the system is
quiet before the next one, so the outcome of a scenario does not depend on timing. The same
scenario runs through the simulator (:mod:`labkit.lab.sim.scripted`) and through a live cluster
(:mod:`labkit.lab.difftest.live`), and their observations must be identical.

A *connection name* (``conn``) is one logical client: one device of one user. ``Connect``
creates it; ``Cut`` drops its connection (and nothing reconnects by itself); ``Reconnect``
opens a new connection for the same client, whose ``hello`` carries ``last_seen`` and
``epochs`` from every frame that client has seen. A crash drops every connection of a gateway
the same way a cut does.

Request ids are derived from the step's index (``s7``), so both executors send exactly the
same frames and nothing has to be normalised away.

Bus faults are *named*, never drawn at random: ``DropNext("general", 4, 1)`` says that the
next delivery of ``#general`` seq 4 to gateway 1 is lost. The generator names the seq as "the
next seq posted in that channel" from its own model of the heads; if nothing ever delivers that
seq to that gateway, the fault simply never fires, on both sides alike.

:meth:`Scenario.render` prints a scenario as Python that rebuilds it, so a failing example can
be pasted into a test.
"""

from __future__ import annotations

from dataclasses import dataclass, field

USERS: tuple[str, ...] = ("alice", "bob", "carol", "dave")
CHANNELS: tuple[str, ...] = ("general", "random", "eng", "design")
INITIAL_MEMBERS: dict[str, tuple[str, ...]] = {
    "general": USERS,
    "random": USERS,
    "eng": ("alice", "bob", "carol"),
}
"""Memberships before the first step (both executors create exactly these; ``design`` does not
exist until someone joins it)."""


@dataclass(frozen=True, slots=True)
class Connect:
    """A new client ``conn`` of ``user`` connects to gateway ``gateway`` and says hello."""

    conn: str
    user: str
    gateway: int


@dataclass(frozen=True, slots=True)
class Post:
    conn: str
    channel: str
    text: str


@dataclass(frozen=True, slots=True)
class Join:
    conn: str
    channel: str


@dataclass(frozen=True, slots=True)
class Leave:
    conn: str
    channel: str


@dataclass(frozen=True, slots=True)
class Typing:
    conn: str
    channel: str


@dataclass(frozen=True, slots=True)
class PresenceSub:
    conn: str
    users: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class History:
    conn: str
    channel: str
    after: int = 0
    limit: int = 100


@dataclass(frozen=True, slots=True)
class Cut:
    """``conn``'s connection drops (no close frame); the client does not reconnect by itself."""

    conn: str


@dataclass(frozen=True, slots=True)
class Reconnect:
    """A new connection for client ``conn``, resuming from what it has seen."""

    conn: str
    gateway: int


@dataclass(frozen=True, slots=True)
class CrashGateway:
    gateway: int


@dataclass(frozen=True, slots=True)
class RestartGateway:
    gateway: int


@dataclass(frozen=True, slots=True)
class DropNext:
    """The next delivery of ``channel``'s ``seq`` to gateway ``gateway`` is lost on the bus."""

    channel: str
    seq: int
    gateway: int


@dataclass(frozen=True, slots=True)
class DupNext:
    """The next delivery of ``channel``'s ``seq`` to gateway ``gateway`` arrives twice."""

    channel: str
    seq: int
    gateway: int


Step = (
    Connect
    | Post
    | Join
    | Leave
    | Typing
    | PresenceSub
    | History
    | Cut
    | Reconnect
    | CrashGateway
    | RestartGateway
    | DropNext
    | DupNext
)


def request_id(index: int) -> str:
    """The ``id`` of the request sent by step ``index`` (unique per user within a scenario)."""
    return f"s{index}"


def client_frame(index: int, step: Step) -> dict[str, object] | None:
    """The frame a client sends for step ``index``, or None for steps that send none.

    One function for both executors, so they cannot drift apart in what they send.
    """
    rid = request_id(index)
    if isinstance(step, Post):
        return {"type": "post", "id": rid, "channel": step.channel, "text": step.text}
    if isinstance(step, Join | Leave):
        return {"type": type(step).__name__.lower(), "id": rid, "channel": step.channel}
    if isinstance(step, Typing):
        return {"type": "typing", "channel": step.channel}
    if isinstance(step, PresenceSub):
        return {"type": "presence_sub", "users": list(step.users)}
    if isinstance(step, History):
        return {
            "type": "history",
            "id": rid,
            "channel": step.channel,
            "after": step.after,
            "limit": step.limit,
        }
    return None


def sender(step: Step) -> str | None:
    """The connection a step sends its frame on (None for connects and operator steps)."""
    if isinstance(step, Post | Join | Leave | Typing | PresenceSub | History):
        return step.conn
    return None


@dataclass(frozen=True, slots=True)
class Scenario:
    """``gateways`` gateways, then ``steps`` in order."""

    gateways: int
    steps: tuple[Step, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.gateways < 1:
            raise ValueError("a scenario needs at least one gateway")

    def render(self) -> str:
        """Python text that rebuilds this scenario (paste it into a test)."""
        lines = [f"Scenario(gateways={self.gateways}, steps=("]
        lines += [f"    {step!r}," for step in self.steps]
        lines.append("))")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()


__all__ = [
    "CHANNELS",
    "INITIAL_MEMBERS",
    "USERS",
    "Connect",
    "CrashGateway",
    "Cut",
    "DropNext",
    "DupNext",
    "History",
    "Join",
    "Leave",
    "Post",
    "PresenceSub",
    "Reconnect",
    "RestartGateway",
    "Scenario",
    "Step",
    "Typing",
    "client_frame",
    "request_id",
    "sender",
]
