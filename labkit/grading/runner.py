"""Grading a module, a whole directory, or from the command line (``labkit grade``).

:func:`grade_module` grades any module object as one exercise: the learner's, a solution, or a
deliberately wrong implementation kept under ``tests/wrong_impls``. :func:`grade` finds the
modules of ``exercises/`` (or ``solutions/``) and grades them all, or one. :func:`main` is the
``labkit grade [EXERCISE] [--solutions] [--seed N]`` command; it exits 0 only when every check
of every exercise graded passed.
"""

from __future__ import annotations

import argparse
import random
import sys
import traceback
from pathlib import Path
from types import ModuleType

from labkit.grading.checks import EXERCISES
from labkit.grading.framework import Exercise, module_label, run_exercise_checks
from labkit.grading.loader import TargetNotFound, import_fresh, source_label
from labkit.grading.report import CheckResult, ExerciseResult, GradeReport


def resolve_exercise(name: str) -> str:
    """The full exercise name for ``ex05_gapfill``, ``ex05``, ``5`` or ``gapfill``.

    Raises ``KeyError`` with the list of exercises when nothing (or more than one) matches.
    """
    key = name.strip().lower().removesuffix(".py")
    if key in EXERCISES:
        return key
    if key.isdigit():
        key = f"ex{int(key):02d}"
    matches = [
        n for n in EXERCISES if n.startswith(key + "_") or n.split("_", 1)[1] == key or n == key
    ]
    if len(matches) != 1:
        raise KeyError(f"no exercise {name!r}; the exercises are: {', '.join(EXERCISES)}")
    return matches[0]


def new_seed() -> int:
    return random.SystemRandom().randrange(1, 100_000)


def grade_module(
    exercise: str, module: ModuleType, seed: int | None = None, *, source: str | None = None
) -> ExerciseResult:
    """Run every public check of ``exercise`` against ``module``."""
    spec: Exercise = EXERCISES[resolve_exercise(exercise)]
    run_seed = new_seed() if seed is None else seed
    results = run_exercise_checks(spec.checks, module, run_seed, spec.name)
    return ExerciseResult(
        spec.name,
        spec.title,
        source or module_label(module),
        tuple(results),
        seed=run_seed,
    )


def _import_failed(spec: Exercise, source: str, err: BaseException, seed: int) -> ExerciseResult:
    frames = [f for f in traceback.extract_tb(err.__traceback__) if not f.filename.startswith("<")]
    where = ""
    if isinstance(err, SyntaxError) and err.lineno is not None:
        where = f" (line {err.lineno})"
    elif frames:
        where = f" ({Path(frames[-1].filename).name} line {frames[-1].lineno})"
    message = f"{type(err).__name__}: {err}{where}"
    if isinstance(err, ModuleNotFoundError) and err.name and err.name.endswith("." + spec.name):
        message = "the file does not exist"
    checks = tuple(
        CheckResult(c.name, c.title, "failed", "the module to import", message) for c in spec.checks
    )
    return ExerciseResult(spec.name, spec.title, source, checks, message, seed)


def grade(
    target: str = "exercises", only: str | None = None, seed: int | None = None
) -> GradeReport:
    """Grade ``exercises/`` (or ``"solutions"``, or a directory path); ``only`` picks one.

    Returns a :class:`GradeReport`: printing it gives the per-exercise table with a hint for
    each failed check; in a notebook it renders as an HTML table.
    """
    run_seed = new_seed() if seed is None else seed
    names = [resolve_exercise(only)] if only is not None else list(EXERCISES)
    results = []
    for name in names:
        spec = EXERCISES[name]
        source = source_label(target, name)
        try:
            module = import_fresh(target, name)
        except TargetNotFound:
            raise
        except Exception as err:
            results.append(_import_failed(spec, source, err, run_seed))
            continue
        results.append(grade_module(name, module, run_seed, source=source))
    label = Path(target).name if target not in ("exercises", "solutions") else target
    return GradeReport(label, run_seed, tuple(results))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="labkit grade",
        description=(
            "Grade the exercises with their public checks: per exercise, how many pass, and a"
            " plain-words hint for each one that fails."
        ),
    )
    parser.add_argument(
        "exercise",
        nargs="?",
        help="one exercise (ex05_gapfill, ex05, 5 or gapfill); default: all of them",
    )
    parser.add_argument(
        "--solutions",
        action="store_true",
        help="grade solutions/ instead of exercises/ (they should pass every check)",
    )
    parser.add_argument(
        "--target",
        metavar="DIR",
        help="grade the exercise modules in another directory",
    )
    parser.add_argument(
        "--seed",
        type=int,
        help="seed of the randomized checks (printed on failure: use it to replay a case)",
    )
    parser.add_argument(
        "--list", action="store_true", help="list the exercises and their checks, then exit"
    )
    return parser


def describe_exercises() -> str:
    lines = []
    for spec in EXERCISES.values():
        lines.append(f"{spec.name}: {spec.title}")
        lines.extend(f"  - {c.title}{' (randomized)' if c.randomized else ''}" for c in spec.checks)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``labkit grade [EXERCISE] [--solutions] [--seed N]``: 0 when every check passes."""
    args = build_parser().parse_args(argv)
    if args.list:
        print(describe_exercises())
        return 0
    target = args.target or ("solutions" if args.solutions else "exercises")
    try:
        report = grade(target, args.exercise, args.seed)
    except KeyError as err:
        print(f"labkit grade: {err.args[0]}", file=sys.stderr)
        return 2
    except TargetNotFound as err:
        print(f"labkit grade: {err}", file=sys.stderr)
        return 2
    print(report.render())
    return 0 if report.all_passed else 1
