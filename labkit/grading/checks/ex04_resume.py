"""Checks for ex04_resume: the client's gap detection and the ``last_seen`` it resumes with.

The resume point is the whole game: ``last_seen`` one too high loses a message on every
reconnect, one too low (or reset to the head) either repeats or silently skips what was posted
while the client was away.
"""

from __future__ import annotations

import random
from types import ModuleType
from typing import Any

from labkit.core.client_state import DUPLICATE, GAP, NEW
from labkit.grading.framework import CheckList, Failure, expect, need, show

checks = CheckList()


def _state(module: ModuleType) -> Any:
    return need(module, "ClientState")()


def _hello(state: Any) -> tuple[dict[str, int], dict[str, str]]:
    got = state.hello_fields()
    try:
        last_seen, epochs = got
        return dict(last_seen), dict(epochs)
    except (TypeError, ValueError):
        raise Failure(
            "hello_fields() to return (last_seen, epochs), two dicts", f"it returned {show(got)}"
        ) from None


def _verdict(state: Any, channel: str, seq: int) -> tuple[str, tuple[int, int] | None]:
    v = state.on_message(channel, seq)
    kind = getattr(v, "kind", None)
    missing = getattr(v, "missing", None)
    if kind is None:
        raise Failure("on_message to return a Verdict (kind, missing)", f"it returned {show(v)}")
    return kind, (None if missing is None else (int(missing[0]), int(missing[1])))


def _expect_verdict(
    state: Any, channel: str, seq: int, kind: str, missing: tuple[int, int] | None, context: str
) -> None:
    got = _verdict(state, channel, seq)
    want_text = kind if missing is None else f"{kind} with missing {missing}"
    got_text = got[0] if got[1] is None else f"{got[0]} with missing {got[1]}"
    expect(
        got == (kind, missing),
        f"on_message({channel!r}, {seq}) {context} to be {want_text}",
        got_text,
    )


def _expect_last_seen(state: Any, channel: str, want: int | None, why: str) -> None:
    got = _hello(state)[0].get(channel)
    expect(
        got == want,
        f"hello's last_seen[{channel!r}] to be {want} ({why})",
        f"it is {got!r}" if got is not None else f"{channel!r} is not in last_seen",
    )


@checks.add("a first welcome starts every channel at its head")
def check_first_welcome(module: ModuleType, rng: random.Random) -> None:
    s = _state(module)
    s.on_welcome({"general": (45, "k3x9"), "random": (0, "k3x9")})
    got = _hello(s)
    want = ({"general": 45, "random": 0}, {"general": "k3x9", "random": "k3x9"})
    expect(got == want, f"hello_fields() after the first welcome to be {want}", show(got))


@checks.add("a reconnect resumes where the client left off, not at the new head")
def check_reconnect_keeps_position(module: ModuleType, rng: random.Random) -> None:
    s = _state(module)
    s.on_welcome({"general": (45, "k3x9")})
    s.on_message("general", 46)
    s.on_message("general", 47)
    s.on_welcome({"general": (60, "k3x9")})
    _expect_last_seen(
        s,
        "general",
        47,
        "47 was the last message received; 48..60 were posted"
        " while the client was away and must be gap-filled, not skipped",
    )


@checks.add("the next seq is new and advances last_seen")
def check_new(module: ModuleType, rng: random.Random) -> None:
    s = _state(module)
    s.on_welcome({"general": (45, "k3x9")})
    _expect_verdict(s, "general", 46, NEW, None, "after head 45")
    _expect_verdict(s, "general", 47, NEW, None, "after 46")
    _expect_last_seen(s, "general", 47, "the highest seq received, not the next one expected")


@checks.add("a seq at or below last_seen is a duplicate and changes nothing")
def check_duplicate(module: ModuleType, rng: random.Random) -> None:
    s = _state(module)
    s.on_welcome({"general": (45, "k3x9")})
    s.on_message("general", 46)
    s.on_message("general", 47)
    _expect_verdict(s, "general", 47, DUPLICATE, None, "a second time")
    _expect_verdict(s, "general", 40, DUPLICATE, None, "after 47")
    _expect_last_seen(s, "general", 47, "an old seq arriving late must not move it back")


@checks.add("a jump is a gap with the exact missing range, and last_seen still advances")
def check_gap(module: ModuleType, rng: random.Random) -> None:
    s = _state(module)
    s.on_welcome({"general": (47, "k3x9")})
    _expect_verdict(s, "general", 51, GAP, (48, 50), "after 47")
    _expect_last_seen(s, "general", 51, "the gap is fetched with history; the stream goes on")
    _expect_verdict(s, "general", 53, GAP, (52, 52), "after 51")
    _expect_verdict(s, "general", 54, NEW, None, "after 53")


@checks.add("reset moves to the new head and epoch; joined starts a new channel at its head")
def check_reset_and_joined(module: ModuleType, rng: random.Random) -> None:
    s = _state(module)
    s.on_welcome({"general": (45, "k3x9")})
    s.on_message("general", 46)
    s.on_reset("general", 3, "zz81")
    got = _hello(s)
    expect(
        got[0].get("general") == 3 and got[1].get("general") == "zz81",
        "after on_reset('general', 3, 'zz81'): last_seen 3 and epoch 'zz81'",
        show(got),
    )
    _expect_verdict(s, "general", 4, NEW, None, "after the reset to 3")
    s.on_joined("design", 12, "k3x9")
    _expect_last_seen(s, "design", 12, "a joined channel is live from its head")
    s.on_message("design", 13)
    s.on_joined("design", 20, "k3x9")
    _expect_last_seen(s, "design", 13, "re-joining a channel already tracked changes nothing")
    s.on_left("design")
    got = _hello(s)
    expect(
        "design" not in got[0] and "design" not in got[1],
        "a left channel to vanish from hello's last_seen and epochs",
        show(got),
    )


