"""FanoutGraph: one channel's messages flowing server → bus → gateways → connections.

What it draws, left to right: the message server (which stores each post, then publishes it),
the store and the bus, every gateway slot of the cluster, and the channel's members grouped by
user (or, past ``aggregate_above`` members, one node per gateway standing for all of its
connections). Each edge carries a counter of the messages that crossed it. The path of one
message (the newest, or the one chosen with the slider) is drawn in orange; a gateway that lost
it on the bus gets a red bus edge and a green edge from the store, where it fetched the repair.
A gateway not subscribed to the channel's topic has a dashed edge: the bus sends it nothing.

Data, all plain: the clients' :class:`~labkit.core.records.Recording` (who received what, through
which gateway, and the acks of posts) and, live, a :class:`~labkit.viz.tap.GatewayTap` (what
each gateway got from the bus and what it repaired). The layout is computed once with networkx
(``multipartite_layout``, one layer per role) and never moves; a user first seen later is added
below the others.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets
import networkx as nx

from labkit.core.records import FrameRecord, Recording
from labkit.server.redis.bus import channel_topic
from labkit.viz.base import LiveWidget
from labkit.viz.svg import FONT, PALETTE, el, legend_html, svg, text
from labkit.viz.tap import BusEvent, GatewayTap

if TYPE_CHECKING:
    from labkit.server.cluster import Cluster

AGGREGATE_ABOVE = 24
"""Members beyond which connections are drawn as one node per gateway."""

_LAYER_X = (70.0, 235.0, 430.0, 660.0)
_WIDTH = 780.0
_ROW = 46.0
_TOP = 34.0
_BOTTOM = 20.0


class FanoutModel:
    """The counters behind the graph, fed incrementally with records and bus events (pure)."""

    def __init__(self, channel: str, gateways: Sequence[str], members: Iterable[str]) -> None:
        self.channel = channel
        self.gateways = list(gateways)
        self.members: list[str] = sorted(set(members))
        self.posts: dict[int, float] = {}
        """seq → when it was first seen anywhere (ack, bus, delivery)."""
        self.bus: dict[str, dict[int, str]] = {}
        """gateway → seq → ``bus``/``wasted``/``repair`` (the first way it got there)."""
        self.bus_counts: Counter[tuple[str, str]] = Counter()
        """(gateway, how) → events."""
        self.deliveries: Counter[tuple[str, str]] = Counter()
        """(gateway, user) → message frames received."""
        self.paths: dict[int, set[tuple[str, str]]] = {}
        """seq → the (gateway, user) pairs it reached."""
        self.client_gateway: dict[str, str | None] = {}
        self.client_user: dict[str, str] = {}
        self._records = 0
        self._events = 0

    def _post(self, seq: int, t: float) -> None:
        if seq not in self.posts or t < self.posts[seq]:
            self.posts[seq] = t

    def _member(self, user: str) -> None:
        if user not in self.members:
            self.members.append(user)

    def _gateway(self, name: str) -> None:
        if name not in self.gateways:
            self.gateways.append(name)

    def feed_records(self, records: Sequence[FrameRecord]) -> None:
        """Read the records not read yet (``records`` is the whole, growing list)."""
        for r in records[self._records :]:
            frame = r.frame
            if r.kind == "open":
                gateway = frame.get("gateway")
                self.client_gateway[r.client] = gateway if isinstance(gateway, str) else None
                self.client_user[r.client] = r.user
                if isinstance(gateway, str):
                    self._gateway(gateway)
            elif r.kind == "close":
                self.client_gateway[r.client] = None
            elif r.kind == "in" and frame.get("channel") == self.channel:
                kind, seq = frame.get("type"), frame.get("seq")
                if not isinstance(seq, int):
                    continue
                if kind == "ack":
                    self._post(seq, r.t)
                elif kind == "message":
                    self._post(seq, r.t)
                    gateway = self.client_gateway.get(r.client)
                    if gateway is not None:
                        self._member(r.user)
                        self.deliveries[gateway, r.user] += 1
                        self.paths.setdefault(seq, set()).add((gateway, r.user))
        self._records = len(records)

    def feed_bus(self, events: Sequence[BusEvent]) -> None:
        """Read the bus events not read yet (``events`` is the whole, growing list)."""
        for e in events[self._events :]:
            if e.channel != self.channel:
                continue
            self._gateway(e.gateway)
            self._post(e.seq, e.t)
            self.bus_counts[e.gateway, e.how] += 1
            self.bus.setdefault(e.gateway, {}).setdefault(e.seq, e.how)
        self._events = len(events)

    def connections(self) -> Counter[tuple[str, str]]:
        """(gateway, user) → connections open now, of the channel's members."""
        members = set(self.members)
        out: Counter[tuple[str, str]] = Counter()
        for client, gateway in self.client_gateway.items():
            user = self.client_user[client]
            if gateway is not None and user in members:
                out[gateway, user] += 1
        return out

    def infer_bus(self) -> None:
        """Without a tap (a replay of a recording only): a gateway that delivered a seq got it."""
        for seq, pairs in self.paths.items():
            for gateway, _user in pairs:
                hows = self.bus.setdefault(gateway, {})
                if seq not in hows:
                    hows[seq] = "bus"
                    self.bus_counts[gateway, "bus"] += 1


