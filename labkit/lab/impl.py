"""Which implementation of the pure pieces the live system runs: the reference, or a learner's.

``labkit serve --impl exercises`` and ``Cluster(impl="exercises")`` call :func:`load` and build
their sequencer, routing tables, channel feeds, presence tracker, typing throttle, client state
and hash ring from the returned :class:`Impl` instead of importing the reference classes. So the
learner's ``exercises/ex05_gapfill.py`` repairs real bus losses in a real cluster.

A piece is used only if it is implemented: :func:`load` imports each exercise module (fresh, so
an edited file is picked up) and tries the class out on a few harmless calls. If it is missing,
cannot be imported, or still raises ``NotImplementedError``, the reference class is used instead
and :attr:`Impl.notices` says so, e.g. ``"ex05_gapfill not implemented yet: using the reference
ChannelFeed"``. The caller prints the notices; nothing here writes to the terminal.

``impl`` is ``"reference"`` (the default), ``"exercises"``, ``"solutions"``, or the path of a
directory laid out like ``exercises/``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from labkit.grading.loader import TARGETS, import_fresh, locate

REFERENCE = "reference"

Factory = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class Impl:
    """Classes (factories) for each swappable piece, plus what was not taken from ``name``.

    Construct pieces exactly as the reference classes: ``impl.channel_feed("general")``,
    ``impl.routing_table()``, ``impl.presence_tracker(heartbeat_s=10)``,
    ``impl.typing_throttle(2.0)``, ``impl.sequencer()``, ``impl.client_state()``,
    ``impl.hash_ring(["srv-1", "srv-2"], vnodes=100)``.
    """

    name: str
    sequencer: Factory
    routing_table: Factory
    channel_feed: Factory
    presence_tracker: Factory
    typing_throttle: Factory
    client_state: Factory
    hash_ring: Factory
    notices: tuple[str, ...] = ()
    """One sentence per piece that fell back to the reference (or was used despite a problem)."""
    sources: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """Piece name → where its class came from, e.g. ``"exercises/ex05_gapfill.py"``."""

    def describe(self) -> str:
        """A few lines for a startup banner: each piece and its source, then the notices."""
        lines = [f"implementation: {self.name}"]
        lines += [f"  {piece:<17} {source}" for piece, source in self.sources.items()]
        lines += [f"  note: {notice}" for notice in self.notices]
        return "\n".join(lines)


# --------------------------------------------------------------------------- probes


def _probe_sequencer(cls: Factory) -> None:
    s = cls()
    s.next("probe")
    s.head("probe")


def _probe_routing_table(cls: Factory) -> None:
    t = cls()
    conn = object()
    t.add(conn, "probe")
    t.connections("probe")
    t.channels_of(conn)
    t.channels()
    t.has(conn, "probe")
    t.add_all(conn, ["probe-2"])
    t.remove(conn, "probe")
    t.remove_connection(conn)
    len(t)


def _probe_channel_feed(cls: Factory) -> None:
    f = cls("probe")
    _ = f.started
    f.start(0)
    f.on_bus(2, None)
    f.on_fetched([(1, None)])
    f.on_store_head(2)
    f.fetch_failed()
    f.reset(0)


def _probe_presence_tracker(cls: Factory) -> None:
    p = cls(heartbeat_s=10.0)
    p.connect("probe", "c1", 0.0)
    p.heartbeat("probe", "c1", 1.0)
    p.disconnect("probe", "c1", 2.0)
    p.next_deadline()
    p.expire(100.0)
    p.status("probe", 100.0)
    p.online_users(100.0)


def _probe_typing_throttle(cls: Factory) -> None:
    t = cls(2.0)
    t.allow("probe", "probe", 0.0)
    t.prune(10.0)
    len(t)


def _probe_client_state(cls: Factory) -> None:
    s = cls()
    s.on_welcome({"probe": (0, "e0")})
    s.on_message("probe", 1)
    s.hello_fields()
    s.on_reset("probe", 0, "e0")
    s.on_joined("probe-2", 0, "e0")
    s.on_left("probe-2")


def _probe_hash_ring(cls: Factory) -> None:
    r = cls(["probe-a", "probe-b"])
    r.owner("probe")
    r.add("probe-c")
    r.remove("probe-c")


@dataclass(frozen=True, slots=True)
class Piece:
    """One swappable piece: the ``Impl`` field, its exercise module and class, its reference."""

    field: str
    exercise: str
    attr: str
    reference: str
    """``module:Class`` of the reference implementation."""
    probe: Callable[[Factory], None]

    def reference_class(self) -> Factory:
        module, _, name = self.reference.partition(":")
        cls: Factory = getattr(importlib.import_module(module), name)
        return cls


PIECES: tuple[Piece, ...] = (
    Piece(
        "sequencer",
        "ex01_sequencer",
        "Sequencer",
        "labkit.core.sequencer:MemorySequencer",
        _probe_sequencer,
    ),
    Piece(
        "routing_table",
        "ex02_routing",
        "RoutingTable",
        "labkit.core.routing:RoutingTable",
        _probe_routing_table,
    ),
    Piece(
        "client_state",
        "ex04_resume",
        "ClientState",
        "labkit.core.client_state:ClientState",
        _probe_client_state,
    ),
    Piece(
        "channel_feed",
        "ex05_gapfill",
        "ChannelFeed",
        "labkit.core.feed:ChannelFeed",
        _probe_channel_feed,
    ),
    Piece(
        "presence_tracker",
        "ex06_presence",
        "PresenceTracker",
        "labkit.core.presence:PresenceTracker",
        _probe_presence_tracker,
    ),
    Piece(
        "typing_throttle",
        "ex07_typing",
        "TypingThrottle",
        "labkit.core.typing_throttle:TypingThrottle",
        _probe_typing_throttle,
    ),
    Piece(
        "hash_ring", "ex08_hashring", "HashRing", "labkit.core.hashring:HashRing", _probe_hash_ring
    ),
)


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    if len(text) > 120:
        text = text[:117] + "..."
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _choose(piece: Piece, impl: str) -> tuple[Factory, str, str | None]:
    """``(class, source, notice)`` for one piece of ``impl``."""
    reference = piece.reference_class()
    fallback = f"using the reference {piece.attr}"
    try:
        module = import_fresh(impl, piece.exercise)
    except ModuleNotFoundError as err:
        if err.name and err.name.endswith("." + piece.exercise):
            return reference, "reference", f"{piece.exercise} not found in {impl}/: {fallback}"
        return (
            reference,
            "reference",
            f"{piece.exercise} could not be imported ({_one_line(err)}): {fallback}",
        )
    except Exception as err:
        return (
            reference,
            "reference",
            f"{piece.exercise} could not be imported ({_one_line(err)}): {fallback}",
        )
    source = f"{impl}/{piece.exercise}.py"
    cls = getattr(module, piece.attr, None)
    if cls is None:
        return reference, "reference", f"{piece.exercise} has no {piece.attr}: {fallback}"
    try:
        piece.probe(cls)
    except NotImplementedError:
        return reference, "reference", f"{piece.exercise} not implemented yet: {fallback}"
    except Exception as err:
        return (
            cls,
            source,
            (
                f"{piece.exercise}: {piece.attr} raised {_one_line(err)} when tried out; using it"
                f" anyway (run `labkit grade {piece.exercise}`)"
            ),
        )
    return cls, source, None


def reference() -> Impl:
    """The reference implementation of every piece."""
    classes = {p.field: p.reference_class() for p in PIECES}
    sources = {p.field: p.reference.replace(":", ".") for p in PIECES}
    return _build(REFERENCE, classes, sources, [])


def load(impl: str = REFERENCE) -> Impl:
    """The pieces of ``impl`` (``"reference"``, ``"exercises"``, ``"solutions"`` or a directory),
    each falling back to the reference when it is not implemented; see :attr:`Impl.notices`.

    Raises ``labkit.grading.loader.TargetNotFound`` (a ``LookupError``) when there is no such
    directory to load from.
    """
    if impl == REFERENCE:
        return reference()
    locate(impl)  # raises TargetNotFound now rather than once per piece
    classes: dict[str, Factory] = {}
    sources: dict[str, str] = {}
    notices: list[str] = []
    for piece in PIECES:
        cls, source, notice = _choose(piece, impl)
        classes[piece.field] = cls
        sources[piece.field] = (
            source if source != "reference" else piece.reference.replace(":", ".")
        )
        if notice is not None:
            notices.append(notice)
    return _build(impl, classes, sources, notices)


def _build(
    name: str, classes: dict[str, Factory], sources: dict[str, str], notices: list[str]
) -> Impl:
    return Impl(
        name=name,
        sequencer=classes["sequencer"],
        routing_table=classes["routing_table"],
        channel_feed=classes["channel_feed"],
        presence_tracker=classes["presence_tracker"],
        typing_throttle=classes["typing_throttle"],
        client_state=classes["client_state"],
        hash_ring=classes["hash_ring"],
        notices=tuple(notices),
        sources=MappingProxyType(dict(sources)),
    )


__all__ = ["PIECES", "REFERENCE", "TARGETS", "Impl", "Piece", "load", "reference"]


async def load_append(impl: str = REFERENCE) -> tuple[Any, str | None]:
    """Exercise 1's Redis half, ``append_atomic``, for the live store, with a notice if it is not
    usable. Returns ``(function or None, notice or None)``; None means the reference Lua script.

    It is tried once on a throwaway embedded Redis, so a stub that still raises
    ``NotImplementedError`` (or a function that fails outright) falls back to the reference.
    """
    if impl == REFERENCE:
        return None, None
    import fakeredis

    try:
        module = import_fresh(impl, "ex01_sequencer")
        append = module.append_atomic
        probe = fakeredis.aioredis.FakeRedis(decode_responses=True)
        try:
            appended = await append(probe, "probe", "probe", "p-1", "probe", 1.0)
        finally:
            await probe.aclose()
        if appended.seq != 1:
            raise ValueError(f"the first post of a channel got seq {appended.seq}, not 1")
    except NotImplementedError:
        return None, "ex01_sequencer.append_atomic not implemented yet: using the reference script"
    except Exception as exc:  # a learner's bug must not stop the lab from starting
        return (
            None,
            f"ex01_sequencer.append_atomic failed a trial post ({exc}): using the reference",
        )
    return append, None
