"""The seeded, virtual-time simulation: replay, records, faults, throughput, and 1,000 schedules."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from labkit.lab.sim import SimConfig, explore, run
from labkit.lab.sim.clock import Scheduler
from labkit.lab.sim.scenario import DATA_LOSS, make_schedule
from labkit.lab.sim.schedules import mixed_faults

ROOT = Path(__file__).resolve().parent.parent

ALL_FAULTS = SimConfig(
    bus_loss=0.2,
    bus_dup=0.1,
    bus_reorder=0.1,
    crashes=2,
    partitions=2,
    cuts=4,
    membership_changes=4,
)


mixed = mixed_faults


# -- the clock -------------------------------------------------------------------------------


def test_scheduler_runs_timers_in_time_then_insertion_order() -> None:
    sched = Scheduler()
    seen: list[tuple[float, str]] = []
    sched.at(2.0, lambda: seen.append((sched.now, "b")))
    sched.at(1.0, lambda: seen.append((sched.now, "a")))
    sched.at(2.0, lambda: seen.append((sched.now, "c")))
    sched.at(5.0, lambda: seen.append((sched.now, "late")))
    sched.run(3.0)
    assert seen == [(1.0, "a"), (2.0, "b"), (2.0, "c")]
    assert sched.now == 3.0 and sched.pending() == 1


# -- replay ----------------------------------------------------------------------------------


def test_same_seed_replays_exactly() -> None:
    first = run(11, ALL_FAULTS)
    second = run(11, ALL_FAULTS)
    assert first.recording == second.recording
    assert first.recording.to_jsonl() == second.recording.to_jsonl()
    assert first.store == second.store
    assert first.log == second.log
    assert first.faults == second.faults
    assert first.presence == second.presence


def test_different_seeds_give_different_runs() -> None:
    assert run(1, ALL_FAULTS).recording != run(2, ALL_FAULTS).recording


def test_replay_does_not_depend_on_the_hash_seed() -> None:
    """Set iteration order of strings changes with PYTHONHASHSEED; the simulator must not."""
    code = (
        "import hashlib; from labkit.lab.sim import run, SimConfig;"
        "r = run(5, SimConfig(bus_loss=0.2, bus_reorder=0.1, crashes=1, partitions=1, cuts=2,"
        " membership_changes=3, devices=2, data_losses=1));"
        "print(hashlib.sha256((r.recording.to_jsonl() + '\\n'.join(r.log)).encode()).hexdigest())"
    )
    digests = set()
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed, PYTHONPATH=str(ROOT))
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        digests.add(out.stdout.strip())
    assert len(digests) == 1


# -- what a run looks like -------------------------------------------------------------------


def test_clean_run() -> None:
    result = run(1)
    assert result.report.ok, result.report.render()
    assert result.report.messages_checked == 200
    assert result.report.posts_acked == 200
    # 5 users, all members of all 3 channels: every post reaches 5 clients, via 3 gateways
    assert result.deliveries == result.report.deliveries == 1000
    assert result.report.bus_messages_per_post == pytest.approx(3.0)
    assert result.faults == {}
    assert sorted(result.store) == ["eng", "general", "random"]
    assert result.report.latency["max"] < 0.05


def test_records_have_the_live_clients_format() -> None:
    result = run(4, SimConfig(cuts=4, membership_changes=10))
    records = result.recording.records
    kinds = {r.kind for r in records}
    assert kinds == {"in", "out", "open", "close"}
    in_types = {r.frame["type"] for r in records if r.kind == "in"}
    assert {"welcome", "message", "ack", "pong", "joined", "left"} <= in_types
    out_types = {r.frame["type"] for r in records if r.kind == "out"}
    assert {"hello", "post", "ping", "join", "leave"} <= out_types

    welcome = next(r.frame for r in records if r.frame.get("type") == "welcome")
    assert welcome["protocol"] == 1 and welcome["heartbeat_s"] == 10
    for info in welcome["channels"].values():
        assert set(info) == {"head", "epoch"}
    message = next(r.frame for r in records if r.frame.get("type") == "message")
    assert list(message) == ["type", "channel", "seq", "user", "text", "ts"]
    ack = next(r.frame for r in records if r.frame.get("type") == "ack")
    assert list(ack) == ["type", "id", "channel", "seq", "ts"]

    # As live: a session is numbered at its welcome, so a resuming hello carries the previous
    # number and the last_seen the client had reached; the welcome is followed by "open".
    resumed = [r for r in records if r.frame.get("type") == "hello" and r.session > 0]
    assert resumed, "no client reconnected"
    hello = resumed[0]
    assert set(hello.frame) == {"type", "token", "last_seen", "epochs"}
    assert hello.frame["last_seen"]
    after = [r for r in records if r.client == hello.client and r.t >= hello.t]
    welcome_rec = next(r for r in after if r.frame.get("type") == "welcome")
    assert welcome_rec.session == hello.session + 1
    opened = after[after.index(welcome_rec) + 1]
    assert opened.kind == "open" and opened.session == welcome_rec.session
    closes = [r for r in records if r.kind == "close"]
    assert all(set(r.frame) == {"code", "reason"} for r in closes)


def test_log_lines_are_stamped_with_virtual_time() -> None:
    result = run(2, ALL_FAULTS)
    assert result.log
    stamp = re.compile(r"^\[ *\d+\.\d{4}\] \S+: .+")
    assert all(stamp.match(line) for line in result.log)
    text = "\n".join(result.log)
    for what in ("crashed", "restarted", "cut off from the bus", "back on the bus", "fetches"):
        assert what in text
    times = [float(line[1:10]) for line in result.log]
    assert times == sorted(times)
    assert run(2, SimConfig(log=False)).log == []


def test_every_fault_kind_is_injected_and_survived() -> None:
    result = run(8, ALL_FAULTS)
    assert result.report.ok, result.report.render()
    for kind in (
        "bus_loss",
        "bus_dup",
        "bus_reorder",
        "partition",
        "partition_drop",
        "crash",
        "cut",
        "reconnect",
    ):
        assert result.faults.get(kind, 0) > 0, (kind, result.faults)
    assert result.stats["gateway_fetches"] > 0  # bus loss was repaired from the store
    assert result.stats["gateway_fills"] > 0  # reconnecting clients were gap-filled
    assert max(r.session for r in result.recording.records) >= 2


def test_several_devices_per_user() -> None:
    """Each device is its own connection, recorded under its user; a join or leave made on one
    device reaches the user's other devices as ``joined``/``left`` without an id."""
    config = SimConfig(users=3, devices=3, gateways=3, cuts=4, membership_changes=12)
    result = run(6, config)
    assert result.report.ok, result.report.render()
    records = result.recording.records
    assert {r.client for r in records} == {f"u{u}#{d}" for u in range(3) for d in (1, 2, 3)}
    assert all(r.client.startswith(f"{r.user}#") for r in records)
    welcomes = [r for r in records if r.frame.get("type") == "welcome"]
    assert len({r.frame["gateway"] for r in welcomes if r.user == "u0"}) > 1
    relayed = [
        r for r in records if r.frame.get("type") in ("joined", "left") and "id" not in r.frame
    ]
    assert relayed, "no membership change reached another device"
    posters = {r.client for r in records if r.frame.get("type") == "post"}
    assert len(posters) > 3  # posts come from several devices of each user
    senders: dict[tuple[str, str], set[str]] = {}
    for r in records:
        if r.frame.get("type") == "post":
            senders.setdefault((r.user, r.frame["id"]), set()).add(r.client)
    assert all(len(clients) == 1 for clients in senders.values())  # ids unique per user


