"""Style and types are part of the test suite: ruff (lint and format) and mypy, as configured
in pyproject.toml, must pass on every change."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYTHON_PATHS = ["labkit", "tests", "exercises", "solutions", "benchmarks"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    paths = [p for p in PYTHON_PATHS if (ROOT / p).exists()]
    return subprocess.run(
        [sys.executable, "-m", *args, *paths], cwd=ROOT, capture_output=True, text=True
    )


@pytest.mark.parametrize(
    "tool",
    [("ruff", "check"), ("ruff", "format", "--check")],
    ids=["ruff-lint", "ruff-format"],
)
def test_ruff(tool: tuple[str, ...]) -> None:
    result = _run(*tool)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
