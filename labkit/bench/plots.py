"""One PNG per benchmark, drawn from its result document alone (so a JSON file can be redrawn)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

COLOURS = {
    "labkit": "#1f77b4",
    "websockets-broadcast": "#7f7f7f",
    "websockets-bare": "#7f7f7f",
    "redis-publish": "#7f7f7f",
    "socketio": "#2ca02c",
    "node-ws": "#d62728",
}


def _ok(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in doc["systems"].items() if v.get("status", "ok") == "ok"}


def _bars(ax: Any, systems: dict[str, dict[str, Any]], key: str, title: str) -> None:
    names = [n for n in systems if key in systems[n]]
    values = [systems[n][key] for n in names]
    ax.bar(names, values, color=[COLOURS.get(n, "#9467bd") for n in names])
    for i, v in enumerate(values):
        label = f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"
        ax.annotate(label, (i, v), ha="center", va="bottom", fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.tick_params(axis="x", labelsize=8, rotation=15)


def _fanout(doc: dict[str, Any], fig: Any) -> None:
    systems = _ok(doc)
    ax1, ax2 = fig.subplots(1, 2)
    _bars(ax1, systems, "deliveries_per_s", "deliveries per second (clients' view)")
    _bars(ax2, systems, "cpu_s_per_1k", "server CPU s per 1,000 deliveries")


def _latency(doc: dict[str, Any], fig: Any) -> None:
    systems = _ok(doc)
    ax1, ax2 = fig.subplots(1, 2)
    for name, s in systems.items():
        q = s.get("steady", {}).get("latency", {}).get("quantiles_ms")
        if q:
            ax1.plot(q, [i / 100 for i in range(len(q))], label=name, color=COLOURS.get(name))
        curve = s.get("curve", [])
        if curve:
            ax2.plot(
                [c["offered_posts_per_s"] for c in curve],
                [c["p99_ms"] for c in curve],
                marker="o",
                label=name,
                color=COLOURS.get(name),
            )
    rate = doc["params"].get("steady_posts_per_s")
    ax1.set_xscale("log")
    ax1.set_xlabel("post → receive delay (ms)")
    ax1.set_ylabel("fraction of deliveries")
    ax1.set_title(f"delay CDF at {rate} posts/s", fontsize=10)
    ax1.legend(fontsize=8)
    ax2.set_yscale("log")
    ax2.axhline(50, color="#999", linestyle="--", linewidth=0.8)
    ax2.set_xlabel("offered posts/s into the channel")
    ax2.set_ylabel("p99 delay (ms)")
    ax2.set_title("p99 against offered load", fontsize=10)
    ax2.legend(fontsize=8)


def _post(doc: dict[str, Any], fig: Any) -> None:
    systems = _ok(doc)
    ax1, ax2 = fig.subplots(1, 2)
    _bars(ax1, systems, "per_s", "operations per second")
    _bars(ax2, systems, "client_cpu_us_per_op", "caller CPU µs per operation")


def _connections(doc: dict[str, Any], fig: Any) -> None:
    systems = _ok(doc)
    ax1, ax2, ax3 = fig.subplots(1, 3)
    for name, s in systems.items():
        curve = s.get("rss_curve", [])
        if curve:
            ax1.plot(
                [c[0] for c in curve],
                [c[1] / 2**20 for c in curve],
                label=name,
                color=COLOURS.get(name),
            )
    ax1.set_xlabel("open connections")
    ax1.set_ylabel("server RSS (MiB)")
    ax1.set_title("memory while connecting", fontsize=10)
    ax1.legend(fontsize=8)
    _bars(ax2, systems, "kb_per_conn", "KB RSS per connection")
    _bars(ax3, systems, "heartbeat_cpu_per_s", "server CPU s/s with heartbeats")


def _resume(doc: dict[str, Any], fig: Any) -> None:
    systems = _ok(doc)
    ax1, ax2 = fig.subplots(1, 2)
    for name, s in systems.items():
        for run in s.get("runs", []):
            caught = run.get("caught_s", [])
            if caught:
                ax1.plot(
                    caught,
                    [(i + 1) / len(caught) for i in range(len(caught))],
                    label=f"{name}, {run['behind']} behind",
                )
    runs = systems.get("labkit", {}).get("runs", [])
    ax2.bar(
        [str(r["behind"]) for r in runs],
        [r["history_reads_per_client"] for r in runs],
        color=COLOURS["labkit"],
    )
    ax1.axvline(5, color="#999", linestyle="--", linewidth=0.8)
    ax1.set_xlabel("seconds from reconnect to caught up")
    ax1.set_ylabel("fraction of clients")
    ax1.set_title("gap-fill after a gateway crash", fontsize=10)
    ax1.legend(fontsize=8)
    ax2.set_xlabel("messages missed")
    ax2.set_title("history reads per client", fontsize=10)


def _sim(doc: dict[str, Any], fig: Any) -> None:
    systems = _ok(doc)
    ax = fig.subplots(1, 1)
    for name, s in systems.items():
        runs = s.get("runs", [])
        ax.plot(
            [r["deliveries"] for r in runs],
            [r["deliveries_per_s"] for r in runs],
            marker="o",
            label=name,
        )
    ax.axhline(100_000, color="#999", linestyle="--", linewidth=0.8)
    ax.set_xlabel("deliveries in the run")
    ax.set_ylabel("simulated deliveries per wall second")
    ax.set_title("seeded simulation speed", fontsize=10)
    ax.legend(fontsize=8)


DRAW = {
    "fanout": _fanout,
    "latency": _latency,
    "post": _post,
    "connections": _connections,
    "resume": _resume,
    "sim": _sim,
}


def plot(doc: dict[str, Any], path: Path) -> None:
    fig = plt.figure(figsize=(11, 4), dpi=100)
    try:
        DRAW[doc["name"]](doc, fig)
        quick = " (--quick: tiny sizes, not figures)" if doc["quick"] else ""
        fig.suptitle(f"labkit bench {doc['name']}{quick}", fontsize=11)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
