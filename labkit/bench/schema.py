"""The result files: one JSON document per benchmark, and the checks that keep them well formed.

A document (``SCHEMA`` names its version)::

    {
      "schema": "labkit-bench/1",
      "name": "fanout",                 # the benchmark
      "quick": false,                   # --quick: tiny sizes, no peers, no profiles
      "status": "ok",                   # ok | skipped | failed
      "reason": "",                     # why, when not ok
      "started": "2025-…Z", "wall_s": 41.2,
      "machine": {...},                 # cpu, cores, memory, python, versions, load average
      "load": {"before": [..], "after": [..]},
      "params": {...},                  # sizes and settings of this run
      "systems": {"labkit": {...}, "websockets-broadcast": {...}, ...},
      "headline": {"metric": "deliveries_per_s", "unit": "/s", "value": 41000.0,
                   "baseline": 48500.0, "ratio": 0.85},
      "target": {"text": "ratio ≥ 0.8", "value": 0.85, "threshold": 0.8, "op": ">=",
                 "met": true},
      "notes": ["…"],
      "profile": {"labkit": [{"function": "…", "tottime_s": 1.2, "share": 0.31}, …]},
      "plot": "fanout.png"
    }

:func:`validate` returns the list of problems (empty when the document is well formed); the
smoke test runs it on every file ``labkit bench --quick`` writes.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
import sys
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

SCHEMA = "labkit-bench/1"
STATUSES = ("ok", "skipped", "failed")
OPS = {">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, "<": lambda a, b: a < b}


@dataclass
class Result:
    """What one benchmark returns; :meth:`to_json` makes the document."""

    name: str
    quick: bool
    params: dict[str, Any] = field(default_factory=dict)
    systems: dict[str, dict[str, Any]] = field(default_factory=dict)
    headline: dict[str, Any] = field(default_factory=dict)
    target: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    profile: dict[str, Any] = field(default_factory=dict)
    status: str = "ok"
    reason: str = ""
    started: str = ""
    wall_s: float = 0.0
    load: dict[str, list[float]] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    plot: str | None = None

    def set_target(self, text: str, value: float | None, op: str, threshold: float) -> None:
        met = None if value is None or not math.isfinite(value) else OPS[op](value, threshold)
        self.target = {
            "text": text,
            "value": value,
            "op": op,
            "threshold": threshold,
            "met": met,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "name": self.name,
            "quick": self.quick,
            "status": self.status,
            "reason": self.reason,
            "started": self.started,
            "wall_s": round(self.wall_s, 3),
            "machine": self.machine,
            "load": self.load,
            "params": self.params,
            "systems": self.systems,
            "headline": self.headline,
            "target": self.target,
            "notes": self.notes,
            "profile": self.profile,
            "plot": self.plot,
        }


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """The machine the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory = None
    try:
        import psutil

        memory = psutil.virtual_memory().total
    except Exception:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_bytes": memory,
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "versions": {
            name: _version(name)
            for name in ("websockets", "redis", "python-socketio", "aiohttp", "psutil")
        },
    }


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def validate(doc: Any) -> list[str]:
    """Every way ``doc`` departs from the schema above (empty list: well formed)."""
    problems: list[str] = []
    if not isinstance(doc, dict):
        return ["the document is not a JSON object"]
    expect: dict[str, type | tuple[type, ...]] = {
        "schema": str,
        "name": str,
        "quick": bool,
        "status": str,
        "reason": str,
        "started": str,
        "wall_s": (int, float),
        "machine": dict,
        "load": dict,
        "params": dict,
        "systems": dict,
        "headline": dict,
        "target": dict,
        "notes": list,
        "profile": dict,
    }
    for key, kind in expect.items():
        if key not in doc:
            problems.append(f"missing key {key!r}")
        elif not isinstance(doc[key], kind):
            problems.append(f"{key!r} should be {kind}, is {type(doc[key]).__name__}")
    if problems:
        return problems
    if doc["schema"] != SCHEMA:
        problems.append(f"schema is {doc['schema']!r}, expected {SCHEMA!r}")
    if doc["status"] not in STATUSES:
        problems.append(f"status {doc['status']!r} is not one of {STATUSES}")
    if doc["status"] != "ok":
        if not doc["reason"]:
            problems.append("a result that is not ok must say why (reason)")
        return problems
    if not doc["systems"]:
        problems.append("no systems measured")
    for name, system in doc["systems"].items():
        if not isinstance(system, dict):
            problems.append(f"system {name!r} is not an object")
        elif system.get("status", "ok") == "ok" and not any(_is_number(v) for v in system.values()):
            problems.append(f"system {name!r} has no numeric figure")
    headline = doc["headline"]
    for key in ("metric", "unit", "value"):
        if key not in headline:
            problems.append(f"headline lacks {key!r}")
    value = headline.get("value")
    if not _is_number(value) or not math.isfinite(value):
        problems.append(f"headline value {value!r} is not a finite number")
    if "ratio" in headline and headline["ratio"] is not None and not _is_number(headline["ratio"]):
        problems.append("headline ratio is not a number")
    target = doc["target"]
    for key in ("text", "op", "threshold", "met"):
        if key not in target:
            problems.append(f"target lacks {key!r}")
    if target.get("op") not in OPS:
        problems.append(f"target op {target.get('op')!r} unknown")
    if target.get("met") not in (True, False, None):
        problems.append("target met must be true, false or null")
    for key in ("before", "after"):
        load = doc["load"].get(key)
        if not (isinstance(load, list) and len(load) == 3 and all(map(_is_number, load))):
            problems.append(f"load {key!r} should be three numbers")
    plot = doc.get("plot")
    if plot is not None and not (isinstance(plot, str) and plot.endswith(".png")):
        problems.append("plot should name a .png file")
    return problems
