"""The polling client over the real protocol: requests counted, latency measured, pages chased."""

from __future__ import annotations

import math

import pytest

from labkit.core.records import FrameRecord, Recording
from labkit.lab.polling import PollingClient, PollSample, PollStats, percentiles, push_latencies
from labkit.server.cluster import Cluster


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentiles(values) == {"p50": 50.0, "p95": 95.0, "p99": 99.0, "max": 100.0}
    assert percentiles([3.0]) == {"p50": 3.0, "p95": 3.0, "p99": 3.0, "max": 3.0}
    assert all(math.isnan(v) for v in percentiles([]).values())


def test_stats_summary_in_milliseconds() -> None:
    stats = PollStats(0.5, requests=4, empty=2)
    stats.samples += [PollSample(1, 10.0, 10.1), PollSample(2, 10.0, 10.3)]
    summary = stats.summary()
    assert summary["interval_ms"] == 500 and summary["messages"] == 2
    assert summary["requests_per_message"] == 2.0
    assert summary["p50_ms"] == pytest.approx(100.0) and summary["max_ms"] == pytest.approx(300.0)
    assert PollStats(1.0).summary()["requests_per_message"] == math.inf


async def test_arguments_are_checked() -> None:
    async with Cluster(gateways=1) as cluster:
        client = await cluster.connect("carol")
        with pytest.raises(ValueError, match="interval_s"):
            PollingClient(client, "general", 0)
        with pytest.raises(ValueError, match="limit"):
            PollingClient(client, "general", 1.0, limit=1001)


async def test_a_poller_learns_messages_only_by_asking() -> None:
    async with Cluster(gateways=2, seed=1) as cluster:
        alice = await cluster.connect("alice", gateway=0)
        await alice.post("general", "before the poller started")
        poller = PollingClient(await cluster.connect("carol", gateway=1), "general", 0.05)
        await poller.start()
        assert poller.cursor == 1 and poller.stats.requests == 1  # learnt the head: one request
        for n in range(5):
            await alice.post("general", f"m{n}")
        await poller.wait_for_seq(6)
        await poller.stop()
        stats = poller.stats
        assert [s.seq for s in stats.samples] == [2, 3, 4, 5, 6]
        assert all(0 <= s.latency_s < 5 for s in stats.samples)
        assert stats.requests >= 2 and stats.requests == 1 + stats.empty + len(
            {s.seen_at for s in stats.samples}
        )
        requests = stats.requests
        assert poller._task is None and stats.requests == requests  # stopped: no more requests


async def test_a_full_page_is_followed_at_once_and_idle_polls_are_empty() -> None:
    async with Cluster(gateways=1, seed=2) as cluster:
        alice = await cluster.connect("alice")
        poller = PollingClient(await cluster.connect("carol"), "general", 10.0, limit=2)
        await poller.start()  # the background loop waits; poll_once by hand below
        for n in range(5):
            await alice.post("general", f"m{n}")
        before = poller.stats.requests
        fresh = await poller.poll_once()
        assert [s.seq for s in fresh] == [1, 2, 3, 4, 5]
        assert poller.stats.requests - before == 3  # pages of 2, 2 and 1
        assert await poller.poll_once() == [] and poller.stats.empty == 1
        await poller.stop()
        with pytest.raises(TimeoutError, match="seq 99"):
            await poller.wait_for_seq(99, timeout=0.05)


def test_push_latencies_read_a_clients_records() -> None:
    recording = Recording()
    for t, channel, ts in ((10.2, "general", 10.0), (11.5, "eng", 11.0), (12.1, "general", 12.0)):
        frame = {"type": "message", "channel": channel, "seq": 1, "ts": ts}
        recording.add(FrameRecord(t, "bob#1", "bob", 1, "in", frame))
    recording.add(FrameRecord(13.0, "carol#1", "carol", 1, "in", frame))
    assert push_latencies(recording, "bob#1", "general") == pytest.approx([0.2, 0.1])
    assert push_latencies(recording, "bob#1", "general", since=11.0) == pytest.approx([0.1])
