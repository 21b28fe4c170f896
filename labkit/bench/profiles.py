"""Summaries of cProfile files: where a process spent its time, in a few lines of JSON.

A server or the harness started with ``--profile FILE`` writes cProfile statistics when it
stops. :func:`summarise` turns them into the top functions by own time (``tottime``) and the
share of own time by area (websockets, asyncio, redis-py, json, labkit, the kernel calls that
write to sockets…), which is what ``docs/benchmarks.md`` quotes.
"""

from __future__ import annotations

import pstats
from pathlib import Path
from typing import Any

AREAS = (
    ("labkit", "/labkit/"),
    ("websockets", "/websockets/"),
    ("redis-py", "/redis/"),
    ("socketio/engineio", "engineio/"),
    ("socketio/engineio", "socketio/"),
    ("aiohttp", "/aiohttp/"),
    ("asyncio", "/asyncio/"),
    ("json", "/json/"),
)


def _area(filename: str, name: str) -> str:
    for area, marker in AREAS:
        if marker in filename:
            return area
    if filename == "~":
        if "socket" in name or "send" in name or "recv" in name:
            return "socket syscalls"
        if "select" in name or "poll" in name or "epoll" in name:
            return "waiting (epoll)"
        return "builtins"
    return "other python"


def summarise(path: Path, top: int = 12) -> dict[str, Any]:
    """Top functions by own time, own time by area, and labkit's functions by cumulative time
    (what each step costs with everything it calls), from the cProfile file at ``path``."""
    stats = pstats.Stats(str(path))
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in raw.values()) or 1e-12
    areas: dict[str, float] = {}
    rows = []
    for (filename, line, name), (_cc, calls, tottime, cumtime, _callers) in raw.items():
        area = _area(filename, name)
        areas[area] = areas.get(area, 0.0) + tottime
        rows.append((tottime, calls, cumtime, filename, line, name, area))
    cumulative = sorted(rows, key=lambda r: r[2], reverse=True)
    cumulative = [r for r in cumulative if r[6] == "labkit"][:top]
    rows.sort(reverse=True)
    busy = total - areas.get("waiting (epoll)", 0.0)
    return {
        "total_s": round(total, 3),
        "busy_s": round(busy, 3),
        "areas": {k: round(v / total, 3) for k, v in sorted(areas.items(), key=lambda kv: -kv[1])},
        "top": [
            {
                "function": f"{_short(filename)}:{line}({name})",
                "tottime_s": round(tottime, 3),
                "cumtime_s": round(cumtime, 3),
                "calls": calls,
                "share": round(tottime / total, 3),
                "area": area,
            }
            for tottime, calls, cumtime, filename, line, name, area in rows[:top]
        ],
        "labkit_cumulative": [
            {
                "function": f"{_short(filename)}:{line}({name})",
                "cumtime_s": round(cumtime, 3),
                "share": round(cumtime / total, 3),
                "calls": calls,
            }
            for _t, calls, cumtime, filename, line, name, _a in cumulative
        ],
    }


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/lib/python3", "/work/main/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def render(summary: dict[str, Any], lines: int = 8) -> str:
    """A few lines of text for a report."""
    out = [
        "own time by area: "
        + ", ".join(f"{k} {v * 100:.0f}%" for k, v in list(summary["areas"].items())[:6])
    ]
    for row in summary["top"][:lines]:
        out.append(f"  {row['share'] * 100:5.1f}%  {row['calls']:>9}  {row['function']}")
    return "\n".join(out)
