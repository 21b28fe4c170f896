"""The pieces every exercise's checks are built from: checks, failures, and how one is run.

Theory of operation
-------------------
A *check* is a plain function ``check(module, rng)`` that drives the learner's module (or a
solution, or a deliberately wrong implementation: the grader cannot tell them apart) and either
returns (passed) or raises :class:`Failure` with two plain sentences: what was expected and what
happened. It never uses ``assert``: a hint must read like advice, not like assertion source.

:func:`run_check` turns whatever happens into a :class:`~labkit.grading.report.CheckResult`:

- :class:`Failure` becomes a failed check with its hint;
- ``NotImplementedError`` becomes "not implemented yet", naming the function that raised it, so
  a stub's report is one line per exercise rather than a traceback per check;
- any other exception becomes a failed check that names the exception and the line of the
  learner's file it came from (one line, not a traceback);
- a check that runs past its time limit (an endless loop, a lock never released) fails too.

Randomized checks get ``rng``, a ``random.Random`` seeded from the run's seed and the check's
name, so ``labkit grade EXERCISE --seed N`` replays the exact same cases, whichever other
checks run. Their failures print the seed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, ModuleType, TracebackType
from typing import Any, TypeVar

from labkit.grading.report import CheckResult

T = TypeVar("T")

CheckFunc = Callable[[ModuleType, random.Random], None]

DEFAULT_TIME_LIMIT_S = 10.0
"""A check that runs longer than this fails as 'took too long' (best effort: main thread only,
where a signal can interrupt it; async checks are also bounded by ``asyncio.wait_for``)."""

_GRADING_DIR = str(Path(__file__).resolve().parent)


class Failure(Exception):
    """A check failed: ``expected`` and ``got`` are plain sentences for the learner."""

    def __init__(self, expected: str, got: str) -> None:
        super().__init__(f"expected {expected}; got {got}")
        self.expected = expected
        self.got = got


class CheckTimeout(Exception):
    """Raised inside a check that ran past its time limit."""


@dataclass(frozen=True, slots=True)
class Check:
    """One public check of one exercise."""

    name: str
    """Short identifier, unique within the exercise (used to derive the check's seed)."""
    title: str
    """The rule being checked, as a sentence fragment: shown next to the result."""
    func: CheckFunc
    randomized: bool = False
    """True when the check draws cases from ``rng``: its failures print the seed."""
    time_limit_s: float = DEFAULT_TIME_LIMIT_S


@dataclass(frozen=True, slots=True)
class Exercise:
    """An exercise: its module name, a one-line title, and its checks in teaching order."""

    name: str
    title: str
    checks: tuple[Check, ...]


class CheckList:
    """Collects an exercise's checks in definition order: ``@checks.add("title")``."""

    def __init__(self) -> None:
        self.items: list[Check] = []

    def add(
        self, title: str, *, randomized: bool = False, time_limit_s: float = DEFAULT_TIME_LIMIT_S
    ) -> Callable[[CheckFunc], CheckFunc]:
        def register(func: CheckFunc) -> CheckFunc:
            name = func.__name__.removeprefix("check_")
            if any(c.name == name for c in self.items):
                raise ValueError(f"two checks named {name!r}")
            self.items.append(Check(name, title, func, randomized, time_limit_s))
            return func

        return register

    def exercise(self, name: str, title: str) -> Exercise:
        return Exercise(name, title, tuple(self.items))


# --------------------------------------------------------------------------- helpers for checks


def expect(condition: bool, expected: str, got: str) -> None:
    """Fail with ``expected`` / ``got`` unless ``condition`` holds."""
    if not condition:
        raise Failure(expected, got)


def expect_equal(actual: object, wanted: object, what: str) -> None:
    """Fail unless ``actual == wanted``, phrased as "``what`` to be ``wanted``"."""
    if actual != wanted:
        raise Failure(f"{what} to be {show(wanted)}", show(actual))


def show(value: object, limit: int = 160) -> str:
    """A short ``repr`` for a hint: long lists are cut in the middle, not dumped."""
    text = repr(value)
    if len(text) <= limit:
        return text
    half = (limit - 5) // 2
    return f"{text[:half]} ... {text[-half:]}"


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def need(module: ModuleType, name: str) -> Any:
    """``module.name``, or a failure saying the exercise must define it."""
    try:
        return getattr(module, name)
    except AttributeError:
        raise Failure(
            f"{module_label(module)} to define {name!r}", f"there is no {name!r} in it"
        ) from None


def module_label(module: ModuleType) -> str:
    file = getattr(module, "__file__", None)
    if file:
        path = Path(file)
        return f"{path.parent.name}/{path.name}"
    return module.__name__


def run_async(factory: Callable[[], Awaitable[T]], timeout_s: float) -> T:
    """Run a coroutine to completion on a fresh event loop, even inside a running one.

    Notebooks (and ``pytest-asyncio``) already run a loop in the current thread, where
    ``asyncio.run`` refuses to start; the coroutine then runs on its own loop in a helper thread.
    """

    async def bounded() -> T:
        return await asyncio.wait_for(_as_coroutine(factory), timeout_s)

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(bounded())
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(bounded())
        except BaseException as err:
            box["error"] = err

    thread = threading.Thread(target=target, name="labkit-grading", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    value: T = box["value"]
    return value


async def _as_coroutine(factory: Callable[[], Awaitable[T]]) -> T:
    return await factory()


# --------------------------------------------------------------------------- running one check


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`CheckTimeout` in the block after ``seconds`` (main thread, POSIX only).

    An interval timer already running (pytest-timeout uses one) is restored afterwards, minus the
    time spent here, so the outer limit still holds.
    """
    usable = (
        hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
        and os.environ.get("LABKIT_GRADING_NO_ALARM") != "1"
    )
    if not usable:
        yield
        return

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        raise CheckTimeout(f"still running after {seconds:g} s")

    previous_handler = signal.signal(signal.SIGALRM, on_alarm)
    previous_delay, previous_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    started = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous_handler)
        if previous_delay > 0:
            remaining = max(previous_delay - (time.monotonic() - started), 0.001)
            signal.setitimer(signal.ITIMER_REAL, remaining, previous_interval)


def run_check(check: Check, module: ModuleType, seed: int, exercise: str) -> CheckResult:
    """Run one check against ``module`` and describe the outcome for the learner."""
    rng = random.Random(f"{seed}:{exercise}:{check.name}")
    shown_seed = seed if check.randomized else None
    try:
        with time_limit(check.time_limit_s):
            check.func(module, rng)
    except Failure as failure:
        return CheckResult(
            check.name, check.title, "failed", failure.expected, failure.got, shown_seed
        )
    except NotImplementedError as err:
        where = _raiser(err.__traceback__)
        return CheckResult(check.name, check.title, "not_implemented", None, None, None, where)
    except (CheckTimeout, TimeoutError) as err:
        return CheckResult(
            check.name,
            check.title,
            "failed",
            f"the check to finish within {check.time_limit_s:g} s",
            f"it was still running ({err or 'timed out'}): an endless loop, or an await that"
            " never returns?",
            shown_seed,
        )
    except Exception as err:
        return CheckResult(
            check.name,
            check.title,
            "failed",
            "no exception",
            f"{type(err).__name__}: {_clip(str(err), 200)}{_location(err.__traceback__, module)}",
            shown_seed,
        )
    return CheckResult(check.name, check.title, "passed")


def _frames(tb: TracebackType | None) -> list[traceback.FrameSummary]:
    return list(traceback.extract_tb(tb)) if tb is not None else []


def _raiser(tb: TracebackType | None) -> str | None:
    """Qualified name of the function that raised (``ChannelFeed.on_bus``), if known."""
    last = None
    while tb is not None:
        last = tb
        tb = tb.tb_next
    if last is None:
        return None
    return last.tb_frame.f_code.co_qualname


def _location(tb: TracebackType | None, module: ModuleType) -> str:
    """`` (ex05_gapfill.py line 42, in on_bus)``: the deepest frame outside the grader."""
    frames = _frames(tb)
    target = getattr(module, "__file__", None)
    chosen = None
    for frame in reversed(frames):
        if target and Path(frame.filename) == Path(target):
            chosen = frame
            break
    if chosen is None:
        outside = [f for f in frames if not f.filename.startswith(_GRADING_DIR)]
        chosen = outside[-1] if outside else None
    if chosen is None:
        return ""
    return f" ({Path(chosen.filename).name} line {chosen.lineno}, in {chosen.name})"


def run_exercise_checks(
    checks: Sequence[Check], module: ModuleType, seed: int, exercise: str
) -> list[CheckResult]:
    return [run_check(check, module, seed, exercise) for check in checks]
