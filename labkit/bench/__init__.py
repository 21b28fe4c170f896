"""``labkit bench``: labkit measured against baselines and peers, in the same run.

Benchmarks (one module each): :mod:`~labkit.bench.fanout`, :mod:`~labkit.bench.latency`,
:mod:`~labkit.bench.post`, :mod:`~labkit.bench.connections`, :mod:`~labkit.bench.resume`,
:mod:`~labkit.bench.sim`. Servers run in their own processes (:mod:`~labkit.bench.servers`),
clients in another (:mod:`~labkit.bench.harness`, the same harness for every system), each
Redis is a private ``redis-server``. Results: :mod:`~labkit.bench.schema`; plots:
:mod:`~labkit.bench.plots`; the write-up: ``docs/benchmarks.md``.
"""

from labkit.bench.runner import main

__all__ = ["main"]
