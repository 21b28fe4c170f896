"""The grader itself: solutions pass, untouched stubs fail cleanly, every wrong implementation is
caught, and what the learner reads is a hint, not a traceback.

Every wrong implementation under ``tests/wrong_impls`` declares the exercise it implements, the
mistake it makes (``MISTAKE``) and the checks that must catch it (``CAUGHT_BY``): a check that
stops catching its mistake turns this suite red.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

from labkit.grading import EXERCISES, grade, grade_module, main, resolve_exercise
from labkit.grading.framework import Check, run_check
from labkit.grading.report import ExerciseResult

ROOT = Path(__file__).resolve().parents[1]
WRONG_DIR = Path(__file__).resolve().parent / "wrong_impls"
WRONG = sorted(WRONG_DIR.glob("ex*.py"))
SEED = 20251128


def load_file(path: Path, name: str | None = None) -> ModuleType:
    """Import a file as a module of its own (dataclasses need it in ``sys.modules``)."""
    module_name = name or f"_labkit_wrong_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def stub_is_edited(exercise: str) -> bool:
    """True when ``exercises/<exercise>.py`` differs from the committed version.

    A learner working in this checkout edits the stubs; the "untouched stubs fail" tests then
    skip that stub instead of failing. A stub not committed yet (or no git) counts as untouched.
    """
    git = shutil.which("git")
    if git is None:
        return False
    path = f"exercises/{exercise}.py"
    tracked = subprocess.run(
        [git, "ls-files", "--error-unmatch", path], cwd=ROOT, capture_output=True, check=False
    )
    if tracked.returncode != 0:
        return False
    diff = subprocess.run(
        [git, "diff", "--quiet", "HEAD", "--", path], cwd=ROOT, capture_output=True, check=False
    )
    return diff.returncode == 1


# --------------------------------------------------------------------------- solutions and stubs


@pytest.mark.parametrize("seed", [SEED, 1, 2])
def test_solutions_pass_every_check(seed: int) -> None:
    report = grade("solutions", seed=seed)
    assert [e.name for e in report.exercises] == list(EXERCISES)
    assert report.all_passed, report.render()
    assert report.passed == report.total == sum(len(e.checks) for e in EXERCISES.values())


@pytest.mark.parametrize("exercise", list(EXERCISES))
def test_untouched_stub_fails_every_check_cleanly(exercise: str) -> None:
    if stub_is_edited(exercise):
        pytest.skip(f"exercises/{exercise}.py has been edited (a learner at work)")
    result = grade("exercises", only=exercise, seed=SEED)[exercise]
    assert result.import_error is None
    assert result.passed == 0
    assert all(c.status == "not_implemented" for c in result.checks), result.render()
    text = result.render()
    assert text.count("\n") == 0, text  # one line per exercise, no storm
    assert "not implemented yet" in text
    assert f"0/{len(EXERCISES[exercise].checks)} public checks passed" in text
    assert "Traceback" not in text and "NotImplementedError" not in text


def test_every_exercise_has_docstring_typed_stubs_and_a_solution() -> None:
    for exercise in EXERCISES:
        stub = (ROOT / "exercises" / f"{exercise}.py").read_text()
        solution = ROOT / "solutions" / f"{exercise}.py"
        assert solution.is_file(), exercise
        for heading in ("Task\n----", "Why\n---", "Interview angle\n---------------"):
            assert heading in stub, f"{exercise} docstring lacks {heading.splitlines()[0]!r}"
        assert "raise NotImplementedError" in stub
        assert f"labkit grade {exercise[:4]}" in stub


# --------------------------------------------------------------------------- wrong implementations


def test_every_exercise_has_at_least_three_wrong_implementations() -> None:
    counts = {name: 0 for name in EXERCISES}
    for path in WRONG:
        counts[path.stem.split("__")[0]] += 1
    assert all(n >= 3 for n in counts.values()), counts


@pytest.mark.parametrize("path", WRONG, ids=[p.stem for p in WRONG])
def test_wrong_implementation_is_caught(path: Path) -> None:
    module = load_file(path)
    exercise = path.stem.split("__")[0]
    assert exercise == module.EXERCISE
    assert module.MISTAKE and module.__doc__
    known = {c.name for c in EXERCISES[module.EXERCISE].checks}
    assert set(module.CAUGHT_BY) <= known, f"unknown check names in CAUGHT_BY: {module.CAUGHT_BY}"
    result = grade_module(module.EXERCISE, module, seed=SEED)
    assert not result.not_implemented, "a wrong implementation must be complete, just wrong"
    assert result.failed, f"{path.stem} ({module.MISTAKE}) passed every public check"
    missed = set(module.CAUGHT_BY) - {c.name for c in result.failed}
    assert not missed, f"{path.stem} ({module.MISTAKE}) was not caught by {sorted(missed)}"
    text = result.render()
    assert "expected:" in text and "happened:" in text
    assert "Traceback" not in text and "AssertionError" not in text


def test_randomized_failures_print_their_seed_and_replay_identically() -> None:
    module = load_file(WRONG_DIR / "ex05_gapfill__backfill_duplicate.py")
    first = grade_module("ex05_gapfill", module, seed=4242)
    lossy = next(c for c in first.checks if c.name == "lossy_bus")
    assert lossy.status == "failed" and lossy.seed == 4242
    assert "labkit grade ex05_gapfill --seed 4242" in first.render()
    again = grade_module("ex05_gapfill", module, seed=4242)
    assert again.render() == first.render()


# --------------------------------------------------------------------------- what the learner reads


def test_report_says_public_checks_and_renders_in_a_notebook() -> None:
    report = grade("solutions", only="ex07", seed=SEED)
    text = str(report)
    assert "ex07_typing" in text and "public checks passed" in text
    assert "all checks" not in text
    assert "public checks" in report.summary()
    html = report._repr_html_()
    assert "<table>" in html and "ex07_typing" in html


def _target(tmp_path: Path, files: dict[str, str]) -> Path:
    target = tmp_path / "mywork"
    target.mkdir()
    (target / "__init__.py").write_text("")
    for name, source in files.items():
        (target / f"{name}.py").write_text(textwrap.dedent(source))
    return target


def test_an_unimportable_module_is_one_line(tmp_path: Path) -> None:
    target = _target(tmp_path, {"ex07_typing": "class TypingThrottle(:\n    pass\n"})
    result = grade(str(target), only="ex07_typing", seed=SEED)["ex07_typing"]
    assert result.import_error is not None and "SyntaxError" in result.import_error
    assert result.render().count("\n") == 0
    missing = grade(str(target), only="ex02", seed=SEED)["ex02_routing"]
    assert missing.import_error == "the file does not exist"


def test_an_exception_names_the_learners_line_not_a_traceback(tmp_path: Path) -> None:
    target = _target(
        tmp_path,
        {
            "ex07_typing": """
                class TypingThrottle:
                    def __init__(self, interval_s=2.0):
                        self.last = {}

                    def allow(self, user, channel, now):
                        return now >= self.last[(user, channel)] + 2.0

                    def prune(self, now):
                        return 0

                    def __len__(self):
                        return len(self.last)
            """
        },
    )
    result = grade(str(target), only="ex07", seed=SEED)["ex07_typing"]
    first = result.failed[0]
    assert first.got is not None
    assert first.got.startswith("KeyError")
    assert "ex07_typing.py line 7, in allow" in first.got
    assert "(the same problem as above)" in result.render()


def test_a_partial_implementation_lists_what_is_missing(tmp_path: Path) -> None:
    source = (ROOT / "solutions" / "ex01_sequencer.py").read_text()
    source = source.replace(
        "    prefix, middle, suffix = encode_message_parts(channel, user, text)\n    seq, raw",
        "    raise NotImplementedError\n    prefix, middle, suffix = encode_message_parts("
        "channel, user, text)\n    seq, raw",
    )
    target = _target(tmp_path, {"ex01_sequencer": source})
    result = grade(str(target), only="ex01", seed=SEED)["ex01_sequencer"]
    assert result.not_implemented == ("append_atomic",)
    assert result.passed == 3 and not result.failed
    assert "not implemented yet: append_atomic (5 checks waiting on it)" in result.render()


def test_an_endless_loop_fails_its_check_instead_of_hanging() -> None:
    module = ModuleType("endless")

    def spin(module: ModuleType, rng: object) -> None:
        while True:
            pass

    check = Check("spin", "spins forever", spin, time_limit_s=0.3)
    result = run_check(check, module, SEED, "ex07_typing")
    assert result.status == "failed"
    assert result.expected is not None and "0.3 s" in result.expected


async def test_grading_works_inside_a_running_event_loop() -> None:
    # A notebook kernel runs an event loop; the Redis checks start their own in a thread.
    report = grade("solutions", only="ex01_sequencer", seed=SEED)
    assert report.all_passed, report.render()


# --------------------------------------------------------------------------- command line


def test_cli_exit_codes_and_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ex02", "--solutions", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "ex02_routing     8/8 public checks passed" in out
    if not stub_is_edited("ex02_routing"):
        assert main(["routing", "--seed", "3"]) == 1
        assert "not implemented yet" in capsys.readouterr().out
    assert main(["no-such-exercise"]) == 2
    assert "the exercises are" in capsys.readouterr().err
    assert main(["--list"]) == 0
    assert "ex08_hashring" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("name", "full"),
    [
        ("5", "ex05_gapfill"),
        ("ex05", "ex05_gapfill"),
        ("gapfill", "ex05_gapfill"),
        ("ex08_hashring.py", "ex08_hashring"),
        ("EX01_SEQUENCER", "ex01_sequencer"),
    ],
)
def test_exercise_names_resolve(name: str, full: str) -> None:
    assert resolve_exercise(name) == full


def test_results_are_plain_data() -> None:
    result = grade_module(
        "ex07_typing", load_file(ROOT / "solutions" / "ex07_typing.py", "_labkit_sol_ex07"), seed=1
    )
    assert isinstance(result, ExerciseResult)
    assert result.complete and result.passed == result.total == len(result.checks)
