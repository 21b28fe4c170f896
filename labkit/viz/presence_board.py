"""PresenceBoard: who is online, how fresh their heartbeat is, on how many devices, typing where.

Columns:

``status``
    Live: what the shared presence store says (``online`` / ``offline``), the same answer a
    ``presence_sub`` would get. Replay: the protocol's rule applied to the records (online while
    some connection of the user sent a frame within ``3 x heartbeat_s``).
``heartbeat age``
    Seconds since the user's latest heartbeat (any frame from any of their connections).
``devices``
    Connections open now (live: held by the running gateways; replay: opened and not closed).
``typing``
    Channels where someone else's client was told, within the last ``typing_window_s``, that
    this user is typing. Typing events are ephemeral: never stored, so this is all there is.
``changes``
    Status changes announced to watchers (``presence`` frames received, counted per watching
    client, the most any one watcher saw). Flapping shows here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from labkit.core.records import Recording
from labkit.viz.base import LiveWidget
from labkit.viz.svg import FONT, PALETTE, Raw, badge, table_html, text

if TYPE_CHECKING:
    from labkit.server.cluster import Cluster


class PresenceBoard(LiveWidget):
    """A table of users. ``await PresenceBoard.attach(cluster)`` (live) or
    ``PresenceBoard.replay(recording, heartbeat_s=...)``."""

    def __init__(
        self,
        recording: Recording,
        *,
        users: Iterable[str] | None = None,
        heartbeat_s: float = 10.0,
        cluster: Cluster | None = None,
        typing_window_s: float = 3.0,
        now: float | None = None,
    ) -> None:
        self.recording = recording
        self.cluster = cluster
        self.heartbeat_s = heartbeat_s
        self.typing_window_s = typing_window_s
        self.users: list[str] = sorted(set(users)) if users is not None else []
        self._fixed_now = now
        self._store: dict[str, tuple[str, float | None]] = {}
        self._devices: dict[str, int] | None = None
        self._now = now if now is not None else 0.0
        self._table = widgets.HTML()
        super().__init__(children=[self._table])
        self._derive()
        self.render()

    @classmethod
    async def attach(
        cls, cluster: Cluster, users: Iterable[str] | None = None, **kwargs: Any
    ) -> PresenceBoard:
        """A board of ``users`` (default: every member of every channel) on a running cluster."""
        if users is None:
            assert cluster.directory is not None, "start the cluster first"
            found: set[str] = set()
            for channel in await cluster.directory.all_channels():
                found |= await cluster.directory.members(channel)
            users = found
        board = cls(
            cluster.recording,
            users=users,
            heartbeat_s=cluster.heartbeat_s,
            cluster=cluster,
            **kwargs,
        )
        await board.update(publish=False)
        return board

    @classmethod
    def replay(cls, source: Recording | Any, **kwargs: Any) -> PresenceBoard:
        """A board of a finished run (a :class:`Recording`, or anything holding one as
        ``.recording``), as of its last record (or ``now=``)."""
        recording = source if isinstance(source, Recording) else source.recording
        return cls(recording, **kwargs)

    # -- data ---------------------------------------------------------------------------------

    async def collect(self) -> None:
        cluster = self.cluster
        if cluster is not None:
            self._now = cluster.clock()
            running = [g for g in cluster.gateways if g is not None]
            if running:
                # the store may be down in a failure lab: keep the last view
                with contextlib.suppress(Exception):
                    self._store = await running[0].presence.status(self.users, self._now)
            devices: dict[str, int] = {}
            for gateway in running:
                for user, conns in gateway.user_conns.items():
                    devices[user] = devices.get(user, 0) + len(conns)
            self._devices = devices
        self._derive()

    def _derive(self) -> None:
        """Heartbeats, devices (replay), typing and changes from the records."""
        last_beat: dict[str, float] = {}
        open_sessions: dict[str, set[str]] = {}
        typing: dict[str, dict[str, float]] = {}
        changes: dict[tuple[str, str], int] = {}
        last_status: dict[tuple[str, str], str] = {}
        t_last = 0.0
        for r in self.recording.records:
            t_last = max(t_last, r.t)
            if r.kind == "out":
                last_beat[r.user] = max(last_beat.get(r.user, r.t), r.t)
            elif r.kind == "open":
                open_sessions.setdefault(r.user, set()).add(r.client)
                last_beat[r.user] = max(last_beat.get(r.user, r.t), r.t)
            elif r.kind == "close":
                open_sessions.setdefault(r.user, set()).discard(r.client)
            elif r.kind == "in":
                kind = r.frame.get("type")
                if kind == "typing":
                    who, channel = r.frame.get("user"), r.frame.get("channel")
                    if isinstance(who, str) and isinstance(channel, str):
                        typing.setdefault(who, {})[channel] = r.t
                elif kind in ("presence", "presence_digest"):
                    items = [r.frame] if kind == "presence" else r.frame.get("changes") or []
                    for item in items:
                        who, status = item.get("user"), item.get("status")
                        if not isinstance(who, str) or not isinstance(status, str):
                            continue
                        key = (r.client, who)
                        if key in last_status and last_status[key] != status:
                            changes[key] = changes.get(key, 0) + 1
                        last_status[key] = status
        if self.cluster is None:
            self._now = self._fixed_now if self._fixed_now is not None else t_last
        for user in {*last_beat, *open_sessions, *typing}:
            if user not in self.users:
                self.users.append(user)
        self.users.sort()
        self._last_beat = last_beat
        self._open = {u: len(s) for u, s in open_sessions.items()}
        self._typing = typing
        self._changes: dict[str, int] = {}
        for (_client, who), n in changes.items():
            self._changes[who] = max(self._changes.get(who, 0), n)

    # -- the picture --------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        now = self._now
        expiry = 3 * self.heartbeat_s
        rows = []
        for user in self.users:
            beat = self._last_beat.get(user)
            stored = self._store.get(user)
            if stored is not None:
                status, last_active = stored
                if last_active is not None:
                    beat = last_active if beat is None else max(beat, last_active)
            else:
                status = "online" if beat is not None and now - beat < expiry else "offline"
            devices = (
                self._devices.get(user, 0) if self._devices is not None else self._open.get(user, 0)
            )
            typing = sorted(
                ch
                for ch, t in self._typing.get(user, {}).items()
                if now - t <= self.typing_window_s
            )
            rows.append(
                {
                    "user": user,
                    "status": status,
                    "heartbeat_age_s": None if beat is None else round(max(now - beat, 0.0), 3),
                    "devices": devices,
                    "typing": typing,
                    "changes": self._changes.get(user, 0),
                }
            )
        return {
            "now": now,
            "heartbeat_s": self.heartbeat_s,
            "expiry_s": expiry,
            "source": "presence store" if self.cluster is not None else "records",
            "users": rows,
        }

    def render(self) -> None:
        self._table.value = self.to_html()

    def to_html(self) -> str:
        snap = self.snapshot()
        rows = []
        for row in snap["users"]:
            age = row["heartbeat_age_s"]
            rows.append(
                [
                    row["user"],
                    badge(
                        row["status"],
                        PALETTE[row["status"]] if row["status"] in PALETTE else PALETTE["offline"],
                    ),
                    "never" if age is None else f"{age:.1f} s",
                    row["devices"],
                    Raw(
                        " ".join(
                            badge("typing in #" + ch, PALETTE["typing"]) for ch in row["typing"]
                        )
                    ),
                    row["changes"],
                ]
            )
        caption = (
            f'<div style="{FONT};font-size:12px;color:#374151;margin-bottom:4px">'
            f"presence from the {text(snap['source'])}: online while a heartbeat came within "
            f"{snap['expiry_s']:g} s (3 × heartbeat_s = {snap['heartbeat_s']:g} s)</div>"
        )
        return caption + table_html(
            ["user", "status", "heartbeat age", "devices", "typing", "changes seen"], rows
        )
