"""``viz.MachineTrace``: a live gateway's events and actions, in words, in order."""

from __future__ import annotations

from wire import ClusterFactory, cluster_factory_fixture

from labkit.viz import MachineTrace

cluster_factory = cluster_factory_fixture()


async def test_a_post_seen_from_inside_both_gateways(cluster_factory: ClusterFactory) -> None:
    async with cluster_factory(gateways=2) as c:
        traces = [MachineTrace.attach(gw, limit=20) for gw in c.gateways if gw is not None]
        alice = await c.connect("alice", gateway=0)
        bob = await c.connect("bob", gateway=1)
        await alice.post("general", "hello")
        await bob.wait_for_seq("general", 1)
        alice_side = traces[0].snapshot()
        posted = next(
            i for i, r in enumerate(alice_side) if "Received" in r["event"] and "post" in r["event"]
        )
        (request,) = alice_side[posted]["actions"]
        assert request.startswith("Request") and "Append(user=alice, channel=general" in request
        reply = alice_side[posted + 1]
        assert reply["event"].startswith("Reply") and "Append: ok" in reply["event"]
        # Publish first, then the ack: the order the machine decided is the order shown.
        publish, ack = reply["actions"]
        assert publish.startswith("Publish ch:general: message channel=general seq=1 user=alice")
        assert ack.startswith("Send gw-1:") and ack.endswith("ack channel=general seq=1")
        bob_side = traces[1].snapshot()
        arrived = [r for r in bob_side if r["event"].startswith("BusMessage ch:general")]
        assert arrived and "message channel=general seq=1" in arrived[0]["event"]
        # Written to bob live (a Broadcast) or, if his cursor was still catching up when the bus
        # delivered it, by his gap-fill (a Send): either way, by his gateway's machine.
        writes = [a for r in bob_side for a in r["actions"] if "message channel=general seq=1" in a]
        assert len(writes) == 1 and writes[0].startswith(("Broadcast to 1:", "Send gw-2:"))
        assert "<table" in traces[0].table().data
        assert all(not r["event"].startswith("Tick") or r["actions"] for r in alice_side)
