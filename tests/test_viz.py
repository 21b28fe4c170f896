"""The notebook widgets: their snapshots on hand-made records, and live on a real cluster.

The pure parts (``FanoutModel``, ``TimelineModel``, the presence board on a recording) are fed
:class:`~labkit.core.records.FrameRecord` lists written out by hand, so each test reads like the run
it describes. The live tests start a real in-process cluster on the embedded store and wait on
conditions (a client's seq, the checker's verdict), never on fixed sleeps.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from labkit import viz
from labkit.core.records import FrameRecord, Recording
from labkit.lab.cluster import Cluster
from labkit.lab.routing_variants import use_routing
from labkit.viz.base import LiveWidget
from labkit.viz.svg import PALETTE, el, table_html, text
from labkit.viz.tap import BusEvent

# --------------------------------------------------------------------------- record helpers


class Run:
    """Writes a recording the way clients do: ``run.open("alice#1", "gw-1")`` and so on."""

    def __init__(self) -> None:
        self.recording = Recording()
        self.t = 100.0
        self.sessions: dict[str, int] = {}

    def _add(self, client: str, kind: Any, frame: dict[str, Any], dt: float = 0.1) -> None:
        self.t += dt
        user = client.split("#")[0]
        self.recording.add(
            FrameRecord(self.t, client, user, self.sessions.get(client, 0), kind, frame)
        )

    def hello(self, client: str, last_seen: dict[str, int] | None = None) -> None:
        self._add(client, "out", {"type": "hello", "token": "t", "last_seen": last_seen or {}})

    def welcome(self, client: str, gateway: str, heads: dict[str, int], epoch: str = "e1") -> None:
        self.sessions[client] = self.sessions.get(client, 0) + 1
        channels = {ch: {"head": h, "epoch": epoch} for ch, h in heads.items()}
        self._add(client, "in", {"type": "welcome", "gateway": gateway, "channels": channels})
        self._add(client, "open", {"url": "ws://x", "gateway": gateway}, dt=0.0)

    def message(self, client: str, channel: str, seq: int, dt: float = 0.1) -> None:
        frame = {"type": "message", "channel": channel, "seq": seq, "user": "u", "text": "t"}
        self._add(client, "in", {**frame, "ts": self.t}, dt)

    def ack(self, client: str, channel: str, seq: int) -> None:
        self._add(client, "in", {"type": "ack", "id": "p", "channel": channel, "seq": seq})

    def close(self, client: str) -> None:
        self._add(client, "close", {"code": 1006, "reason": ""})

    def reset(self, client: str, channel: str, head: int, epoch: str, reason: str) -> None:
        frame = {"type": "reset", "channel": channel, "head": head, "epoch": epoch}
        self._add(client, "in", {**frame, "reason": reason})


# --------------------------------------------------------------------------- fanout graph


def two_gateway_run() -> Run:
    run = Run()
    for client, gateway in (("alice#1", "gw-1"), ("bob#1", "gw-2"), ("bob#2", "gw-1")):
        run.hello(client)
        run.welcome(client, gateway, {"eng": 0})
    run.ack("alice#1", "eng", 1)
    for client in ("alice#1", "bob#1", "bob#2"):
        run.message(client, "eng", 1)
    return run


def test_fanout_model_counts_deliveries_per_gateway_and_user() -> None:
    run = two_gateway_run()
    model = viz.FanoutModel("eng", ["gw-1", "gw-2", "gw-3"], ["alice", "bob", "carol"])
    model.feed_records(run.recording.records)
    assert model.posts.keys() == {1}
    assert dict(model.deliveries) == {("gw-1", "alice"): 1, ("gw-2", "bob"): 1, ("gw-1", "bob"): 1}
    assert dict(model.connections()) == {
        ("gw-1", "alice"): 1,
        ("gw-2", "bob"): 1,
        ("gw-1", "bob"): 1,
    }
    run.close("bob#1")
    model.feed_records(run.recording.records)  # only the new record is read
    assert ("gw-2", "bob") not in model.connections()
    assert model.deliveries[("gw-2", "bob")] == 1  # what crossed the edge stays counted


def test_fanout_graph_snapshot_shape_and_path_with_a_repair() -> None:
    run = two_gateway_run()
    events = [
        BusEvent(100.0, "gw-1", "eng", 1, "bus"),
        BusEvent(100.1, "gw-2", "eng", 1, "repair"),
        BusEvent(100.1, "gw-3", "eng", 1, "wasted"),
    ]
    graph = viz.FanoutGraph.replay(
        run.recording, "eng", gateways=["gw-1", "gw-2", "gw-3"], bus_events=events
    )
    snap = graph.snapshot()
    assert snap["channel"] == "eng" and snap["mode"] == "users"
    assert (snap["posts"], snap["deliveries"], snap["lost"], snap["wasted"]) == (1, 3, 1, 1)
    kinds = {n["id"]: n["kind"] for n in snap["nodes"]}
    assert kinds == {
        "server": "server",
        "store": "store",
        "bus": "bus",
        "gw-1": "gateway",
        "gw-2": "gateway",
        "gw-3": "gateway",
        "user:alice": "user",
        "user:bob": "user",
    }
    edges = {(e["source"], e["target"]): e for e in snap["edges"]}
    assert edges["store", "gw-2"]["count"] == 1 and edges["store", "gw-2"]["state"] == "repair"
    assert edges["bus", "gw-3"]["wasted"] == 1
    assert edges["gw-1", "user:bob"]["count"] == 1
    path = snap["path"]
    assert path["seq"] == 1
    assert path["lost"] == [["bus", "gw-2"]] and path["repaired"] == [["store", "gw-2"]]
    assert path["wasted"] == [["bus", "gw-3"]]
    assert ["gw-2", "user:bob"] in path["edges"] and ["bus", "gw-1"] in path["edges"]
    json.dumps(snap)  # plain data


def test_fanout_graph_layout_stays_put_and_new_users_go_below() -> None:
    run = two_gateway_run()
    graph = viz.FanoutGraph.replay(run.recording, "eng", members=["alice", "bob"])
    before = {n["id"]: (n["x"], n["y"]) for n in graph.snapshot()["nodes"]}
    run.hello("zed#1")
    run.welcome("zed#1", "gw-2", {"eng": 1})
    run.message("zed#1", "eng", 2)
    run.message("alice#1", "eng", 2)
    asyncio.run(graph.update())
    after = {n["id"]: (n["x"], n["y"]) for n in graph.snapshot()["nodes"]}
    assert all(after[node] == xy for node, xy in before.items())
    assert after["user:zed"][1] > max(
        y for node, (_x, y) in before.items() if node.startswith("user:")
    )
    assert graph.snapshot()["path"]["seq"] == 2


def test_fanout_graph_aggregates_past_the_threshold() -> None:
    run = Run()
    members = [f"m{i:03d}" for i in range(40)]
    for i, user in enumerate(members):
        run.hello(f"{user}#1")
        run.welcome(f"{user}#1", f"gw-{i % 2 + 1}", {"big": 0})
        run.message(f"{user}#1", "big", 1, dt=0.0)
    graph = viz.FanoutGraph.replay(run.recording, "big", aggregate_above=24)
    snap = graph.snapshot()
    assert snap["mode"] == "aggregate"
    nodes = {n["id"]: n for n in snap["nodes"]}
    assert not any(node.startswith("user:") for node in nodes)
    assert nodes["conns:gw-1"]["connections"] == 20 and nodes["conns:gw-2"]["connections"] == 20
    edges = {(e["source"], e["target"]): e["count"] for e in snap["edges"]}
    assert edges["gw-1", "conns:gw-1"] == 20 and edges["gw-2", "conns:gw-2"] == 20


def test_fanout_graph_slider_and_show_message_pick_the_path() -> None:
    run = two_gateway_run()
    run.ack("alice#1", "eng", 2)
    run.message("alice#1", "eng", 2)
    graph = viz.FanoutGraph.replay(run.recording, "eng")
    assert graph.snapshot()["path"]["seq"] == 2
    graph.show_message(1)
    assert graph.snapshot()["path"]["seq"] == 1
    assert ["gw-2", "user:bob"] in graph.snapshot()["path"]["edges"]
    graph._slider.value = 2  # the newest: follow new messages again
    assert graph.highlighted == 2 and graph._pinned is None


async def test_fanout_graph_live_shows_subscriptions_loss_and_repair() -> None:
    async with Cluster(gateways=3, seed=1) as cluster:
        graph = await viz.FanoutGraph.attach(cluster, "eng")
        alice = await cluster.connect("alice", gateway=0)
        bob = await cluster.connect("bob", gateway=1)
        await cluster.connect("dave", gateway=2)  # not in #eng
        await alice.post("eng", "one")
        await bob.wait_for_seq("eng", 1)
        cluster.faults.set_bus("gw-2", loss=1.0)  # gw-2 hears nothing more from the bus
        await alice.post("eng", "two")
        await bob.wait_for_seq("eng", 2)  # repaired from the store by gw-2's head check
        cluster.faults.clear_bus()
        snap = await graph.update()
        states = {n["id"]: n.get("state") for n in snap["nodes"] if n["kind"] == "gateway"}
        assert states == {"gw-1": "subscribed", "gw-2": "subscribed", "gw-3": "not subscribed"}
        edges = {(e["source"], e["target"]): e for e in snap["edges"]}
        assert edges["bus", "gw-3"]["state"] == "unsubscribed"
        assert edges["store", "gw-2"]["count"] == 1
        assert snap["path"] == {
            "seq": 2,
            "edges": [
                ["server", "store"],
                ["server", "bus"],
                ["bus", "gw-1"],
                ["gw-1", "user:alice"],
                ["gw-2", "user:bob"],
            ],
            "lost": [["bus", "gw-2"]],
            "repaired": [["store", "gw-2"]],
            "wasted": [],
        }
        await cluster.stop_gateway(2)
        snap = await graph.update()
        assert {n["id"]: n.get("state") for n in snap["nodes"]}["gw-3"] == "down"
        assert "<svg" in graph.to_html() and PALETTE["lost"] in graph.to_html()


async def test_fanout_graph_counts_wasted_deliveries_under_broadcast() -> None:
    cluster = Cluster(gateways=3, seed=1)
    use_routing(cluster, "broadcast")
    async with cluster:
        graph = await viz.FanoutGraph.attach(cluster, "eng")
        alice = await cluster.connect("alice", gateway=0)
        await cluster.connect("dave", gateway=1)  # gw-2 holds nobody of #eng
        await alice.post("eng", "hi")
        tap = graph.tap
        assert tap is not None

        async def all_three_heard() -> None:
            while len({e.gateway for e in tap.events if e.channel == "eng"}) < 3:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(all_three_heard(), 5)
        snap = await graph.update()
        assert snap["wasted"] == 2  # gw-2 and gw-3 got it for nobody
        assert {n["id"]: n.get("state") for n in snap["nodes"]}["gw-3"] == "all topics"
        assert sorted(map(tuple, snap["path"]["wasted"])) == [("bus", "gw-2"), ("bus", "gw-3")]


def test_a_seeded_simulation_replays_the_same_pictures() -> None:
    from labkit.lab.sim import SimConfig, run

    config = SimConfig(bus_loss=0.2, cuts=2, crashes=1, posts=60)
    first, again = run(5, config), run(5, config)
    graphs = [viz.FanoutGraph.replay(r, "general").snapshot() for r in (first, again)]
    timelines = [viz.SequenceTimeline.of(r, channel="general").snapshot() for r in (first, again)]
    assert graphs[0] == graphs[1] and timelines[0] == timelines[1]
    assert graphs[0]["deliveries"] == sum(
        1 for r in first.recording.received(type="message") if r.frame["channel"] == "general"
    )
    assert timelines[0]["totals"]["missing"] == 0 and timelines[0]["totals"]["gap_filled"] > 0
    boards = viz.PresenceBoard.replay(first).snapshot()
    assert {row["user"] for row in boards["users"]} == {"u0", "u1", "u2", "u3", "u4"}


# --------------------------------------------------------------------------- timeline


def test_timeline_categories_as_a_client_drops_and_resumes() -> None:
    run = Run()
    run.hello("bob#1")
    run.welcome("bob#1", "gw-1", {"general": 2})  # joined at head 2: seqs 1-2 are not owed
    run.message("bob#1", "general", 3)
    run.message("bob#1", "general", 4)
    run.close("bob#1")
    run.ack("alice#1", "general", 5)  # others see 5 and 6 exist meanwhile
    run.ack("alice#1", "general", 6)
    t_away = run.t
    run._add("alice#1", "out", {"type": "ping"}, dt=3.0)  # time passes
    run.hello("bob#1", {"general": 4})
    run.welcome("bob#1", "gw-2", {"general": 6})
    run.message("bob#1", "general", 5)  # gap-filled
    run.message("bob#1", "general", 6)
    run.message("bob#1", "general", 7)  # live again
    run.message("bob#1", "general", 7)  # a duplicate
    timeline = viz.SequenceTimeline(run.recording, channel="general", clients=["bob#1"])
    end = timeline.snapshot()
    (row,) = end["rows"]
    assert (row["client"], row["channel"], row["life"], row["first"]) == ("bob#1", "general", 1, 3)
    assert row["live"] == [3, 4, 7] and row["gap_filled"] == [5, 6]
    assert row["missing"] == [] and row["duplicate"] == [7] and row["reset"] == []
    assert end["totals"] == {"live": 3, "gap_filled": 2, "missing": 0, "duplicate": 1, "reset": 0}
    t0 = run.recording.records[0].t
    timeline.show_time(t_away + 2.5 - t0)  # away for more than settle_s: 5 and 6 are missing
    (row,) = timeline.snapshot()["rows"]
    assert row["live"] == [3, 4] and row["missing"] == [5, 6] and row["gap_filled"] == []
    assert set(end["legend"]) == {
        "live",
        "gap-filled",
        "missing",
        "duplicate",
        "skipped by reset",
    }


def test_timeline_reset_too_far_behind_and_a_new_epoch_start_a_new_life() -> None:
    run = Run()
    run.hello("bob#1")
    run.welcome("bob#1", "gw-1", {"general": 0})
    run.message("bob#1", "general", 1)
    run.reset("bob#1", "general", 1500, "e1", "too_far_behind")
    run.message("bob#1", "general", 1501)
    run.reset("bob#1", "general", 0, "e2", "epoch_changed")
    run.message("bob#1", "general", 1)
    rows = viz.SequenceTimeline(run.recording).snapshot()["rows"]
    assert [(r["life"], r["epoch"]) for r in rows] == [(1, "e1"), (2, "e2")]
    assert len(rows[0]["reset"]) == 1499 and rows[0]["live"] == [1, 1501]
    assert rows[0]["missing"] == []
    assert rows[1]["live"] == [1] and rows[1]["missing"] == []


def test_timeline_resume_without_last_seen_shows_what_vanished() -> None:
    run = Run()
    run.hello("bob#1")
    run.welcome("bob#1", "gw-1", {"general": 0})
    run.message("bob#1", "general", 1)
    run.close("bob#1")
    run.hello("bob#1")  # the resume_from_head bug: no last_seen
    run.welcome("bob#1", "gw-1", {"general": 5})
    run.message("bob#1", "general", 6)
    (row,) = viz.SequenceTimeline(run.recording).snapshot()["rows"]
    assert row["missing"] == [2, 3, 4, 5] and row["live"] == [1, 6]


async def test_timeline_follows_a_live_cluster() -> None:
    async with Cluster(gateways=2, seed=2) as cluster:
        timeline = viz.SequenceTimeline(cluster.recording, channel="eng", settle_s=0.2)
        timeline.follow(0.05)
        alice = await cluster.connect("alice", gateway=0)
        bob = await cluster.connect("bob", gateway=1)
        for n in range(3):
            await alice.post("eng", f"m{n}")
        await bob.wait_for_seq("eng", 3)
        snap = await timeline.unfollow()
        assert not timeline.following and timeline.errors == 0
        rows = {r["client"]: r for r in snap["rows"]}
        assert rows["bob#1"]["live"] == [1, 2, 3] and rows["alice#1"]["live"] == [1, 2, 3]


# --------------------------------------------------------------------------- presence board


def test_presence_board_replay_from_records() -> None:
    run = Run()
    run.hello("carol#1")
    run.welcome("carol#1", "gw-1", {"general": 0})
    run.hello("bob#1")
    run.welcome("bob#1", "gw-1", {"general": 0})
    run.hello("bob#2")
    run.welcome("bob#2", "gw-2", {"general": 0})
    for status in ("online", "offline", "online"):
        frame = {"type": "presence", "user": "bob", "status": status, "last_active": run.t}
        run._add("carol#1", "in", frame)
    run._add("carol#1", "in", {"type": "typing", "channel": "general", "user": "bob"})
    run.close("bob#2")
    run._add("carol#1", "out", {"type": "ping"}, dt=1.0)
    board = viz.PresenceBoard.replay(run.recording, heartbeat_s=10.0)
    snap = board.snapshot()
    assert snap["source"] == "records" and snap["expiry_s"] == 30.0
    rows = {r["user"]: r for r in snap["users"]}
    assert rows["bob"]["status"] == "online" and rows["bob"]["devices"] == 1
    assert rows["bob"]["typing"] == ["general"] and rows["bob"]["changes"] == 2
    assert rows["carol"]["heartbeat_age_s"] == 0.0
    later = viz.PresenceBoard.replay(run.recording, heartbeat_s=10.0, now=run.t + 60)
    rows = {r["user"]: r for r in later.snapshot()["users"]}
    assert rows["bob"]["status"] == "offline" and rows["bob"]["typing"] == []
    assert "typing in #general" in board.to_html()


async def test_presence_board_live_reads_the_presence_store() -> None:
    async with Cluster(gateways=2, seed=3, heartbeat_s=1.0) as cluster:
        alice = await cluster.connect("alice", gateway=0)
        await cluster.connect("alice", gateway=1)
        bob = await cluster.connect("bob", gateway=1)
        board = await viz.PresenceBoard.attach(cluster, users=["alice", "bob", "carol"])
        await alice.typing("general")
        await bob.wait_until(lambda: bool(bob.typing_events))
        snap = await board.update()
        rows = {r["user"]: r for r in snap["users"]}
        assert snap["source"] == "presence store"
        assert rows["alice"]["status"] == "online" and rows["alice"]["devices"] == 2
        assert rows["alice"]["typing"] == ["general"]
        assert rows["carol"]["status"] == "offline" and rows["carol"]["heartbeat_age_s"] is None


# --------------------------------------------------------------------------- chaos panel


async def test_chaos_panel_buttons_act_and_the_verdict_follows() -> None:
    async with Cluster(gateways=2, seed=4) as cluster:
        alice = await cluster.connect("alice", gateway=0)
        bob = await cluster.connect("bob", gateway=1)
        panel = viz.ChaosPanel(cluster)
        assert panel.snapshot()["verdict"] == {"valid": None}
        await alice.post("general", "before")
        await panel.crash(1)
        assert [g["running"] for g in panel.snapshot()["gateways"]] == [True, False]
        await alice.post("general", "while gw-2 is down")
        await panel.restart(1)
        panel.set_knobs(loss=0.25)
        assert cluster.faults.bus.defaults.loss == 0.25 and panel._sliders["loss"].value == 0.25
        panel._sliders["dup"].value = 0.1  # moving a slider turns the knob too
        assert cluster.faults.bus.defaults.dup == 0.1
        panel.set_knobs(loss=0.0, dup=0.0)
        await panel.cut("bob")
        await alice.post("general", "after")
        snap = await panel.settle(timeout=10)
        assert bob.seqs("general") == [1, 2, 3]
        assert snap["verdict"]["valid"] is True and snap["verdict"]["messages_checked"] == 3
        assert snap["faults"]["gateway_crash"] == 1 and snap["faults"]["client_cut"] == 1
        assert snap["actions"][:2] == ["crashed gw-2", "restarted gw-2"]
        assert snap["store"] == "embedded fakeredis" and snap["store_reachable"]
        assert ":valid? true" in panel.to_html()
        json.dumps(snap)


async def test_chaos_panel_reports_a_broken_guarantee() -> None:
    async with Cluster(gateways=1, seed=5) as cluster:
        alice = await cluster.connect("alice")
        panel = viz.ChaosPanel(cluster)
        await alice.post("general", "soon forgotten")
        await panel.data_loss()
        snap = await panel.update()
        assert snap["verdict"]["valid"] is False
        assert "acked_missing" in snap["verdict"]["violations"]
        assert "embedded store data loss" in snap["events"][-1]


# --------------------------------------------------------------------------- base, plots, svg


class Counter(LiveWidget):
    def __init__(self) -> None:
        self.collected = 0
        super().__init__()

    async def collect(self) -> None:
        self.collected += 1

    def render(self) -> None:
        pass

    def snapshot(self) -> dict[str, Any]:
        return {"collected": self.collected}

    def to_html(self) -> str:
        return f"<p>{self.collected}</p>"


async def test_follow_updates_in_the_background_until_unfollow() -> None:
    widget = Counter()
    widget.follow(0.01)

    async def some() -> None:
        while widget.collected < 3:
            await asyncio.sleep(0.005)

    await asyncio.wait_for(some(), 5)
    final = await widget.unfollow()
    assert not widget.following and final["collected"] >= 4 and widget.errors == 0


def test_mimebundle_carries_a_static_fallback_and_display_freezes_older_outputs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    widget = Counter()
    bundle = widget._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/html"] == "<p>0</p>"

    class Handle:
        def __init__(self) -> None:
            self.shown: list[str] = []

        def update(self, data: dict[str, Any], raw: bool) -> None:
            self.shown.append(data["text/html"])

    handles: list[Handle] = []

    def display(data: dict[str, Any], raw: bool, display_id: bool) -> Handle:
        handles.append(Handle())
        return handles[-1]

    monkeypatch.setattr("IPython.display.display", display)
    widget._ipython_display_()
    widget.collected = 5
    widget.publish()
    assert handles[0].shown == ["<p>5</p>"]
    widget._ipython_display_()  # shown again further down
    widget.collected = 9
    widget.publish()
    assert handles[0].shown == ["<p>5</p>", "<p>5</p>"]  # frozen as of the second display
    assert handles[1].shown == ["<p>9</p>"]


def test_latency_plot_snapshot_and_png() -> None:
    plot = viz.latency_plot({"push": [0.001, 0.002, 0.003], "poll": [0.1, 0.2], "none": []})
    snap = plot.snapshot()
    assert snap["series"]["push"]["n"] == 3
    assert snap["series"]["push"]["p50_ms"] == pytest.approx(2.0)
    assert snap["series"]["poll"]["max_ms"] == pytest.approx(200.0)
    assert snap["series"]["none"]["n"] == 0
    assert plot.png().startswith(b"\x89PNG")
    assert "image/png" in plot._repr_mimebundle_()


def test_cost_and_scaling_plots() -> None:
    cost = viz.cost_plot({"broadcast": {"useful": 2, "wasted": 6}, "targeted": {"useful": 2}})
    assert cost.snapshot()["totals"] == {"broadcast": 8.0, "targeted": 2.0}
    scaling = viz.scaling_plot([1, 10], {"a": [1, 100]}, title="t", xlabel="x", ylabel="y")
    assert scaling.snapshot()["series"] == {"a": [1, 100]}
    assert cost.png().startswith(b"\x89PNG") and scaling.png().startswith(b"\x89PNG")


def test_svg_helpers_escape() -> None:
    assert (
        el("text", text("<b>&"), x=1, font_size=2)
        == '<text x="1" font-size="2">&lt;b&gt;&amp;</text>'
    )
    assert el("rect", title=None, fill='"') == '<rect fill="&quot;"/>'
    assert "&lt;script&gt;" in table_html(["a"], [["<script>"]])