def test_data_loss_starts_a_new_epoch() -> None:
    """The store loses channels; the gateways notice at a head check and send ``reset``
    (``epoch_changed``); posting goes on from seq 1 and the checker judges each epoch."""
    config = SimConfig(data_losses=3, bus_loss=0.1, cuts=2, crashes=1)
    result = run(3, config)
    assert result.report.ok, result.report.render()
    assert result.faults["data_loss"] == 3
    assert result.lost and result.stats["gateway_resets"] > 0
    resets = [r.frame for r in result.recording.records if r.frame.get("type") == "reset"]
    assert resets and all(f["reason"] == "epoch_changed" for f in resets)
    for channel, epoch in result.epochs.items():
        seqs = [f["seq"] for f in result.store[channel]]
        assert seqs == list(range(1, len(seqs) + 1))
        if epoch != "e1":
            assert any(r["channel"] == channel and r["epoch"] == epoch for r in resets)
    assert result.report.messages_checked == sum(len(v) for v in result.store.values()) + sum(
        len(lost.frames) for lost in result.lost
    )
    text = "\n".join(result.log)
    assert "store: lost #" in text


def test_data_losses_fall_in_their_window() -> None:
    config = SimConfig(data_losses=20, data_loss_from_s=10.0)
    losses = [e for e in make_schedule(config, 1).events if e.kind == DATA_LOSS]
    assert len(losses) == 20
    assert all(10.0 <= e.t <= config.duration_s - config.quiet_s for e in losses)
    assert {e.target for e in losses} <= set(range(len(config.channels) + 1))