class FanoutGraph(LiveWidget):
    """The live fanout graph of one channel. Build it with :meth:`attach` (a running cluster)
    or :meth:`replay` (a finished recording); show it; ``await graph.update()``."""

    def __init__(
        self,
        channel: str,
        *,
        gateways: Sequence[str],
        members: Iterable[str],
        recording: Recording,
        cluster: Cluster | None = None,
        bus_events: Sequence[BusEvent] | None = None,
        aggregate_above: int = AGGREGATE_ABOVE,
        title: str | None = None,
    ) -> None:
        self.model = FanoutModel(channel, gateways, members)
        self.recording = recording
        self.cluster = cluster
        self.tap = GatewayTap.of(cluster) if cluster is not None else None
        self._static_events = list(bus_events) if bus_events is not None else None
        self.aggregate = len(self.model.members) > aggregate_above
        self.title = title or f"#{channel}: fanout"
        self._pos: dict[str, tuple[float, float]] = {}
        self._height = 0.0
        self._pinned: int | None = None
        self._svg = widgets.HTML()
        self._header = widgets.HTML()
        self._slider = widgets.IntSlider(
            value=0, min=0, max=0, description="message", continuous_update=False
        )
        self._slider.observe(self._on_slider, names="value")
        self._legend = widgets.HTML(self.legend())
        super().__init__(children=[self._header, self._svg, self._legend, self._slider])
        self._layout()
        self._collect_now()
        self.render()

    # -- construction -------------------------------------------------------------------------

    @classmethod
    async def attach(cls, cluster: Cluster, channel: str = "general", **kwargs: Any) -> FanoutGraph:
        """A graph of ``channel`` on a running cluster (members read from its directory)."""
        assert cluster.directory is not None, "start the cluster first"
        members = await cluster.directory.members(channel)
        gateways = [f"gw-{i + 1}" for i in range(len(cluster.gateways))]
        return cls(
            channel,
            gateways=gateways,
            members=members,
            recording=cluster.recording,
            cluster=cluster,
            **kwargs,
        )

    @classmethod
    def replay(
        cls,
        source: Recording | Any,
        channel: str = "general",
        *,
        gateways: Sequence[str] | None = None,
        members: Iterable[str] | None = None,
        bus_events: Sequence[BusEvent] | None = None,
        **kwargs: Any,
    ) -> FanoutGraph:
        """A graph of a finished run: a :class:`Recording`, or anything holding one as
        ``.recording`` (a ``SimResult``). Without ``bus_events``, a gateway that delivered a
        message is taken to have received it from the bus (a recording cannot show bus loss)."""
        recording = source if isinstance(source, Recording) else source.recording
        if gateways is None:
            seen = {
                str(r.frame["gateway"])
                for r in recording
                if r.kind == "open" and isinstance(r.frame.get("gateway"), str)
            }
            gateways = sorted(seen, key=_natural)
        if members is None:
            members = {
                r.user
                for r in recording
                if r.kind == "in"
                and r.frame.get("type") == "welcome"
                and channel in (r.frame.get("channels") or {})
            }
        return cls(
            channel,
            gateways=gateways,
            members=members,
            recording=recording,
            bus_events=bus_events,
            **kwargs,
        )

    # -- data ---------------------------------------------------------------------------------

    async def collect(self) -> None:
        self._collect_now()

    def _collect_now(self) -> None:
        if self.tap is not None:
            self.tap.install()
            self.model.feed_bus(self.tap.events)
        elif self._static_events is not None:
            self.model.feed_bus(self._static_events)
        self.model.feed_records(self.recording.records)
        if self.tap is None and self._static_events is None:
            self.model.infer_bus()
        for user in self.model.members:
            if f"user:{user}" not in self._pos and not self.aggregate:
                self._place(f"user:{user}", 3)
        for gateway in self.model.gateways:
            if gateway not in self._pos:
                self._place(gateway, 2)
                if self.aggregate:
                    self._place(f"conns:{gateway}", 3)

    def _gateway_state(self, name: str) -> str:
        """``subscribed``, ``not subscribed`` or ``down`` (live); replays know only traffic."""
        if self.cluster is None:
            return "subscribed" if self.model.bus.get(name) else "not subscribed"
        gateway = next((g for g in self.cluster.gateways if g is not None and g.name == name), None)
        if gateway is None:
            return "down"
        if getattr(gateway.bus, "broadcast", False):
            return "all topics"
        return (
            "subscribed"
            if channel_topic(self.model.channel) in gateway.bus.topics
            else ("not subscribed")
        )

    # -- layout -------------------------------------------------------------------------------

    def _layout(self) -> None:
        """Positions for every node known now, computed once with networkx."""
        graph = nx.DiGraph()
        graph.add_node("server", layer=0)
        graph.add_node("bus", layer=1)
        graph.add_node("store", layer=1)
        for gateway in self.model.gateways:
            graph.add_node(gateway, layer=2)
        if self.aggregate:
            for gateway in self.model.gateways:
                graph.add_node(f"conns:{gateway}", layer=3)
        else:
            for user in self.model.members:
                graph.add_node(f"user:{user}", layer=3)
        pos = nx.multipartite_layout(graph, subset_key="layer", align="vertical")
        # multipartite_layout centres each layer and spaces its nodes one unit apart, then
        # scales the whole layout uniformly: recover that unit, draw it as one row, and fill
        # each layer's slots top to bottom in the order the nodes were added.
        layers: dict[int, list[str]] = {}
        for node, data in graph.nodes(data=True):
            layers.setdefault(int(data["layer"]), []).append(node)
        tallest = max(layers.values(), key=len)
        ys = sorted(float(pos[n][1]) for n in tallest)
        unit = (ys[-1] - ys[0]) / (len(ys) - 1) if len(ys) > 1 else 1.0
        top = ys[-1]
        for layer, nodes in layers.items():
            slots = sorted((float(pos[n][1]) for n in nodes), reverse=True)
            for node, slot in zip(nodes, slots, strict=True):
                y = _TOP + (top - slot) / unit * _ROW + _ROW / 2
                self._pos[node] = (_LAYER_X[layer], y)
        self._height = _TOP + len(tallest) * _ROW + _BOTTOM

    def _place(self, node: str, layer: int) -> None:
        """A node first seen after the layout: below the last one of its layer."""
        column = [y for n, (x, y) in self._pos.items() if x == _LAYER_X[layer]]
        y = (max(column) + _ROW) if column else _TOP + _ROW / 2
        self._pos[node] = (_LAYER_X[layer], y)
        self._height = max(self._height, y + _ROW / 2 + _BOTTOM)

    # -- the picture as data ------------------------------------------------------------------

    @property
    def highlighted(self) -> int | None:
        if self._pinned is not None and self._pinned in self.model.posts:
            return self._pinned
        return max(self.model.posts) if self.model.posts else None

    def show_message(self, seq: int | None) -> None:
        """Highlight the path of message ``seq`` (None: always the newest)."""
        self._pinned = seq
        self.render()

    def _on_slider(self, change: dict[str, Any]) -> None:
        value = int(change["new"])
        newest = max(self.model.posts) if self.model.posts else 0
        self._pinned = None if value in (0, newest) else value
        self._draw()

    def snapshot(self) -> dict[str, Any]:
        m = self.model
        conns = m.connections()
        nodes: list[dict[str, Any]] = []
        edges: list[dict[str, Any]] = []

        def node(node_id: str, kind: str, label: str, **extra: Any) -> None:
            x, y = self._pos[node_id]
            nodes.append({"id": node_id, "kind": kind, "label": label, "x": x, "y": y, **extra})

        def edge(source: str, target: str, count: int, state: str, **extra: Any) -> None:
            edges.append(
                {"source": source, "target": target, "count": count, "state": state, **extra}
            )

        posts = len(m.posts)
        node("server", "server", "message server")
        node("store", "store", "store (Redis)")
        node("bus", "bus", "bus (pub/sub)")
        edge("server", "store", posts, "active" if posts else "idle")
        edge("server", "bus", posts, "active" if posts else "idle")
        for gateway in m.gateways:
            state = self._gateway_state(gateway)
            held = sum(n for (g, _u), n in conns.items() if g == gateway)
            node(gateway, "gateway", gateway, state=state, connections=held)
            arrived = m.bus_counts[gateway, "bus"] + m.bus_counts[gateway, "wasted"]
            wasted = m.bus_counts[gateway, "wasted"]
            repaired = m.bus_counts[gateway, "repair"]
            if state == "down":
                edge_state = "down"
            elif state == "not subscribed" and not arrived:
                edge_state = "unsubscribed"
            else:
                edge_state = "active" if arrived else "idle"
            edge("bus", gateway, arrived, edge_state, wasted=wasted)
            if repaired:
                edge("store", gateway, repaired, "repair")
        if self.aggregate:
            for gateway in m.gateways:
                held = sum(n for (g, _u), n in conns.items() if g == gateway)
                delivered = sum(n for (g, _u), n in m.deliveries.items() if g == gateway)
                node(f"conns:{gateway}", "connections", f"{held} conns", connections=held)
                if held or delivered:
                    edge(gateway, f"conns:{gateway}", delivered, "active" if held else "idle")
        else:
            for user in m.members:
                held = sum(n for (_g, u), n in conns.items() if u == user)
                node(f"user:{user}", "user", user, connections=held)
            pairs = sorted(set(conns) | set(m.deliveries))
            for gateway, user in pairs:
                if f"user:{user}" in self._pos:
                    state = "active" if conns[gateway, user] else "idle"
                    edge(gateway, f"user:{user}", m.deliveries[gateway, user], state)
        return {
            "channel": m.channel,
            "mode": "aggregate" if self.aggregate else "users",
            "posts": posts,
            "deliveries": sum(m.deliveries.values()),
            "lost": sum(n for (_g, how), n in m.bus_counts.items() if how == "repair"),
            "wasted": sum(n for (_g, how), n in m.bus_counts.items() if how == "wasted"),
            "nodes": nodes,
            "edges": edges,
            "path": self._path(self.highlighted),
        }

    def _path(self, seq: int | None) -> dict[str, Any]:
        m = self.model
        if seq is None:
            return {"seq": None, "edges": [], "lost": [], "repaired": [], "wasted": []}
        lit: list[list[str]] = [["server", "store"], ["server", "bus"]]
        lost: list[list[str]] = []
        repaired: list[list[str]] = []
        wasted: list[list[str]] = []
        for gateway in m.gateways:
            how = m.bus.get(gateway, {}).get(seq)
            if how == "bus":
                lit.append(["bus", gateway])
            elif how == "wasted":
                wasted.append(["bus", gateway])
            elif how == "repair":
                lost.append(["bus", gateway])
                repaired.append(["store", gateway])
        for gateway, user in sorted(m.paths.get(seq, ())):
            lit.append([gateway, f"conns:{gateway}" if self.aggregate else f"user:{user}"])
        unique = [list(p) for p in dict.fromkeys(tuple(p) for p in lit)]
        return {
            "seq": seq,
            "edges": unique,
            "lost": lost,
            "repaired": repaired,
            "wasted": wasted,
        }

    # -- drawing ------------------------------------------------------------------------------

    def render(self) -> None:
        newest = max(self.model.posts) if self.model.posts else 0
        self._slider.unobserve(self._on_slider, names="value")
        try:
            self._slider.max = newest
            self._slider.min = min(self.model.posts) if self.model.posts else 0
            self._slider.value = self.highlighted or 0
        finally:
            self._slider.observe(self._on_slider, names="value")
        self._draw()

    def _draw(self) -> None:
        snap = self.snapshot()
        self._header.value = self._header_html(snap)
        self._svg.value = self._svg_markup(snap)

    def _header_html(self, snap: dict[str, Any]) -> str:
        path = snap["path"]
        which = f"message seq {path['seq']}" if path["seq"] is not None else "no message yet"
        facts = [
            f"{snap['posts']} posts",
            f"{snap['deliveries']} deliveries",
            f"{snap['lost']} lost on the bus and repaired from the store",
        ]
        if snap["wasted"]:
            facts.append(f"{snap['wasted']} bus deliveries to gateways with no member")
        return (
            f'<div style="{FONT};font-size:13px"><b>{text(self.title)}</b> · '
            f"{text(' · '.join(facts))} · path shown: {text(which)}</div>"
        )

    def _svg_markup(self, snap: dict[str, Any]) -> str:
        path = snap["path"]
        lit = {tuple(e) for e in path["edges"]}
        lost = {tuple(e) for e in path["lost"]}
        repaired = {tuple(e) for e in path["repaired"]}
        wasted = {tuple(e) for e in path["wasted"]}
        body: list[str] = [
            "<defs>"
            + "".join(
                el(
                    "marker",
                    el("path", d="M0,0 L8,4 L0,8 z", fill=colour),
                    id=f"arrow-{name}",
                    viewBox="0 0 8 8",
                    refX="8",
                    refY="4",
                    markerWidth="9",
                    markerHeight="9",
                    markerUnits="userSpaceOnUse",
                    orient="auto",
                )
                for name, colour in PALETTE.items()
            )
            + "</defs>"
        ]
        labels: list[str] = []
        for e in snap["edges"]:
            key = (e["source"], e["target"])
            if key in lost:
                colour, width, dash = "lost", 3.0, None
            elif key in repaired:
                colour, width, dash = "repair", 3.0, "6 3"
            elif key in lit:
                colour, width, dash = "path", 3.0, None
            elif key in wasted:
                colour, width, dash = "wasted", 2.0, "2 3"
            elif e["state"] == "repair":
                colour, width, dash = "repair", 1.5, "6 3"
            elif e["state"] in ("unsubscribed", "down"):
                colour, width, dash = "unsubscribed", 1.5, "4 4"
            elif e["state"] == "active":
                colour, width, dash = "active", 1.5, None
            else:
                colour, width, dash = "idle", 1.0, None
            body.append(self._edge_svg(e["source"], e["target"], colour, width, dash))
            labels.append(self._edge_label(e, colour))
        body.extend(labels)
        for n in snap["nodes"]:
            body.append(self._node_svg(n))
        return svg(_WIDTH, self._height, body, label=f"fanout graph of #{snap['channel']}")

    def _ends(self, source: str, target: str) -> tuple[float, float, float, float]:
        (x1, y1), (x2, y2) = self._pos[source], self._pos[target]
        pad_out = 62.0 if source in ("server", "store", "bus") else 60.0
        pad_in = 14.0 if target.startswith("user:") else 64.0 if target.startswith("gw") else 52.0
        if source == "server":
            pad_out = 58.0
        return x1 + pad_out, y1, x2 - pad_in, y2

    def _edge_svg(
        self, source: str, target: str, colour: str, width: float, dash: str | None
    ) -> str:
        x1, y1, x2, y2 = self._ends(source, target)
        return el(
            "line",
            x1=f"{x1:.1f}",
            y1=f"{y1:.1f}",
            x2=f"{x2:.1f}",
            y2=f"{y2:.1f}",
            stroke=PALETTE[colour],
            stroke_width=f"{width:g}",
            stroke_dasharray=dash,
            marker_end=f"url(#arrow-{colour})",
        )

    def _edge_label(self, e: dict[str, Any], colour: str) -> str:
        x1, y1, x2, y2 = self._ends(e["source"], e["target"])
        f = {"bus": 0.62, "store": 0.42}.get(e["source"], 0.5)
        x, y = x1 + (x2 - x1) * f, y1 + (y2 - y1) * f - 4
        label = str(e["count"])
        if e["state"] == "unsubscribed":
            label = "not subscribed"
        elif e["state"] == "down":
            label = "down"
        elif e.get("wasted") and e["wasted"] == e["count"]:
            label = f"{e['count']} wasted"
        elif e.get("wasted"):
            label = f"{e['count']} ({e['wasted']} wasted)"
        return el(
            "text",
            text(label),
            x=f"{x:.1f}",
            y=f"{y:.1f}",
            font_size="11",
            text_anchor="middle",
            fill=PALETTE[colour] if colour not in ("idle", "unsubscribed") else "#6b7280",
            stroke="white",
            stroke_width="3",
            paint_order="stroke",
        )

    def _node_svg(self, n: dict[str, Any]) -> str:
        x, y = n["x"], n["y"]
        kind = n["kind"]
        if kind == "user":
            online = n["connections"] > 0
            fill = PALETTE["online"] if online else "#e5e7eb"
            name = n["label"] + (f" ×{n['connections']}" if n["connections"] > 1 else "")
            return el("circle", cx=f"{x:.1f}", cy=f"{y:.1f}", r="9", fill=fill) + el(
                "text",
                text(name),
                x=f"{x + 15:.1f}",
                y=f"{y + 4:.1f}",
                font_size="13",
                fill="#111827" if online else "#9ca3af",
            )
        if kind == "gateway":
            state = n["state"]
            stroke = PALETTE["down"] if state == "down" else PALETTE["active"]
            fill = "#f3f4f6" if state == "down" else "#eff6ff"
            held = n["connections"]
            sub = f"{state} · {held} conn{'' if held == 1 else 's'}"
            return (
                el(
                    "rect",
                    x=f"{x - 60:.1f}",
                    y=f"{y - 17:.1f}",
                    width="120",
                    height="34",
                    rx="5",
                    fill=fill,
                    stroke=stroke,
                    stroke_dasharray="4 3" if state == "down" else None,
                )
                + el(
                    "text",
                    text(n["label"]),
                    x=f"{x:.1f}",
                    y=f"{y - 3:.1f}",
                    font_size="12",
                    text_anchor="middle",
                    font_weight="bold",
                )
                + el(
                    "text",
                    text(sub),
                    x=f"{x:.1f}",
                    y=f"{y + 11:.1f}",
                    font_size="9",
                    text_anchor="middle",
                    fill="#374151",
                )
            )
        width = 116 if kind in ("server", "store", "bus") else 100
        return el(
            "rect",
            x=f"{x - width / 2:.1f}",
            y=f"{y - 14:.1f}",
            width=str(width),
            height="28",
            rx="5",
            fill="#fff7ed" if kind == "store" else "#f9fafb",
            stroke="#374151",
        ) + el(
            "text",
            text(n["label"]),
            x=f"{x:.1f}",
            y=f"{y + 4:.1f}",
            font_size="12",
            text_anchor="middle",
        )

    def legend(self) -> str:
        return legend_html(
            [
                ("path of the shown message", PALETTE["path"]),
                ("lost on the bus", PALETTE["lost"]),
                ("repaired from the store", PALETTE["repair"]),
                ("reached a gateway with no member", PALETTE["wasted"]),
                ("carried messages", PALETTE["active"]),
                ("not subscribed / down", PALETTE["unsubscribed"]),
                ("user online", PALETTE["online"]),
            ]
        )

    def to_html(self) -> str:
        snap = self.snapshot()
        return self._header_html(snap) + self._svg_markup(snap) + self.legend()


def _natural(name: str) -> tuple[str, int]:
    head, _, tail = name.rpartition("-")
    return (head, int(tail)) if tail.isdigit() else (name, 0)
