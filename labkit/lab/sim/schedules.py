"""Named, seeded fault schedules: the ones the tests, the docs and the notebooks share.

``mixed_faults(seed)`` gives every seed a different mix of every fault kind, so exploring a
range of seeds explores a range of schedules. ``VARIANT_SCENARIOS`` holds, for each weaker
design, a scenario in which the checker catches it (and the real design passes).
"""

from __future__ import annotations

from labkit.lab.sim.scenario import SimConfig


def mixed_faults(seed: int) -> SimConfig:
    """A different mix of bus loss, duplication, reordering, partitions, crashes, client cuts
    and membership changes for each seed; one seed in four gives users two or three devices,
    one in five loses data once (late in the run: see ``SimConfig.data_loss_from_s``)."""
    return SimConfig(
        users=3 + seed % 4,
        devices=(1, 1, 2, 1, 1, 1, 3, 1)[(seed // 3) % 8],
        gateways=2 + seed % 3,
        posts=50,
        duration_s=10.0,
        bus_loss=(0.0, 0.05, 0.2, 0.5)[seed % 4],
        bus_dup=(0.0, 0.1, 0.3)[seed % 3],
        bus_reorder=(0.0, 0.1, 0.3)[(seed // 3) % 3],
        crashes=seed % 3,
        partitions=(seed // 2) % 3,
        cuts=(seed // 5) % 4,
        membership_changes=seed % 4,
        data_losses=1 if (seed // 2) % 5 == 1 else 0,
        data_loss_from_s=4.0,
        log=False,
    )


VARIANT_SCENARIOS: dict[str, tuple[int, dict[str, object]]] = {
    "read_then_write_sequencer": (1, {"bus_reorder": 0.3, "bus_loss": 0.1}),
    "resume_from_head": (1, {"cuts": 4}),
    "no_bus_repair": (1, {"bus_loss": 0.3}),
    "history_before_subscribe": (
        1,
        {
            "posts": 1500,
            "duration_s": 10.0,
            "cuts": 30,
            "membership_changes": 10,
            "store_delay_ms": (2.0, 10.0),
        },
    ),
    "flapping_presence": (5, {"cuts": 6, "crashes": 1}),
}
"""variant name → (seed, SimConfig overrides) of a scenario that exposes it."""


def variant_config(name: str, variant: str | None) -> tuple[int, SimConfig]:
    """The seed and config of ``name``'s scenario, run with ``variant`` (None: the real design)."""
    seed, overrides = VARIANT_SCENARIOS[name]
    return seed, SimConfig(variant=variant, log=False, **overrides)  # type: ignore[arg-type]
