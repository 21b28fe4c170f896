"""The public checks of every exercise, in course order: ``EXERCISES[name].checks``."""

from __future__ import annotations

from labkit.grading.checks.ex01_sequencer import EXERCISE as EX01
from labkit.grading.checks.ex02_routing import EXERCISE as EX02
from labkit.grading.checks.ex03_fanout import EXERCISE as EX03
from labkit.grading.checks.ex04_resume import EXERCISE as EX04
from labkit.grading.checks.ex05_gapfill import EXERCISE as EX05
from labkit.grading.checks.ex06_presence import EXERCISE as EX06
from labkit.grading.checks.ex07_typing import EXERCISE as EX07
from labkit.grading.checks.ex08_hashring import EXERCISE as EX08
from labkit.grading.framework import Exercise

EXERCISES: dict[str, Exercise] = {
    e.name: e for e in (EX01, EX02, EX03, EX04, EX05, EX06, EX07, EX08)
}

__all__ = ["EXERCISES"]
