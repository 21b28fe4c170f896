"""sim: simulated deliveries per second of wall time in the seeded simulation.

Workload: :func:`labkit.lab.sim.run` with fixed seeds; every user is a member of the three demo
channels, so a post is delivered to every connected user. The sizes grow from a classroom
(50 users) to 1,000 users, plus one run with faults (10% bus loss, a gateway crash, cuts) to show
what repairs cost. The human-readable log is off (``log=False``), as for any bulk run; the
checker's time is not counted (``SimResult.wall_s`` excludes it). Each size runs ``repeat``
times; the median is reported. No baseline: the target is absolute.

Target: ≥ 100,000 simulated deliveries per second at the headline size (200 users).
"""

from __future__ import annotations

import cProfile
from typing import Any

from labkit.bench.context import Context, Skip
from labkit.bench.profiles import summarise
from labkit.bench.schema import Result
from labkit.core.stats import percentile

NAME = "sim"
HEADLINE_USERS = 200


def _configs(quick: bool) -> list[dict[str, Any]]:
    if quick:
        return [{"users": 5, "posts": 50, "duration_s": 6.0}]
    return [
        {"users": 50, "posts": 2000},
        {"users": HEADLINE_USERS, "posts": 2000},
        {"users": 1000, "posts": 500},
        {"users": HEADLINE_USERS, "posts": 2000, "bus_loss": 0.1, "crashes": 1, "cuts": 20},
    ]


def _label(cfg: dict[str, Any]) -> str:
    extra = [f"{k}={v}" for k, v in cfg.items() if k not in ("users", "posts", "duration_s")]
    label = f"{cfg['users']} users, {cfg['posts']} posts"
    return label + "".join(f", {e}" for e in extra)


async def run(ctx: Context, result: Result) -> None:
    try:
        from labkit.lab.sim import SimConfig
        from labkit.lab.sim import run as sim_run
    except ImportError as exc:
        raise Skip(f"labkit.lab.sim is not available yet ({exc})") from exc
    repeat = 1 if ctx.quick else ctx.repeat
    configs = _configs(ctx.quick)
    result.params = {"configs": configs, "seed": 1, "runs": repeat, "log": False}
    runs = []
    with ctx.progress("sim", len(configs) * repeat) as bar:
        for cfg in configs:
            samples = []
            for r in range(repeat):
                sim = sim_run(1 + r, SimConfig(log=False, **cfg))
                samples.append(
                    {
                        "deliveries": sim.deliveries,
                        "wall_s": sim.wall_s,
                        "rate": sim.deliveries_per_s,
                        "ok": sim.ok,
                        "events": sim.events,
                    }
                )
                bar.advance()
            best = percentile(sorted(samples, key=lambda s: s["rate"]), 0.5)
            runs.append(
                {
                    "config": _label(cfg),
                    "users": cfg["users"],
                    "deliveries": best["deliveries"],
                    "wall_s": round(best["wall_s"], 4),
                    "deliveries_per_s": round(best["rate"], 1),
                    "timers_per_s": round(best["events"] / max(best["wall_s"], 1e-9), 1),
                    "checker_ok": all(s["ok"] for s in samples),
                    "spread": round(
                        (max(s["rate"] for s in samples) - min(s["rate"] for s in samples))
                        / best["rate"],
                        3,
                    ),
                }
            )
    headline = next((r for r in runs if r["users"] == HEADLINE_USERS), runs[0])
    result.systems["labkit.sim"] = {
        "status": "ok",
        "deliveries_per_s": headline["deliveries_per_s"],
        "headline_config": headline["config"],
        "runs": runs,
    }
    if ctx.profile and not ctx.quick:
        profiler = cProfile.Profile()
        profiler.enable()
        sim_run(1, SimConfig(log=False, users=HEADLINE_USERS, posts=2000))
        profiler.disable()
        ctx.logs.mkdir(parents=True, exist_ok=True)
        path = ctx.logs / "sim.prof"
        profiler.dump_stats(str(path))
        result.profile["labkit.lab.sim.run"] = summarise(path)
    result.headline = {
        "metric": "deliveries_per_s",
        "unit": "deliveries/s",
        "value": headline["deliveries_per_s"],
        "baseline": None,
        "ratio": None,
        "config": headline["config"],
    }
    result.set_target(
        "≥ 100,000 simulated deliveries per wall second",
        headline["deliveries_per_s"],
        ">=",
        100_000.0,
    )
