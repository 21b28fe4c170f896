"""Grading the exercises with public checks, the way DSLabs grades its labs.

Use from a shell: ``labkit grade [EXERCISE] [--solutions] [--seed N]``. From a notebook::

    from labkit.grading import grade
    grade(only="ex05_gapfill")      # renders as a table, with a hint per failed check

Each exercise of ``exercises/`` has a list of behaviour checks (``labkit.grading.checks``):
deterministic ones for each rule, randomized ones seeded for replay, and efficiency budgets
where the design is about cost. :func:`grade_module` grades any module as an exercise, which is
how the test suite proves the checks catch realistic wrong implementations.
"""

from labkit.grading.checks import EXERCISES
from labkit.grading.framework import Check, Exercise, Failure
from labkit.grading.report import CheckResult, ExerciseResult, GradeReport
from labkit.grading.runner import grade, grade_module, main, resolve_exercise

__all__ = [
    "EXERCISES",
    "Check",
    "CheckResult",
    "Exercise",
    "ExerciseResult",
    "Failure",
    "GradeReport",
    "grade",
    "grade_module",
    "main",
    "resolve_exercise",
]
