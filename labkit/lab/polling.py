"""Pull instead of push: a client that learns about new messages only by asking for them.

Theory of operation
-------------------
A :class:`PollingClient` drives an ordinary connected :class:`~labkit.server.client.Client` and,
every
``interval_s`` seconds, sends ``history`` with ``after`` = the highest seq it has seen. Each
request is counted; each message in a reply is a :class:`PollSample` whose latency is the time
from the message's ``ts`` (when the server assigned its seq) to the arrival of the reply that
carried it. A reply holding a full page (``limit`` messages) is followed at once by another
request, as a real poller catching up would do.

This is the *pull* half of the push-against-pull comparison, over the real wire protocol: the
requests, the replies and the clock are the real ones. Two things to keep in mind when reading
its numbers:

* The gateway still pushes ``message`` frames to this connection (every member's connection
  gets them: that is the protocol). The poller ignores them: it knows only what ``history``
  told it. A pure pull design would not push at all; the latency and request counts measured
  here are exactly what the pull half would see.
* The first poll comes after a seeded random fraction of the interval (``seed``), so pollers
  of different intervals are not in lockstep with each other or with the posts.

Expected numbers, which the notebooks measure: a message waits on average half an interval for
the next poll (plus a round trip), at worst a whole one; and an idle channel still costs one
request per interval per client, so requests grow with clients x polls, not with messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from labkit.core.records import Recording
from labkit.core.stats import percentile
from labkit.server.client import Client


@dataclass(frozen=True, slots=True)
class PollSample:
    """One message as a poller first learnt of it."""

    seq: int
    ts: float
    """When the server assigned the seq (the message's ``ts``)."""
    seen_at: float
    """When the ``history`` reply carrying it arrived."""

    @property
    def latency_s(self) -> float:
        return self.seen_at - self.ts


@dataclass(slots=True)
class PollStats:
    """What a poller spent and what it got."""

    interval_s: float
    requests: int = 0
    """``history`` requests sent."""
    empty: int = 0
    """Requests whose reply held no new message."""
    samples: list[PollSample] = field(default_factory=list)

    @property
    def messages(self) -> int:
        return len(self.samples)

    @property
    def latencies(self) -> list[float]:
        return [s.latency_s for s in self.samples]

    def summary(self) -> dict[str, float]:
        """Plain numbers: requests, empty polls, messages, requests per message, latency
        percentiles in milliseconds."""
        lat = sorted(self.latencies)
        return {
            "interval_ms": self.interval_s * 1000,
            "requests": self.requests,
            "empty": self.empty,
            "messages": self.messages,
            "requests_per_message": self.requests / self.messages if self.messages else math.inf,
            **{f"{k}_ms": v * 1000 for k, v in percentiles(lat).items()},
        }


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """``p50``, ``p95``, ``p99`` (nearest rank, :func:`labkit.core.stats.percentile`) and
    ``max`` of ``values``; NaN when empty, so a table still has a cell to print."""
    ordered = sorted(values)
    if not ordered:
        return {"p50": math.nan, "p95": math.nan, "p99": math.nan, "max": math.nan}
    return {
        "p50": percentile(ordered, 0.50),
        "p95": percentile(ordered, 0.95),
        "p99": percentile(ordered, 0.99),
        "max": ordered[-1],
    }


class PollingClient:
    """Poll ``channel`` through ``client`` every ``interval_s`` seconds; see the module notes.

    ::

        poller = PollingClient(await cluster.connect("carol"), "general", interval_s=0.5)
        await poller.start()
        ...                                  # someone posts
        await poller.wait_for_seq(10)
        await poller.stop()
        poller.stats.summary()
    """

    def __init__(
        self,
        client: Client,
        channel: str,
        interval_s: float,
        *,
        limit: int = 100,
        seed: int | None = 0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s!r}")
        if not 1 <= limit <= 1000:
            raise ValueError(f"limit must be from 1 to 1000 (the protocol's range), got {limit!r}")
        self.client = client
        self.channel = channel
        self.interval_s = interval_s
        self.limit = limit
        self.clock = clock or client.clock
        self.rng = random.Random(seed)
        self.stats = PollStats(interval_s)
        self.cursor: int | None = None
        """The highest seq learnt from a poll (None before the first one)."""
        self.head = 0
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()

    @property
    def name(self) -> str:
        return f"poll every {self.interval_s * 1000:g} ms"

    async def start(self) -> None:
        """Learn the channel's current head (one request), then poll in the background."""
        if self._task is not None:
            return
        if self.cursor is None:
            reply = await self.client.history(self.channel, 0, 1)
            self.stats.requests += 1
            self.cursor = self.head = reply.head
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"labkit-poller-{self.client.name}-{self.interval_s:g}"
        )

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        await asyncio.sleep(self.rng.uniform(0, self.interval_s))
        while True:
            await self.poll_once()
            await asyncio.sleep(self.interval_s)

    async def poll_once(self) -> list[PollSample]:
        """One poll (and, while replies come back full, the follow-up requests)."""
        fresh: list[PollSample] = []
        while True:
            after = self.cursor or 0
            reply = await self.client.history(self.channel, after, self.limit)
            seen_at = self.clock()
            self.stats.requests += 1
            self.head = reply.head
            page = [m for m in reply.messages if m.seq > after]
            for message in page:
                fresh.append(PollSample(message.seq, message.ts, seen_at))
            if page:
                self.cursor = max(m.seq for m in page)
            if len(reply.messages) < self.limit:
                break
        if not fresh:
            self.stats.empty += 1
        self.stats.samples.extend(fresh)
        async with self._changed:
            self._changed.notify_all()
        return fresh

    async def wait_for_seq(self, seq: int, timeout: float = 10.0) -> None:
        """Wait until a poll has brought ``seq`` (or a later one)."""

        async def reached() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: (self.cursor or 0) >= seq)

        try:
            await asyncio.wait_for(reached(), timeout)
        except TimeoutError:
            raise TimeoutError(
                f"{self.name}: seq {seq} of #{self.channel} not polled within {timeout:g} s"
            ) from None


def push_latencies(
    recording: Recording, client: str, channel: str, *, since: float | None = None
) -> list[float]:
    """Latencies of the ``message`` frames pushed to ``client`` in ``channel``: time received
    minus the message's ``ts``. ``since`` keeps only messages with ``ts >= since``."""
    out = []
    for r in recording.received(client, "message"):
        frame: dict[str, Any] = r.frame
        ts = frame.get("ts")
        if frame.get("channel") != channel or not isinstance(ts, int | float):
            continue
        if since is None or ts >= since:
            out.append(r.t - float(ts))
    return out
