"""Live widgets for the notebooks: they watch a running cluster, or replay a finished run.

- :class:`FanoutGraph`: one channel, message server → bus → gateways → connections, with
  per-edge counters, which gateways are subscribed, bus loss in red and its repair in green.
- :class:`SequenceTimeline`: per client and channel, each seq live, gap-filled, missing,
  duplicate or skipped by a reset, with a time slider.
- :class:`PresenceBoard`: users, status, heartbeat age, devices, typing, status changes seen.
- :class:`MachineTrace`: a gateway machine's events and the actions it decided, as a table.
- :class:`ChaosPanel`: fault knobs and buttons bound to a cluster, and the checker's verdict.
- :func:`latency_plot`, :func:`cost_plot`, :func:`scaling_plot`: matplotlib figures (latency
  histograms with percentiles, bus messages per post, a cost against size).

Every widget has ``snapshot()`` (plain data: what is drawn), ``await update()``,
``follow()``/``await unfollow()``, and a static HTML/SVG fallback that a notebook exported
without a kernel shows (:mod:`labkit.viz.base`). Every plot has ``snapshot()`` too.
"""

from labkit.viz.chaos_panel import ChaosPanel
from labkit.viz.fanout_graph import FanoutGraph, FanoutModel
from labkit.viz.machine_trace import MachineTrace
from labkit.viz.plots import Plot, cost_plot, latency_plot, scaling_plot
from labkit.viz.presence_board import PresenceBoard
from labkit.viz.svg import table
from labkit.viz.tap import BusEvent, GatewayTap
from labkit.viz.timeline import SequenceTimeline, TimelineModel

__all__ = [
    "BusEvent",
    "ChaosPanel",
    "FanoutGraph",
    "FanoutModel",
    "GatewayTap",
    "MachineTrace",
    "Plot",
    "PresenceBoard",
    "SequenceTimeline",
    "TimelineModel",
    "cost_plot",
    "latency_plot",
    "scaling_plot",
    "table",
]
