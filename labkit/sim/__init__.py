"""``labkit.sim``: the short public name of the simulator, :mod:`labkit.lab.sim`.

``python -m labkit.sim explore`` and ``from labkit.sim import SimConfig, run`` keep working.
"""

from labkit.lab.sim import (
    ExploreSummary,
    SimConfig,
    SimResult,
    World,
    explore,
    presence_flaps,
    run,
)

__all__ = [
    "ExploreSummary",
    "SimConfig",
    "SimResult",
    "World",
    "explore",
    "presence_flaps",
    "run",
]
