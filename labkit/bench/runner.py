"""``labkit bench [NAME ...] [--quick] [--out DIR]``: run benchmarks, write results, print a table.

Each benchmark is a module of this package with ``NAME`` and ``async run(ctx, result)``. The
runner gives each one a fresh event loop, records the machine and the load average before and
after, catches a failure into the result (status ``failed`` with the reason) so the others still
run, writes ``DIR/NAME.json`` (see :mod:`labkit.bench.schema`) and ``DIR/NAME.png``, then prints
one table of every figure with its ratio and target.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from labkit.bench.context import Context, Skip
from labkit.bench.control import raise_nofile
from labkit.bench.procs import load_average
from labkit.bench.progress import say
from labkit.bench.schema import Result, machine_info, now_iso

BENCHMARKS = {
    "fanout": "labkit.bench.fanout",
    "latency": "labkit.bench.latency",
    "post": "labkit.bench.post",
    "connections": "labkit.bench.connections",
    "resume": "labkit.bench.resume",
    "sim": "labkit.bench.sim",
}
DEFAULT_OUT = "bench-results"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="labkit bench",
        description="Run labkit's benchmarks, each against a baseline measured in the same run: "
        + ", ".join(BENCHMARKS)
        + ". Writes NAME.json and NAME.png per benchmark into --out and prints a table.",
    )
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"benchmarks to run (default: all of {', '.join(BENCHMARKS)})",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes, one run each, no peers and no profiling (a smoke test, not figures)",
    )
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"results folder ({DEFAULT_OUT})")
    parser.add_argument(
        "--no-peers",
        action="store_true",
        help="skip python-socketio and Node ws in fanout and latency",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also run each benchmark once more under cProfile and summarise where time went "
        "(not with --quick)",
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="measured runs per system, median reported (3)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    names = args.names or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(
            f"labkit bench: unknown benchmark(s) {', '.join(unknown)}; "
            f"choose from {', '.join(BENCHMARKS)}",
            file=sys.stderr,
        )
        return 2
    if args.quick and args.profile:
        say("labkit bench: --profile is ignored with --quick (profilers stay out of smoke runs)")
    ctx = Context(
        out=Path(args.out),
        quick=args.quick,
        peers=not args.no_peers and not args.quick,
        profile=args.profile and not args.quick,
        repeat=max(1, args.repeat),
    )
    ctx.out.mkdir(parents=True, exist_ok=True)
    nofile = raise_nofile()
    say(
        f"labkit bench: open-files limit {nofile['soft']} (hard {nofile['hard']})"
        + (f"; {nofile['note']}" if nofile["note"] else "")
    )
    machine = machine_info()
    docs = []
    for name in names:
        doc = run_one(name, ctx, machine)
        docs.append(doc)
    (ctx.out / "summary.json").write_text(
        json.dumps({"results": [summary_row(d) for d in docs]}, indent=2) + "\n"
    )
    print(render_table(docs))
    return 1 if any(d["status"] == "failed" for d in docs) else 0


def run_one(name: str, ctx: Context, machine: dict[str, Any]) -> dict[str, Any]:
    module = importlib.import_module(BENCHMARKS[name])
    result = Result(name=name, quick=ctx.quick, machine=machine, started=now_iso())
    say(f"== {name}: {(module.__doc__ or '').strip().splitlines()[0]}")
    before = load_average()
    if before[0] > 1.0 and not ctx.quick:
        result.notes.append(
            f"load average was {before[0]} when {name} started (2 cores): figures may be low"
        )
    start = time.monotonic()
    try:
        asyncio.run(module.run(ctx, result))
    except Skip as exc:
        result.status, result.reason = "skipped", str(exc)
    except Exception as exc:
        result.status = "failed"
        result.reason = f"{type(exc).__name__}: {exc}"
        say(traceback.format_exc())
    result.wall_s = time.monotonic() - start
    result.load = {"before": before, "after": load_average()}
    doc = result.to_json()
    if result.status == "ok":
        try:
            from labkit.bench.plots import plot

            path = ctx.out / f"{name}.png"
            plot(doc, path)
            doc["plot"] = path.name
        except Exception as exc:
            doc["notes"].append(f"plot failed: {type(exc).__name__}: {exc}")
    (ctx.out / f"{name}.json").write_text(json.dumps(doc, indent=2) + "\n")
    say(f"   {name}: {doc['status']} in {doc['wall_s']:.1f} s -> {ctx.out / (name + '.json')}")
    return doc


def summary_row(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": doc["name"],
        "status": doc["status"],
        "reason": doc["reason"],
        "headline": doc["headline"],
        "target": doc["target"],
        "load": doc["load"],
    }


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float | int):
        if abs(value) >= 100:
            text = f"{value:,.0f}"
        elif abs(value) >= 1:
            text = f"{value:.2f}"
        else:
            text = f"{value:.3g}"
        return f"{text}{unit}"
    return str(value)


def render_table(docs: list[dict[str, Any]]) -> str:
    rows = [("benchmark", "labkit", "baseline", "ratio", "target", "met", "load")]
    for doc in docs:
        h, t = doc["headline"], doc["target"]
        if doc["status"] != "ok":
            rows.append((doc["name"], doc["status"], doc["reason"][:60], "", "", "", ""))
            continue
        unit = " " + h.get("unit", "") if h.get("unit") else ""
        met = {True: "yes", False: "NO", None: "-"}[t.get("met")]
        rows.append(
            (
                doc["name"],
                _fmt(h.get("value"), unit),
                _fmt(h.get("baseline")),
                _fmt(h.get("ratio")),
                t.get("text", ""),
                met,
                "/".join(f"{x:.1f}" for x in doc["load"]["before"]),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for i, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
