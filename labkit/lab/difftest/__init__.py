"""Differential testing: one scenario through the simulator and through a live cluster.

:mod:`~labkit.lab.difftest.scenario` says what clients do (plain data, printable as Python);
:mod:`labkit.lab.sim.scripted` runs it on the simulator's gateway machines in virtual time;
:mod:`~labkit.lab.difftest.live` runs it on a real :class:`labkit.Cluster` over WebSockets;
:mod:`~labkit.lab.difftest.observe` reduces what each side's clients received to what the
protocol fixes, so the two can be compared for equality. The simulator and the live gateway
drive the same sans-I/O machine, so any difference is a bug in one of the drivers (or in the
protocol's reading of one of them).

This package imports neither executor, so that the simulator can use the scenario model.
"""

from labkit.lab.difftest.observe import Observation, Transcript, compare, differences, observe
from labkit.lab.difftest.scenario import Scenario, Step

__all__ = ["Observation", "Scenario", "Step", "Transcript", "compare", "differences", "observe"]
