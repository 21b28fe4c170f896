"""ChaosPanel: break a running cluster with sliders and buttons, and watch the checker's verdict.

Bound to one :class:`~labkit.lab.cluster.Cluster` and its :class:`~labkit.lab.faults.Faults`:

* bus knobs as sliders (loss, duplication, reordering as probabilities; delay and jitter in
  ms), applied to every gateway the moment they move;
* per gateway: crash, drain, restart, and cut off from the bus / heal;
* per user: cut their connections (they resume by themselves) or make them a slow consumer;
* Redis: an outage of a few seconds, a restart, a data loss (on the embedded store these are
  stand-ins, and the event log says so);
* the invariant checker (:func:`labkit.lab.checker.check`) run on everything recorded so far,
  every time the panel updates.

Every button calls a coroutine method of the same name (``await panel.crash(1)``), so a
notebook can run the same steps unattended and get the same verdicts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from labkit.lab.checker import Report, check
from labkit.viz.base import LiveWidget
from labkit.viz.svg import FONT, PALETTE, badge, table_html, text

if TYPE_CHECKING:
    from labkit.lab.cluster import Cluster
    from labkit.server.client import Client

log = logging.getLogger(__name__)

KNOBS: dict[str, tuple[float, float, float]] = {
    "loss": (0.0, 0.5, 0.01),
    "dup": (0.0, 0.5, 0.01),
    "reorder": (0.0, 0.5, 0.01),
    "delay_ms": (0.0, 200.0, 5.0),
    "jitter_ms": (0.0, 200.0, 5.0),
}
"""Bus knob → (min, max, step) of its slider."""


class ChaosPanel(LiveWidget):
    """Fault knobs and buttons bound to ``cluster``, with the checker's live verdict."""

    def __init__(self, cluster: Cluster, *, settle_s: float = 2.0, slow_s: float = 2.0) -> None:
        self.cluster = cluster
        self.settle_s = settle_s
        self.slow_s = slow_s
        self.report: Report | None = None
        self.store_reachable = True
        self.actions: list[str] = []
        self._stored: dict[str, list[dict[str, Any]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        knobs = cluster.faults.bus.defaults
        self._sliders = {
            name: widgets.FloatSlider(
                value=float(getattr(knobs, name)),
                min=lo,
                max=hi,
                step=step,
                description=name,
                continuous_update=False,
            )
            for name, (lo, hi, step) in KNOBS.items()
        }
        for name, slider in self._sliders.items():
            slider.observe(self._knob_changed(name), names="value")
        names = [f"gw-{i + 1}" for i in range(cluster.gateway_count)]
        self._gateway = widgets.Dropdown(
            options=[(n, i) for i, n in enumerate(names)], description="gateway"
        )
        self._user = widgets.Dropdown(options=self._users(), description="user")
        buttons = [
            self._button("crash", lambda: self.crash(self._gateway.value)),
            self._button("drain", lambda: self.drain(self._gateway.value)),
            self._button("restart", lambda: self.restart(self._gateway.value)),
            self._button("cut off bus", lambda: self.partition(self._gateway.value)),
            self._button("heal bus", lambda: self.heal(self._gateway.value)),
        ]
        user_buttons = [
            self._button("cut connection", lambda: self.cut(self._user.value)),
            self._button("slow consumer", lambda: self.slow(self._user.value)),
        ]
        redis_buttons = [
            self._button("Redis outage 2 s", lambda: self.redis_outage(2.0)),
            self._button("Redis restart", self.redis_restart),
            self._button("data loss", self.data_loss),
        ]
        self._status = widgets.HTML()
        self._verdict = widgets.HTML()
        super().__init__(
            children=[
                widgets.HTML(f'<b style="{FONT}">bus faults (every gateway)</b>'),
                widgets.VBox(list(self._sliders.values())),
                widgets.HBox([self._gateway, *buttons]),
                widgets.HBox([self._user, *user_buttons]),
                widgets.HBox(redis_buttons),
                self._status,
                self._verdict,
            ]
        )
        self.render()

    # -- wiring -------------------------------------------------------------------------------

    def _button(self, label: str, action: Callable[[], Awaitable[Any]]) -> widgets.Button:
        button = widgets.Button(description=label, layout=widgets.Layout(width="auto"))

        def clicked(_: Any) -> None:
            task = asyncio.get_running_loop().create_task(self._run_action(action))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        button.on_click(clicked)
        return button

    async def _run_action(self, action: Callable[[], Awaitable[Any]]) -> None:
        try:
            await action()
        except Exception as exc:  # show the reason in the panel, keep the panel alive
            self.actions.append(f"failed: {exc}")
            log.warning("chaos panel action failed: %s", exc)
        await self.update(publish=False)

    def _knob_changed(self, name: str) -> Callable[[dict[str, Any]], None]:
        def changed(change: dict[str, Any]) -> None:
            self.set_knobs(**{name: float(change["new"])})

        return changed

    # -- actions (the buttons call these) ----------------------------------------------------

    def set_knobs(self, **knobs: float) -> None:
        """Turn bus knobs at every gateway (and move the sliders to match)."""
        now = self.cluster.faults.set_bus(None, **knobs)
        for name in knobs:
            slider = self._sliders.get(name)
            if slider is not None and slider.value != getattr(now, name):
                slider.value = float(getattr(now, name))
        self.actions.append(f"bus: {now.describe()}")
        self.render()

    async def crash(self, gateway: int) -> None:
        await self.cluster.faults.crash(gateway)
        self.actions.append(f"crashed gw-{gateway + 1}")

    async def drain(self, gateway: int) -> None:
        await self.cluster.faults.drain(gateway)
        self.actions.append(f"drained gw-{gateway + 1}")

    async def restart(self, gateway: int) -> None:
        await self.cluster.faults.restart(gateway)
        self.actions.append(f"restarted gw-{gateway + 1}")

    async def partition(self, gateway: int) -> None:
        self.cluster.faults.partition(gateway)
        self.actions.append(f"gw-{gateway + 1} cut off from the bus")

    async def heal(self, gateway: int) -> None:
        self.cluster.faults.heal(gateway)
        self.actions.append(f"gw-{gateway + 1} back on the bus")

    def _users(self) -> list[str]:
        return sorted({c.user for c in self.cluster.clients})

    def _clients(self, user: str) -> list[Client]:
        return [c for c in self.cluster.clients if c.user == user]

    async def cut(self, user: str) -> None:
        """Cut every connection of ``user`` (they reconnect and resume by themselves)."""
        for client in self._clients(user):
            await self.cluster.faults.cut(client)
        self.actions.append(f"cut {user}'s connections")

    async def slow(self, user: str, seconds: float | None = None) -> None:
        """Make ``user``'s clients stop reading for ``seconds`` (default ``slow_s``)."""
        slow = [self.cluster.faults.slow_consumer(c) for c in self._clients(user)]
        self.actions.append(f"{user} stopped reading")
        try:
            await asyncio.sleep(self.slow_s if seconds is None else seconds)
        finally:
            for s in slow:
                s.resume()
        self.actions.append(f"{user} reads again")

    async def redis_outage(self, seconds: float = 2.0) -> None:
        await self.cluster.faults.redis_outage(seconds)
        self.actions.append(f"Redis outage of {seconds:g} s over")

    async def redis_restart(self) -> None:
        await self.cluster.faults.redis_restart()
        self.actions.append("Redis restarted")

    async def data_loss(self) -> None:
        await self.cluster.faults.data_loss()
        self.actions.append("Redis data lost")

    # -- the verdict --------------------------------------------------------------------------

    async def collect(self) -> None:
        cluster = self.cluster
        if cluster.directory is None or cluster.store is None:
            return
        try:
            channels = sorted(await cluster.directory.all_channels())
            self._stored = {ch: await cluster.stored(ch) for ch in channels}
            self.store_reachable = True
        except Exception:  # an outage in progress: judge against the last copy read
            self.store_reachable = False
        self.report = check(
            cluster.recording,
            self._stored,
            faults=cluster.faults.counts(),
            settle_s=self.settle_s,
            end_t=cluster.clock(),
        )

    async def settle(self, timeout: float = 10.0) -> dict[str, Any]:
        """Wait until every connected client has every channel's store head (or ``timeout``),
        then update: the verdict of a run whose faults are over."""
        cluster = self.cluster
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline and cluster.store is not None:
            with contextlib.suppress(Exception):
                clients = [c for c in cluster.clients if c.phase.value != "closed"]
                channels = sorted({ch for c in clients for ch in c.state.last_seen})
                heads = {ch: st.head for ch, st in (await cluster.store.states(channels)).items()}
                if all(
                    c.connected
                    and all(
                        c.state.last_seen.get(ch, 0) >= heads.get(ch, 0) for ch in c.state.last_seen
                    )
                    for c in clients
                ):
                    break
            await asyncio.sleep(0.05)
        return await self.update()

    def snapshot(self) -> dict[str, Any]:
        cluster = self.cluster
        faults = cluster.faults
        gateways = []
        for i in range(cluster.gateway_count):
            name = f"gw-{i + 1}"
            gateway = cluster.gateways[i] if i < len(cluster.gateways) else None
            gateways.append(
                {
                    "index": i,
                    "name": name,
                    "running": gateway is not None,
                    "connections": len(gateway.conns) if gateway is not None else 0,
                    "cut_off_bus": name in faults.bus.partitioned,
                }
            )
        knobs = faults.bus.defaults
        report = self.report
        verdict: dict[str, Any] = {"valid": None}
        if report is not None:
            verdict = {
                "valid": report.ok,
                "messages_checked": report.messages_checked,
                "posts_acked": report.posts_acked,
                "deliveries": report.deliveries,
                "violations": {k: len(v) for k, v in report.by_kind().items()},
                "details": [v.detail for v in report.violations[:5]],
            }
        return {
            "gateways": gateways,
            "knobs": {name: float(getattr(knobs, name)) for name in KNOBS},
            "faults": faults.counts(),
            "store": faults.store_kind(),
            "store_reachable": self.store_reachable,
            "events": [e.label for e in faults.events],
            "actions": list(self.actions),
            "verdict": verdict,
        }

    def render(self) -> None:
        users = self._users()
        if list(self._user.options) != users:
            self._user.options = users
        snap = self.snapshot()
        self._status.value = self._status_html(snap)
        self._verdict.value = self._verdict_html(snap)

    def _status_html(self, snap: dict[str, Any]) -> str:
        rows = [
            [
                g["name"],
                badge("running", PALETTE["ok"]) if g["running"] else badge("down", PALETTE["bad"]),
                g["connections"],
                "cut off" if g["cut_off_bus"] else "connected",
            ]
            for g in snap["gateways"]
        ]
        faults = ", ".join(f"{k} {v}" for k, v in sorted(snap["faults"].items())) or "none yet"
        knobs = ", ".join(f"{k} {v:g}" for k, v in snap["knobs"].items())
        store = text(snap["store"]) + ("" if snap["store_reachable"] else " (unreachable now)")
        return (
            table_html(["gateway", "state", "connections", "bus"], rows)
            + f'<div style="{FONT};font-size:12px;margin-top:4px">bus knobs: {text(knobs)}<br>'
            f"store: {store}<br>faults so far: {text(faults)}</div>"
        )

    def _verdict_html(self, snap: dict[str, Any]) -> str:
        v = snap["verdict"]
        if v["valid"] is None:
            return f'<div style="{FONT}">checker: no verdict yet</div>'
        head = badge(
            ":valid? true" if v["valid"] else ":valid? false",
            PALETTE["ok"] if v["valid"] else PALETTE["bad"],
        )
        counts = ", ".join(f"{k} {n}" for k, n in v["violations"].items()) or "no violations"
        details = "".join(f"<li>{text(d)}</li>" for d in v["details"])
        return (
            f'<div style="{FONT};font-size:13px;margin-top:6px">checker: {head} · '
            f"{v['messages_checked']} messages stored, {v['posts_acked']} posts acked, "
            f"{v['deliveries']} deliveries · {text(counts)}"
            f'<ul style="margin:2px 0">{details}</ul></div>'
        )

    def to_html(self) -> str:
        snap = self.snapshot()
        return self._status_html(snap) + self._verdict_html(snap)