@checks.add("a welcome forgets channels the user no longer belongs to")
def check_welcome_forgets(module: ModuleType, rng: random.Random) -> None:
    s = _state(module)
    s.on_welcome({"general": (45, "k3x9"), "random": (7, "k3x9")})
    s.on_welcome({"general": (45, "k3x9")})
    got = _hello(s)
    expect(
        "random" not in got[0] and "random" not in got[1],
        "'random', missing from the second welcome, to be forgotten (sending it in hello"
        " would earn a not_member error on every reconnect)",
        show(got),
    )


@checks.add("a welcome keeps the epoch that the tracked last_seen belongs to")
def check_welcome_keeps_epoch(module: ModuleType, rng: random.Random) -> None:
    s = _state(module)
    s.on_welcome({"general": (45, "k3x9")})
    s.on_message("general", 46)
    s.on_welcome({"general": (2, "new1")})
    got = _hello(s)
    expect(
        got == ({"general": 46}, {"general": "k3x9"}),
        "hello to still pair last_seen 46 with epoch 'k3x9' until a reset arrives (46 is a"
        " seq of the old life; paired with 'new1' it would gap-fill from the wrong"
        " numbering if the connection dropped before the reset)",
        show(got),
    )


@checks.add("hello_fields returns copies: changing them does not change the state")
def check_hello_copies(module: ModuleType, rng: random.Random) -> None:
    s = _state(module)
    s.on_welcome({"general": (45, "k3x9")})
    last_seen, epochs = s.hello_fields()
    last_seen["general"] = 0
    last_seen["evil"] = 1
    epochs["general"] = "xxxx"
    got = _hello(s)
    expect(
        got == ({"general": 45}, {"general": "k3x9"}),
        "the state to be unchanged after the caller edits what hello_fields() returned",
        show(got),
    )


@checks.add(
    "a random session with reconnects, resets, joins and a misbehaving server", randomized=True
)
def check_random_session(module: ModuleType, rng: random.Random) -> None:
    s = _state(module)
    heads = {f"ch-{i}": rng.randint(0, 50) for i in range(1, 5)}
    epochs = dict.fromkeys(heads, "e0")
    member = {c: rng.random() < 0.75 for c in heads}
    seen: dict[str, int] = {}
    told_epoch: dict[str, str] = {}
    history: list[str] = []

    def welcome() -> None:
        s.on_welcome({c: (heads[c], epochs[c]) for c in heads if member[c]})
        for c in list(seen):
            if not member[c]:
                del seen[c]
                del told_epoch[c]
        for c in heads:
            if member[c] and c not in seen:
                seen[c] = heads[c]
                told_epoch[c] = epochs[c]
        history.append("welcome")

    welcome()
    for step in range(600):
        roll = rng.random()
        channel = rng.choice([c for c in heads if member[c]] or list(heads))
        if roll < 0.7 and member[channel]:
            heads[channel] += 1
            jump = rng.random()
            if jump < 0.08:
                seq = max(1, seen[channel] - rng.randint(0, 3))  # a duplicate
            elif jump < 0.16:
                heads[channel] += rng.randint(1, 4)  # a hole
                seq = heads[channel]
            else:
                seq = max(heads[channel], seen[channel] + 1)
                heads[channel] = seq
            last = seen[channel]
            if seq <= last:
                want: tuple[str, tuple[int, int] | None] = (DUPLICATE, None)
            elif seq == last + 1:
                want = (NEW, None)
            else:
                want = (GAP, (last + 1, seq - 1))
            seen[channel] = max(last, seq)
            got = _verdict(s, channel, seq)
            history.append(f"message {channel} {seq}")
            expect(
                got == want,
                f"step {step + 1} (after {'; '.join(history[-4:-1])}):"
                f" on_message({channel!r}, {seq}) with last_seen {last} to be {want}",
                show(got),
            )
        elif roll < 0.8:
            heads = {c: h + rng.randint(0, 5) for c, h in heads.items()}
            welcome()
        elif roll < 0.85 and member[channel]:
            epochs[channel] = f"e{step}"
            heads[channel] = rng.randint(0, 5)
            s.on_reset(channel, heads[channel], epochs[channel])
            seen[channel] = heads[channel]
            told_epoch[channel] = epochs[channel]
            history.append(f"reset {channel} {heads[channel]}")
        elif roll < 0.92:
            target = rng.choice(list(heads))
            if member[target]:
                member[target] = False
                s.on_left(target)
                del seen[target]
                del told_epoch[target]
                history.append(f"left {target}")
            else:
                member[target] = True
                s.on_joined(target, heads[target], epochs[target])
                seen[target] = heads[target]
                told_epoch[target] = epochs[target]
                history.append(f"joined {target} {heads[target]}")
        got_hello = _hello(s)
        expect(
            got_hello == (seen, told_epoch),
            f"step {step + 1} (after {'; '.join(history[-3:])}): hello_fields() to be"
            f" {show((seen, told_epoch))}",
            show(got_hello),
        )


EXERCISE = checks.exercise(
    "ex04_resume",
    "client-side gap detection and the last_seen resume request",
)
