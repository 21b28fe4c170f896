"""A seeded, virtual-time simulation of the whole labkit system.

The same pure core classes the real system runs (:class:`~labkit.core.sequencer.MemorySequencer`
inside the simulated store, :class:`~labkit.core.fanout.FanoutCore` in every simulated gateway,
:func:`~labkit.core.resume.plan_resume` and :class:`~labkit.core.resume.Cursor` for resuming,
:class:`~labkit.core.client_state.ClientState` in every simulated client,
:class:`~labkit.core.presence.PresenceTracker` for presence) run here against a simulated network,
with no sleeps, no asyncio and no sockets. Time is a number advanced by a heap of timers
(:mod:`labkit.lab.sim.clock`); randomness comes from ``random.Random`` streams derived from one
seed; every log line is stamped with virtual time. The same seed replays the same run, frame for
frame, so a lost message and its repair can be shown again and again.

Faults (:class:`SimConfig`): bus loss, duplication and reordering (per subscriber copy),
gateways cut off from the bus and healed, gateway crashes and restarts (clients reconnect to the
next gateway with backoff and resume from ``last_seen``), client connection cuts, joins and
leaves (relayed to the user's other devices), and data losses that give a channel a new epoch.
Every client records its frames exactly like the live client
(:class:`~labkit.core.records.FrameRecord`), and :func:`labkit.lab.checker.check` judges the run.

API
---
``SimConfig(users=5, gateways=3, channels=("general", "random", "eng"), posts=200,
bus_loss=0.0, bus_dup=0.0, bus_reorder=0.0, bus_delay_ms=(1, 5), crashes=0, partitions=0,
cuts=0, variant=None, duration_s=20.0, membership_changes=0, devices=1, data_losses=0, ...)``
    What to simulate. ``variant`` swaps in one weaker design from
    :data:`labkit.lab.variants.VARIANTS` (an unknown name raises ``ValueError``).

``run(seed, config=SimConfig()) -> SimResult``
    One run. ``SimResult`` holds ``seed``, ``config``, ``recording`` (every client's
    :class:`~labkit.core.records.Recording`), ``store`` (channel → stored message frames),
    ``faults`` (counts by kind: ``bus_loss``, ``bus_dup``, ``bus_reorder``, ``partition``,
    ``partition_drop``, ``crash``, ``cut``, ``reconnect``, ``data_loss``), ``epochs`` and
    ``lost`` (each channel's current epoch, and what each epoch a data loss ended held),
    ``bus_messages``, ``deliveries``, ``log`` (lines stamped with virtual time), ``report``
    (the checker's :class:`~labkit.lab.checker.Report`), ``wall_s``, ``presence`` (every presence
    transition) and ``deliveries_per_s``.

``explore(seeds, config_for_seed) -> ExploreSummary``
    One run per seed; the summary counts schedules, faults by kind, messages checked,
    deliveries and violations by kind, and keeps the first failing seed and its result.

Example::

    >>> from labkit.lab.sim import SimConfig, run
    >>> result = run(7, SimConfig(bus_loss=0.2, crashes=1, cuts=2))
    >>> result.report.ok
    True
    >>> print(result.report.render())       # doctest: +SKIP
    >>> print(result.replay_text(last=20))  # doctest: +SKIP
"""

from labkit.lab.sim.run import ExploreSummary, SimResult, World, explore, presence_flaps, run
from labkit.lab.sim.scenario import SimConfig

__all__ = [
    "ExploreSummary",
    "SimConfig",
    "SimResult",
    "World",
    "explore",
    "presence_flaps",
    "run",
]