def test_unknown_variant_is_refused() -> None:
    with pytest.raises(ValueError, match="no_bus_repair"):
        SimConfig(variant="nope")


def test_real_presence_never_flaps_on_reconnects() -> None:
    result = run(3, ALL_FAULTS)
    assert result.faults.get("cut", 0) > 0
    assert result.presence  # users came online
    assert result.presence_flaps() == 0
    assert {t.status for t in result.presence} == {"online"}


# -- throughput ------------------------------------------------------------------------------


def test_fanout_to_a_1000_user_channel_is_fast() -> None:
    """≥ 100,000 simulated deliveries per second of wall time (best of three attempts)."""
    config = SimConfig(users=1000, channels=("general",), posts=200, duration_s=10.0, log=False)
    rates = []
    for _ in range(3):
        result = run(1, config)
        assert result.report.ok, result.report.render()
        assert result.deliveries == 200 * 1000
        rates.append(result.deliveries_per_s)
        if result.deliveries_per_s >= 100_000:
            break
    assert max(rates) >= 100_000, f"simulated deliveries/s: {[round(r) for r in rates]}"


# -- exploration -----------------------------------------------------------------------------


def test_1000_seeded_schedules_keep_every_guarantee() -> None:
    summary = explore(range(1000), mixed)
    assert summary.schedules == 1000
    failure = summary.first_failure
    assert failure is None, (
        f"seed {summary.first_failing_seed} (of {summary.failed} failing: "
        f"{summary.failing_seeds[:10]}) broke a guarantee; replay it with "
        f"labkit.lab.sim.run({summary.first_failing_seed}, mixed({summary.first_failing_seed}))\n"
        + failure.report.render()
    )
    for kind in (
        "bus_loss",
        "bus_dup",
        "bus_reorder",
        "partition",
        "crash",
        "cut",
        "reconnect",
        "data_loss",
    ):
        assert summary.faults.get(kind, 0) > 0, (kind, summary.faults)
    assert {mixed(seed).devices for seed in range(1000)} == {1, 2, 3}
    assert summary.messages_checked > 45_000
    assert summary.wall_s < 60
    assert ":valid? true" in summary.render()


def test_explore_names_the_first_failing_seed() -> None:
    summary = explore(
        range(3),
        lambda seed: SimConfig(variant="resume_from_head", cuts=4, log=False),
    )
    assert not summary.ok
    assert summary.first_failing_seed == summary.failing_seeds[0]
    assert summary.first_failure is not None
    assert summary.violations.get("gap", 0) > 0
    assert f":first-failing-seed {summary.first_failing_seed}" in summary.render()


def test_command_line_explores_and_exposes_every_variant(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from labkit.lab.sim.__main__ import main

    assert main(["explore", "--schedules", "20"]) == 0
    assert ":valid? true" in capsys.readouterr().out
    assert main(["variants"]) == 0
    out = capsys.readouterr().out
    for name in (
        "read_then_write_sequencer",
        "resume_from_head",
        "no_bus_repair",
        "history_before_subscribe",
        "flapping_presence",
    ):
        line = next(line for line in out.splitlines() if line.startswith(name))
        assert "real design: ok" in line and "no message violation" not in line, line
