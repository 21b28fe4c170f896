"""The package layout keeps its promises: the public names, the old import paths learners'
exercises use, ``python -m labkit.sim``, the layer contracts' lists, and small modules in the
layers people read first (labkit.core and labkit.server)."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

import labkit

ROOT = Path(__file__).resolve().parent.parent

# --------------------------------------------------------------------------- public names

PUBLIC = {
    "Cluster": ("labkit.lab.cluster", "Cluster"),
    "check": ("labkit.lab.checker", "check"),
    "SimConfig": ("labkit.lab.sim", "SimConfig"),
    "simulate": ("labkit.lab.sim", "run"),
}


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_public_names_are_the_layered_objects(name: str) -> None:
    module, attr = PUBLIC[name]
    assert getattr(labkit, name) is getattr(importlib.import_module(module), attr)
    assert name in dir(labkit)


def test_labkit_cluster_keeps_the_lab_features() -> None:
    """``labkit.Cluster`` is the server's cluster plus faults, weaker designs and impls, while
    ``labkit.server.cluster.Cluster`` knows nothing of them (labkit.server never imports
    labkit.lab)."""
    from labkit.lab.faults import BusFaults, Faults
    from labkit.server import cluster as server

    faults = BusFaults(3, loss=0.1)
    cluster = labkit.Cluster(gateways=2, seed=3, bus_faults=faults, variant="no_bus_repair")
    assert issubclass(type(cluster), server.Cluster)
    assert cluster.bus_faults is faults and isinstance(cluster.faults, Faults)
    assert cluster.gateway_hooks == [faults]
    assert cluster.variant == "no_bus_repair" and cluster.notices == []
    assert cluster.impl.name == "reference"
    plain = server.Cluster(gateways=1)
    for lab_only in ("faults", "bus_faults", "variant", "impl", "notices"):
        assert not hasattr(plain, lab_only), lab_only


# --------------------------------------------------------------------------- old import paths

OLD_PATHS: dict[str, tuple[str, tuple[str, ...]]] = {
    # What exercises/ and solutions/ imported before the layout of labkit/core, labkit/server
    # and labkit/lab (commit 285e3be); a learner's finished copy still says exactly this.
    "labkit.protocol": ("labkit.core.protocol", ("Message", "encode", "encode_message_parts")),
    "labkit.store": (
        "labkit.server.redis.store",
        ("Appended", "IDEM_TTL_S", "head_key", "idem_key", "log_key"),
    ),
    "labkit.feed": ("labkit.core.feed", ("Step",)),
    "labkit.presence": ("labkit.core.presence", ("OFFLINE", "ONLINE", "Transition")),
    "labkit.client_state": ("labkit.core.client_state", ("DUPLICATE", "GAP", "NEW", "Verdict")),
}
NEW_TO_OLD = {new: old for old, (new, _) in OLD_PATHS.items()}


def _imports_today() -> set[tuple[str, str]]:
    """``(module, name)`` for every ``from labkit... import name`` in exercises/ and solutions/."""
    found: set[tuple[str, str]] = set()
    for folder in ("exercises", "solutions"):
        for path in sorted((ROOT / folder).glob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("labkit"):
                    found |= {(str(node.module), alias.name) for alias in node.names}
    return found


def _old_path_names() -> list[tuple[str, str, str]]:
    """``(old module, new module, name)``: the names above, and every name today's exercises
    and solutions take from a module that has an old path, so the old path mirrors them too."""
    names = {(old, new, name) for old, (new, attrs) in OLD_PATHS.items() for name in attrs}
    for module, name in _imports_today():
        if module in NEW_TO_OLD:
            names.add((NEW_TO_OLD[module], module, name))
    return sorted(names)


@pytest.mark.parametrize(("old", "new", "name"), _old_path_names())
def test_old_import_paths_give_the_very_same_objects(old: str, new: str, name: str) -> None:
    assert getattr(importlib.import_module(old), name) is getattr(
        importlib.import_module(new), name
    ), f"{old}.{name} is not {new}.{name}"


def test_what_the_exercises_import_today_exists() -> None:
    imports = _imports_today()
    assert imports, "no `from labkit... import` found in exercises/ or solutions/"
    missing = [
        f"{module}.{name}"
        for module, name in sorted(imports)
        if not hasattr(importlib.import_module(module), name)
    ]
    assert not missing, missing


def test_labkit_sim_is_the_lab_simulator() -> None:
    import labkit.lab.sim
    import labkit.sim

    assert labkit.sim.__all__
    for name in labkit.sim.__all__:
        assert getattr(labkit.sim, name) is getattr(labkit.lab.sim, name), name


@pytest.mark.parametrize(
    "args", [["--help"], ["explore", "--schedules", "3"]], ids=["help", "explore"]
)
def test_python_m_labkit_sim_runs(args: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "labkit.sim", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip(), result.stderr


# --------------------------------------------------------------------------- layer contracts


def _contract(contract_id: str) -> dict[str, Any]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    found: dict[str, Any] = next(c for c in contracts if c["id"] == contract_id)
    return found


def test_core_contract_forbids_every_third_party_package_labkit_imports() -> None:
    """import-linter can forbid external packages only by name, not "everything outside the
    standard library", so the core contract lists them: every third-party package any part
    of labkit imports, and every other part of labkit, must be on its list."""
    import grimp

    forbidden = set(_contract("core-is-pure")["forbidden_modules"])
    graph = grimp.build_graph("labkit", include_external_packages=True, cache_dir=None)
    third_party = {
        m for m in graph.modules if "." not in m and m != "labkit"
    } - sys.stdlib_module_names
    assert third_party - forbidden == set()
    parts = {
        f"labkit.{p.stem}"
        for p in (ROOT / "labkit").iterdir()
        if (p.suffix == ".py" or (p / "__init__.py").exists()) and p.stem != "__init__"
    }
    assert parts - {"labkit.core"} - forbidden == set()


# --------------------------------------------------------------------------- module size

MAX_LINES = 400
READ_FIRST = sorted(
    path.relative_to(ROOT).as_posix()
    for layer in ("core", "server")
    for path in (ROOT / "labkit" / layer).rglob("*.py")
)


@pytest.mark.parametrize("module", READ_FIRST)
def test_core_and_server_modules_stay_small(module: str) -> None:
    """Each module of labkit.core and labkit.server reads in one sitting: at most 400 lines."""
    lines = len((ROOT / module).read_text().splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines (at most {MAX_LINES})"


def test_no_function_in_core_or_server_is_over_60_lines() -> None:
    """The message path reads in small steps: no function or method of labkit.core or
    labkit.server is longer than 60 lines."""
    import ast

    long = []
    for folder in ("labkit/core", "labkit/server"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    lines = (node.end_lineno or node.lineno) - node.lineno + 1
                    if lines > 60:
                        long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines})")
    assert long == []
