"""The one percentile labkit reports: nearest rank, on an ascending sequence. Pure, no I/O.

Every latency labkit prints (the checker's ``:latency``, the polling lab's table, the latency
plots, ``labkit bench``) is a percentile of measured delays, and the same sample must give the
same p99 wherever it is shown. So there is one definition, here.

Why nearest rank rather than linear interpolation: the value reported is always one that was
measured (a student can find the message that took that long), and "p99 = 12 ms" then reads
literally: at least 99 % of the samples took 12 ms or less, and one of them took exactly 12 ms.
Interpolation would invent a delay between two samples, and with few samples (a notebook run of
a few dozen messages) the invented value can sit far from both.

The definition (the "nearest-rank method" of Wikipedia's "Percentile" article): the q-quantile
of ``n`` ascending values is the value of rank ``ceil(q * n)`` (ranks count from 1), and the
smallest value for ``q = 0``. ``q * n`` is rounded to 9 decimals before the ceiling, so binary
floating point cannot push an exact rank up by one (``0.07 * 100`` is ``7.000000000000001``,
and the 7th value is meant, not the 8th).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def percentile(ordered: Sequence[T], q: float) -> T:
    """The nearest-rank ``q``-quantile of ``ordered``, an ascending, non-empty sequence.

    ``q`` is a fraction, ``0 <= q <= 1``: ``0.5`` for the median, ``0.99`` for p99, ``1`` for
    the largest value. The caller sorts once and may ask for several quantiles of the same
    list; an unsorted sequence gives a meaningless answer (it is not checked, which would cost
    a pass over the data per call). Any element type works, so a list of runs sorted by their
    rate can be asked for its median run.

    Raises ``ValueError`` for an empty sequence or a ``q`` outside ``[0, 1]``: there is no
    honest number to return, and callers decide what "no samples" shows (NaN, nothing, ...).
    """
    n = len(ordered)
    if n == 0:
        raise ValueError("percentile of an empty sequence")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be between 0 and 1, got {q!r}")
    rank = max(1, math.ceil(round(q * n, 9)))
    return ordered[min(rank, n) - 1]
