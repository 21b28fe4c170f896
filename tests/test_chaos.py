"""labkit.lab.chaos: randomized live scenarios over real WebSockets, judged by the checker.

Each scenario prints its report (and so its seed and replay command) when it fails. The real
``redis-server`` runs are private servers on free ports; nothing here touches 127.0.0.1:6379 or
``LABKIT_REDIS_URL``.
"""

from __future__ import annotations

import random

import pytest

from labkit.cli import main as cli_main
from labkit.lab import chaos
from labkit.lab.chaos import ChaosOptions, make_plan, run_chaos
from labkit.lab.faults import BusKnobs
from labkit.server.redis_server import RedisServer


async def test_chaos_on_fakeredis_has_no_violations() -> None:
    options = ChaosOptions(
        users=6,
        posts=150,
        gateways=3,
        seed=101,
        bus=BusKnobs(loss=0.15, dup=0.05, reorder=0.05, jitter_ms=10),
        gateway_faults=3,
        client_cuts=3,
        slow_consumers=1,
        redis_faults=2,
    )
    result = await run_chaos(options)
    print(result.render())
    assert result.ok, result.render()
    assert result.report.messages_checked == 150
    assert result.report.posts_acked == 150
    faults = result.faults
    for kind in ("bus_lost", "bus_duplicated", "gateway_crash", "gateway_drain", "partition"):
        assert faults.get(kind, 0) >= 1, f"seed 101: no {kind} injected\n{result.render()}"
    assert faults["client_cut"] == 3 and faults["redis_outage"] == 1


@pytest.mark.real_redis
async def test_chaos_on_redis_server_with_aof_restart_has_no_violations(
    redis_server_binary: str,
) -> None:
    options = ChaosOptions(
        users=5,
        posts=150,
        gateways=3,
        seed=202,
        real_redis=True,
        bus=BusKnobs(loss=0.1, dup=0.05, reorder=0.05, jitter_ms=10),
        gateway_faults=3,
        client_cuts=2,
        slow_consumers=1,
        redis_faults=2,  # an outage and a kill + restart
    )
    with RedisServer(appendonly=True, appendfsync="always", binary=redis_server_binary) as server:
        result = await run_chaos(options, redis_server=server)
    print(result.render())
    assert result.ok, result.render()
    assert result.report.messages_checked == 150
    assert result.faults["redis_restart"] == 1, result.render()
    assert "AOF" in result.store


def test_the_plan_is_fixed_by_the_seed() -> None:
    o = ChaosOptions(seed=7, redis_faults=2)
    first = make_plan(o, 7, own_redis=True, rng=random.Random(7))
    again = make_plan(o, 7, own_redis=True, rng=random.Random(7))
    other = make_plan(o, 7, own_redis=True, rng=random.Random(8))
    assert first == again
    assert first != other
    actions = sorted(p.action for p in first)
    assert actions.count("cut") == o.client_cuts
    assert {"crash", "drain", "partition", "slow", "redis_outage", "redis_restart"} <= set(actions)
    heavy = sorted((p for p in first if p.action != "cut"), key=lambda p: p.at)
    assert [p.at for p in heavy] == sorted({p.at for p in heavy})  # one stretch each


def test_no_redis_faults_on_a_redis_we_do_not_own() -> None:
    o = ChaosOptions(seed=3, redis_faults=2)
    plan = make_plan(o, 7, own_redis=False, rng=random.Random(3))
    assert not {"redis_outage", "redis_restart"} & {p.action for p in plan}


def test_help_explains_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli_main(["chaos", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--users", "--posts", "--gateways", "--seed", "--redis", "--real-redis"):
        assert flag in out
    for flag in ("--bus-loss", "--bus-delay-ms", "--bus-jitter-ms", "--bus-dup", "--bus-reorder"):
        assert flag in out
    assert "exits 1" in out


def test_cli_runs_a_scenario_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["chaos", "--users", "3", "--posts", "30", "--gateways", "2", "--seed", "5"]
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    assert ":valid? true" in out and "replay: labkit chaos --seed 5" in out


def test_cli_exits_1_on_violations(capsys: pytest.CaptureFixture[str]) -> None:
    # A weaker design (labkit.lab.weak) under bus loss: the checker must catch it.
    argv = [
        "--variant", "no_bus_repair", "--bus-loss", "0.3", "--users", "3", "--posts", "40",
        "--gateways", "2", "--seed", "6", "--gateway-faults", "0", "--cuts", "0",
        "--slow-consumers", "0", "--redis-faults", "0", "--settle-s", "3",
    ]  # fmt: skip
    assert chaos.main(argv) == 1
    out = capsys.readouterr().out
    assert ":valid? false" in out and "WEAK VARIANT no_bus_repair" in out


def test_bad_flags_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        chaos.main(["--bus-loss", "2"])
    assert done.value.code == 2
    assert "probability" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        chaos.main(["--variant", "no_such_thing"])
