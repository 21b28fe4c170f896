"""Latency and cost plots (matplotlib), each with a plain-data ``snapshot()``.

* :func:`latency_plot`: one histogram per series of latencies (push, polling at each interval,
  ...), on a shared logarithmic axis in milliseconds, with p50/p95/p99 marked.
* :func:`cost_plot`: bus messages per post (or any per-post cost) for several designs, split
  into useful and wasted when the numbers say so.

Figures are built with ``matplotlib.figure.Figure`` directly (no pyplot state, no backend
needed), and shown as PNG: a static image, so an exported notebook shows exactly what ran.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure

from labkit.lab.polling import percentiles

COLOURS = ["#2563eb", "#f59e0b", "#16a34a", "#dc2626", "#a855f7", "#0891b2", "#6b7280"]


class Plot:
    """A matplotlib figure plus the numbers it was drawn from."""

    def __init__(self, figure: Figure, data: dict[str, Any]) -> None:
        self.figure = figure
        self._data = data

    def snapshot(self) -> dict[str, Any]:
        return self._data

    def png(self) -> bytes:
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
        return buffer.getvalue()

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        return {"image/png": self.png(), "text/plain": f"<{type(self).__name__}: {self._data}>"}


def latency_plot(
    series: Mapping[str, Sequence[float]],
    *,
    title: str = "delivery latency",
    bins: int = 40,
) -> Plot:
    """Histograms of latencies in seconds (drawn in ms), one row per series."""
    names = list(series)
    rows = max(len(names), 1)
    figure = Figure(figsize=(8.0, 1.25 * rows + 0.9))
    axes = figure.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    stats: dict[str, dict[str, float]] = {}
    positive = [v * 1000 for s in series.values() for v in s if v > 0]
    low = max(min(positive, default=0.1), 0.05)
    high = max(max(positive, default=1.0), low * 10)
    edges = [low * (high / low) ** (i / bins) for i in range(bins + 1)]
    for i, (ax, name) in enumerate(zip(axes, names, strict=False)):
        values_ms = [max(v * 1000, low) for v in series[name]]
        pct = {k: v * 1000 for k, v in percentiles(list(series[name])).items()}
        stats[name] = {"n": len(values_ms), **{f"{k}_ms": v for k, v in pct.items()}}
        colour = COLOURS[i % len(COLOURS)]
        if values_ms:
            ax.hist(values_ms, bins=edges, color=colour, alpha=0.8)
        for key, style in (("p50", "-"), ("p95", "--"), ("p99", ":")):
            if not math.isnan(pct[key]):
                ax.axvline(pct[key], color="#111827", linestyle=style, linewidth=1)
        summary = (
            f"{name}: n={len(values_ms)}  p50 {pct['p50']:.1f}  p95 {pct['p95']:.1f}  "
            f"p99 {pct['p99']:.1f} ms"
            if values_ms
            else f"{name}: no samples"
        )
        ax.set_title(summary, fontsize=9, loc="left")
        ax.set_yticks([])
        ax.set_xscale("log")
    axes[-1].set_xlabel("latency (ms, log scale); lines: p50 solid, p95 dashed, p99 dotted")
    figure.suptitle(title, fontsize=11, x=0.01, ha="left")
    figure.tight_layout()
    return Plot(figure, {"title": title, "series": stats})


def cost_plot(
    designs: Mapping[str, Mapping[str, float]],
    *,
    title: str = "bus messages per post",
    ylabel: str = "bus deliveries per post",
) -> Plot:
    """Stacked bars per design: ``{"targeted": {"useful": 1.4, "wasted": 0.0}, ...}``.

    Any keys work; each becomes a stacked segment, in the order of the first design.
    """
    names = list(designs)
    parts: list[str] = []
    for values in designs.values():
        for key in values:
            if key not in parts:
                parts.append(key)
    figure = Figure(figsize=(6.0, 3.2))
    ax = figure.subplots()
    bottoms = [0.0] * len(names)
    for j, part in enumerate(parts):
        heights = [float(designs[n].get(part, 0.0)) for n in names]
        colour = {"useful": "#2563eb", "wasted": "#dc2626"}.get(part, COLOURS[j % len(COLOURS)])
        ax.bar(names, heights, bottom=bottoms, color=colour, label=part)
        bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    for x, total in enumerate(bottoms):
        ax.text(x, total, f"{total:.2f}", ha="center", va="bottom", fontsize=9)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11, loc="left")
    if len(parts) > 1:
        ax.legend(fontsize=8)
    ax.margins(y=0.15)
    figure.tight_layout()
    return Plot(
        figure,
        {
            "title": title,
            "designs": {n: dict(designs[n]) for n in names},
            "totals": dict(zip(names, bottoms, strict=True)),
        },
    )


def scaling_plot(
    x: Sequence[float],
    series: Mapping[str, Sequence[float]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
) -> Plot:
    """Lines of ``series`` against ``x`` on log-log axes: how a cost grows with size."""
    figure = Figure(figsize=(6.5, 3.6))
    ax = figure.subplots()
    for i, (name, ys) in enumerate(series.items()):
        ax.plot(list(x), list(ys), marker="o", color=COLOURS[i % len(COLOURS)], label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11, loc="left")
    ax.legend(fontsize=8)
    ax.grid(True, which="major", alpha=0.3)
    figure.tight_layout()
    return Plot(
        figure,
        {"title": title, "x": list(x), "series": {k: list(v) for k, v in series.items()}},
    )
