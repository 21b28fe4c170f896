"""`Cluster(impl=...)` runs a learner's pieces in the live system, falling back with notices."""

from __future__ import annotations

import pytest

from labkit.lab.cluster import Cluster


async def test_untouched_exercises_fall_back_to_the_reference_with_notices() -> None:
    async with Cluster(gateways=2, impl="exercises") as cluster:
        notices = "\n".join(cluster.notices)
        for piece in ("ex02_routing", "ex05_gapfill", "ex07_typing", "ex04_resume"):
            assert f"{piece} not implemented yet" in notices, notices
        assert "append_atomic not implemented yet" in notices, notices
        alice = await cluster.connect("alice", gateway=0)
        bob = await cluster.connect("bob", gateway=1)
        ack = await alice.post("general", "still works")
        await bob.wait_for_seq("general", ack.seq)
        assert bob.texts("general") == ["still works"]


async def test_solutions_run_live_in_every_swappable_place() -> None:
    async with Cluster(gateways=2, impl="solutions") as cluster:
        assert cluster.impl.name == "solutions"
        assert all("solutions" in source for source in cluster.impl.sources.values()), (
            cluster.impl.describe()
        )
        gateway = cluster.gateways[0]
        assert gateway is not None
        assert type(gateway.core.routing).__module__ == "solutions.ex02_routing"
        assert type(gateway.typing).__module__ == "solutions.ex07_typing"
        assert gateway.store.append_impl is not None
        assert gateway.store.append_impl.__module__ == "solutions.ex01_sequencer"
        alice = await cluster.connect("alice", gateway=0)
        bob = await cluster.connect("bob", gateway=1)
        assert type(bob.state).__module__ == "solutions.ex04_resume"
        for n in range(5):
            await alice.post("eng", f"m{n}")
        await bob.wait_for_seq("eng", 5)
        assert bob.seqs("eng") == [1, 2, 3, 4, 5]
        feed = gateway.core.feeds["eng"]
        assert type(feed).__module__ == "solutions.ex05_gapfill"


async def test_an_unknown_implementation_folder_is_refused() -> None:
    with pytest.raises(LookupError):
        Cluster(gateways=1, impl="/no/such/folder")
