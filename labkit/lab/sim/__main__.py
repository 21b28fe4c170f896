"""``python -m labkit.sim``: explore seeded fault schedules and expose the weaker designs.

    python -m labkit.sim explore --schedules 1000 [--first-seed 0]
    python -m labkit.sim variants

``explore`` exits 1 if any schedule violates a guarantee and prints the first failing seed;
``python -m labkit.sim replay SEED`` then prints that run's log, line by line in virtual time.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence

from labkit.lab.sim.run import explore, run
from labkit.lab.sim.schedules import VARIANT_SCENARIOS, mixed_faults, variant_config


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m labkit.sim",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("explore", help="run many seeded schedules of mixed faults")
    ex.add_argument("--schedules", type=int, default=1000)
    ex.add_argument("--first-seed", type=int, default=0)
    sub.add_parser("variants", help="run each weaker design in the scenario that exposes it")
    rp = sub.add_parser("replay", help="print the log of one mixed-faults schedule")
    rp.add_argument("seed", type=int)
    args = parser.parse_args(argv)

    if args.command == "explore":
        if args.schedules < 1:
            parser.error("--schedules must be at least 1")
        seeds = range(args.first_seed, args.first_seed + args.schedules)
        summary = explore(seeds, mixed_faults)
        print(summary.render())
        return 0 if summary.ok else 1
    if args.command == "replay":
        config = mixed_faults(args.seed)
        config.log = True
        result = run(args.seed, config)
        print("\n".join(result.log))
        print(result.report.render())
        return 0 if result.report.ok else 1
    failures = 0
    for name in VARIANT_SCENARIOS:
        seed, real_config = variant_config(name, None)
        _, weak_config = variant_config(name, name)
        real, weak = run(seed, real_config), run(seed, weak_config)
        found = Counter(v.kind for v in weak.report.violations)
        shown = ", ".join(f"{n} {k}" for k, n in sorted(found.items())) or "no message violation"
        if name == "flapping_presence":
            shown = f"{weak.presence_flaps()} presence flaps (real design: {real.presence_flaps()})"
        verdict = "ok" if real.report.ok else "VIOLATIONS"
        print(f"{name:28} seed {seed}: {shown}; real design: {verdict}")
        failures += not real.report.ok
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
