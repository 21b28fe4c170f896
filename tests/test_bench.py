"""`labkit bench --quick` runs every benchmark at tiny sizes and writes well-formed results.

This keeps the benchmarks from rotting: each one starts its servers, clients and private Redis,
measures, and writes NAME.json (checked against the schema) and NAME.png. No test here asserts
a timing; the figures of a --quick run mean nothing. Peers (Node, python-socketio) and
profilers stay out of --quick.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from labkit.bench.harness import percentiles
from labkit.bench.progress import Progress
from labkit.bench.runner import BENCHMARKS, render_table
from labkit.bench.schema import SCHEMA, Result, validate

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One `labkit bench --quick` run of every benchmark, shared by the checks below."""
    from labkit.server.redis_server import find_redis_server

    if find_redis_server() is None:
        if os.environ.get("LABKIT_REQUIRE_REDIS") == "1":
            pytest.fail("redis-server not found on PATH, and LABKIT_REQUIRE_REDIS=1 requires it")
        pytest.skip("redis-server not found on PATH; the benchmarks need a private one")
    out = tmp_path_factory.mktemp("bench")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABKIT_")}
    proc = subprocess.run(
        [sys.executable, "-m", "labkit.cli", "bench", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    return out, proc.stdout


@pytest.mark.real_redis
@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_quick_run_writes_a_well_formed_result(name: str, quick_results: tuple[Path, str]) -> None:
    out, _ = quick_results
    doc = json.loads((out / f"{name}.json").read_text())
    assert validate(doc) == [], validate(doc)
    assert doc["name"] == name and doc["quick"] is True
    assert doc["status"] in ("ok", "skipped"), doc["reason"]
    if doc["status"] == "ok":
        assert (out / doc["plot"]).read_bytes()[:8] == PNG_MAGIC
        assert doc["profile"] == {}, "profilers stay out of --quick"
        assert set(doc["systems"]) & {"socketio", "node-ws"} == set(), "peers stay out"


@pytest.mark.real_redis
def test_quick_run_prints_one_table_row_per_benchmark(quick_results: tuple[Path, str]) -> None:
    out, stdout = quick_results
    lines = stdout.strip().splitlines()
    assert lines[0].split()[0] == "benchmark"
    for name in BENCHMARKS:
        assert any(line.startswith(name + " ") for line in lines), stdout
    summary = json.loads((out / "summary.json").read_text())
    assert [row["name"] for row in summary["results"]] == list(BENCHMARKS)


@pytest.mark.real_redis
def test_baselines_are_measured_in_the_same_run(quick_results: tuple[Path, str]) -> None:
    out, _ = quick_results
    for name, baseline in (
        ("fanout", "websockets-broadcast"),
        ("post", "redis-publish"),
        ("connections", "websockets-bare"),
    ):
        doc = json.loads((out / f"{name}.json").read_text())
        assert {"labkit", baseline} <= set(doc["systems"])
        assert isinstance(doc["headline"]["ratio"], float | int | None)


def _minimal_doc() -> dict[str, Any]:
    result = Result(name="fanout", quick=True)
    result.systems = {"labkit": {"deliveries_per_s": 1.0}}
    result.headline = {"metric": "deliveries_per_s", "unit": "/s", "value": 1.0}
    result.set_target("ratio ≥ 0.8", 1.0, ">=", 0.8)
    result.load = {"before": [0.1, 0.2, 0.3], "after": [0.1, 0.2, 0.3]}
    return result.to_json()


def test_validate_accepts_a_minimal_document() -> None:
    doc = _minimal_doc()
    assert doc["schema"] == SCHEMA
    assert validate(doc) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d.pop("systems"), "missing key 'systems'"),
        (lambda d: d.update(status="broken"), "status"),
        (lambda d: d.update(status="failed", reason=""), "must say why"),
        (lambda d: d["headline"].update(value=float("nan")), "not a finite number"),
        (lambda d: d["target"].update(op="=="), "target op"),
        (lambda d: d["load"].update(before=[1]), "load 'before'"),
    ],
)
def test_validate_names_what_is_wrong(change: object, problem: str) -> None:
    doc = _minimal_doc()
    change(doc)  # type: ignore[operator]
    problems = validate(doc)
    assert any(problem in p for p in problems), problems


def test_percentiles_in_milliseconds() -> None:
    stats = percentiles([i / 1000 for i in range(1, 101)])
    assert stats["p50_ms"] == pytest.approx(50.0)  # nearest rank, as labkit.core.stats
    assert stats["p99_ms"] == pytest.approx(99.0)
    assert stats["max_ms"] == pytest.approx(100.0)
    assert len(stats["quantiles_ms"]) == 101
    assert percentiles([]) == {}


def test_progress_prints_only_its_final_line_off_a_terminal() -> None:
    stream = io.StringIO()
    with Progress("demo", 10, stream=stream) as bar:
        for i in range(10):
            bar.update(i + 1)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and "100.0%" in lines[0]


def test_table_shows_a_failed_benchmark_with_its_reason() -> None:
    doc = _minimal_doc()
    doc.update(status="failed", reason="RuntimeError: boom")
    assert "RuntimeError: boom" in render_table([doc])
