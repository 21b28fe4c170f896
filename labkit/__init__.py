"""labkit: real-time messaging the way Slack does it, small enough to read and run in a notebook.

The package shows the architecture in its folders: ``labkit.core`` is pure (no I/O, an injected
clock), ``labkit.server`` holds the asyncio and Redis drivers around it, ``labkit.lab`` breaks
and measures the system (faults, the checker, weaker designs, the simulator), and ``cli``,
``viz``, ``grading`` and ``bench`` sit on top.
"""

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Cluster": ("labkit.lab.cluster", "Cluster"),
    "check": ("labkit.lab.checker", "check"),
    "SimConfig": ("labkit.lab.sim", "SimConfig"),
    "simulate": ("labkit.lab.sim", "run"),
}


def __getattr__(name: str) -> Any:
    """``labkit.Cluster`` and friends, imported on first use (``import labkit`` stays light for
    the CLI)."""
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'labkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
