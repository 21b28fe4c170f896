"""Style, types and layers are part of the test suite: ruff (lint and format), mypy and
import-linter's contracts, as configured in pyproject.toml, must pass on every change."""

from __future__ import annotations

import subprocess
import sys
import tomllib
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


def _contract_ids() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return [c["id"] for c in config["tool"]["importlinter"]["contracts"]]


LINT_IMPORTS = "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())"


@pytest.mark.parametrize("contract", _contract_ids())
def test_import_contract(contract: str) -> None:
    """One test per contract of ``[tool.importlinter]``, so a broken one names itself."""
    result = subprocess.run(
        [sys.executable, "-c", LINT_IMPORTS, "--no-cache", "--no-logo", "--contract", contract],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
