"""Swapping the learner's pieces into the live system, with a fallback and a notice per gap."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from labkit.core.client_state import ClientState
from labkit.core.feed import ChannelFeed
from labkit.core.hashring import HashRing
from labkit.core.presence import PresenceTracker
from labkit.core.routing import RoutingTable
from labkit.core.sequencer import MemorySequencer
from labkit.core.typing_throttle import TypingThrottle
from labkit.lab import impl as impl_module
from labkit.lab.impl import PIECES, Impl, load

ROOT = Path(__file__).resolve().parents[1]


def stub_is_edited(exercise: str) -> bool:
    """True when ``exercises/<exercise>.py`` differs from the committed version (a learner at
    work); a stub not committed yet, or no git, counts as untouched."""
    git = shutil.which("git")
    if git is None:
        return False
    path = f"exercises/{exercise}.py"
    run = {"cwd": ROOT, "capture_output": True, "check": False}
    if subprocess.run([git, "ls-files", "--error-unmatch", path], **run).returncode != 0:
        return False
    return subprocess.run([git, "diff", "--quiet", "HEAD", "--", path], **run).returncode == 1


REFERENCE = {
    "sequencer": MemorySequencer,
    "routing_table": RoutingTable,
    "channel_feed": ChannelFeed,
    "presence_tracker": PresenceTracker,
    "typing_throttle": TypingThrottle,
    "client_state": ClientState,
    "hash_ring": HashRing,
}


def _target(tmp_path: Path, files: dict[str, str]) -> Path:
    target = tmp_path / "mywork"
    target.mkdir(exist_ok=True)
    (target / "__init__.py").write_text("")
    for name, source in files.items():
        (target / f"{name}.py").write_text(textwrap.dedent(source))
    return target


def test_reference_is_the_default_and_has_no_notices() -> None:
    chosen = load()
    assert chosen.name == "reference"
    assert chosen.notices == ()
    for field, cls in REFERENCE.items():
        assert getattr(chosen, field) is cls
    assert "labkit.core.feed.ChannelFeed" in chosen.describe()


def test_impl_is_a_frozen_dataclass_covering_every_piece() -> None:
    chosen = load()
    with pytest.raises(dataclasses.FrozenInstanceError):
        chosen.channel_feed = object  # type: ignore[misc]
    fields = {f.name for f in dataclasses.fields(Impl)}
    assert set(REFERENCE) <= fields
    assert {p.field for p in PIECES} == set(REFERENCE)


def test_solutions_replace_every_piece_and_work() -> None:
    chosen = load("solutions")
    assert chosen.notices == ()
    for piece in PIECES:
        cls = getattr(chosen, piece.field)
        assert cls is not REFERENCE[piece.field]
        assert cls.__module__ == f"solutions.{piece.exercise}"
        assert chosen.sources[piece.field] == f"solutions/{piece.exercise}.py"
    feed = chosen.channel_feed("general")
    feed.start(0)
    step = feed.on_bus(2, "m2")
    assert step.fetch == (1, 1)
    assert [s for s, _ in feed.on_fetched([(1, "m1")]).deliver] == [1, 2]
    ring = chosen.hash_ring(["srv-1", "srv-2"], vnodes=10)
    assert ring.owner("general") in {"srv-1", "srv-2"}


def test_untouched_exercises_fall_back_with_one_notice_per_piece() -> None:
    if any(stub_is_edited(p.exercise) for p in PIECES):
        pytest.skip("exercises/ has been edited (a learner at work)")
    chosen = load("exercises")
    for field, cls in REFERENCE.items():
        assert getattr(chosen, field) is cls
    assert len(chosen.notices) == len(PIECES)
    assert "ex05_gapfill not implemented yet: using the reference ChannelFeed" in chosen.notices


def test_a_mix_uses_what_is_implemented_and_says_what_is_not(tmp_path: Path) -> None:
    solution = (ROOT / "solutions" / "ex07_typing.py").read_text()
    partial = (
        (ROOT / "solutions" / "ex02_routing.py")
        .read_text()
        .replace(
            "    def channels(self) -> list[str]:\n        return list(self._by_channel)",
            "    def channels(self) -> list[str]:\n        raise NotImplementedError",
        )
    )
    target = _target(
        tmp_path,
        {
            "ex07_typing": solution,
            "ex02_routing": partial,
            "ex05_gapfill": "class ChannelFeed(:\n",
            "ex06_presence": """
                class PresenceTracker:
                    def __init__(self, heartbeat_s=10.0):
                        raise NotImplementedError
            """,
            "ex08_hashring": "RING = 1\n",
        },
    )
    chosen = load(str(target))
    assert chosen.typing_throttle.__module__ == "mywork.ex07_typing"
    assert chosen.sources["typing_throttle"] == f"{target}/ex07_typing.py"
    assert chosen.routing_table is RoutingTable  # one method still raises: fall back
    assert chosen.channel_feed is ChannelFeed
    assert chosen.presence_tracker is PresenceTracker
    assert chosen.hash_ring is HashRing
    notices = "\n".join(chosen.notices)
    assert "ex02_routing not implemented yet: using the reference RoutingTable" in notices
    assert "ex05_gapfill could not be imported (SyntaxError" in notices
    assert "ex06_presence not implemented yet: using the reference PresenceTracker" in notices
    assert "ex08_hashring has no HashRing: using the reference HashRing" in notices
    assert "ex01_sequencer not found in" in notices
    assert len(chosen.notices) == len(PIECES) - 1
    assert "note: ex05_gapfill" in chosen.describe()


def test_a_buggy_piece_is_used_with_a_notice(tmp_path: Path) -> None:
    target = _target(
        tmp_path,
        {
            "ex07_typing": """
                class TypingThrottle:
                    def __init__(self, interval_s=2.0):
                        self.interval_s = interval_s

                    def allow(self, user, channel, now):
                        return True

                    def prune(self, now):
                        return {}["boom"]

                    def __len__(self):
                        return 0
            """
        },
    )
    chosen = load(str(target))
    assert chosen.typing_throttle.__module__ == "mywork.ex07_typing"
    notice = next(n for n in chosen.notices if n.startswith("ex07_typing"))
    assert "KeyError" in notice and "labkit grade ex07_typing" in notice


def test_an_edited_file_is_picked_up_by_the_next_load(tmp_path: Path) -> None:
    stub = "class TypingThrottle:\n    def __init__(self, interval_s=2.0):\n"
    stub += "        raise NotImplementedError\n"
    target = _target(tmp_path, {"ex07_typing": stub})
    assert load(str(target)).typing_throttle is TypingThrottle
    time.sleep(0.01)
    shutil.copy(ROOT / "solutions" / "ex07_typing.py", target / "ex07_typing.py")
    assert load(str(target)).typing_throttle is not TypingThrottle


def test_an_unknown_target_raises() -> None:
    with pytest.raises(LookupError):
        load("no-such-implementation")


def test_module_exports() -> None:
    assert impl_module.REFERENCE == "reference"
    assert "load" in impl_module.__all__
