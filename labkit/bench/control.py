"""The line protocol between the bench (parent) and its child processes.

A child (a server entry point or the client harness) writes one JSON object per line on stdout,
each with an ``event`` key (``ready``, ``report``, ``stats``…), and reads one JSON object per
line on stdin, each with a ``cmd`` key. Closing stdin means ``quit``. Anything a child logs goes
to stderr, never to stdout.

:func:`raise_nofile` raises the open-files limit of the calling process (soft up to hard): every
process of a benchmark calls it before opening sockets.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

try:
    import resource
except ImportError:  # pragma: no cover - not on Linux
    resource = None  # type: ignore[assignment]


def raise_nofile(want: int | None = None) -> dict[str, Any]:
    """Raise this process's open-files limit towards ``want`` (default: the hard limit).

    Returns ``{"soft", "hard", "wanted", "ok", "note"}``; ``ok`` is False with a note saying why
    when the limit stays below ``want`` (the hard limit is lower and only root may raise it).
    """
    if resource is None:
        return {"soft": None, "hard": None, "wanted": want, "ok": False, "note": "no rlimits here"}
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if want is None else want
    if hard != resource.RLIM_INFINITY:
        target = min(target, hard)
    note = ""
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            note = f"could not raise the soft limit from {soft} to {target}: {exc}"
    if want is not None and want > hard and want > soft:
        # Only a privileged process may raise the hard limit; try, and say so when it fails.
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            soft = hard = want
        except (ValueError, OSError) as exc:
            note = f"open-files limit is {soft} (hard {hard}); {want} wanted and refused: {exc}"
    ok = want is None or soft >= want
    return {"soft": soft, "hard": hard, "wanted": want, "ok": ok, "note": note}


def emit(event: str, **fields: Any) -> None:
    """Write one event line on stdout for the parent."""
    sys.stdout.write(json.dumps({"event": event, **fields}, separators=(",", ":")) + "\n")
    sys.stdout.flush()


async def commands() -> AsyncIterator[dict[str, Any]]:
    """Yield each command the parent sends on stdin; ends (with a ``quit``) at end of input."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=16 * 1024 * 1024)
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(sys.stdin.fileno(), "rb", 0)
    )
    while True:
        line = await reader.readline()
        if not line:
            yield {"cmd": "quit"}
            return
        line = line.strip()
        if not line:
            continue
        try:
            command = json.loads(line)
        except ValueError:
            print(f"bench child: ignored a bad command line: {line[:80]!r}", file=sys.stderr)
            continue
        if isinstance(command, dict):
            yield command
