"""SequenceTimeline: per client and channel, which seqs it has, as of any moment of the run.

One strip per client, channel and channel *life* (an epoch: a ``reset`` to a new epoch starts a
new strip, since its numbering starts again). Cell ``n`` of a strip is seq ``n``, coloured by how
that client got it, as of the time chosen with the slider:

========== ==================================================================================
live       received as it happened, in order
gap_filled received late: paged from history after a reconnect, or after a hole was noticed
missing    exists (this client saw a later seq, or someone else saw it ``settle_s`` ago) and
           has not reached this client yet; a repair turns it green
duplicate  received a second time (a broken guarantee: the strip marks it on top of the cell)
reset      skipped on purpose: the server sent ``reset`` (too far behind) instead of a gap-fill
========== ==================================================================================

Seqs before the client started tracking the channel (it joined at ``head``) are not owed and
are drawn blank. Everything comes from the clients' :class:`~labkit.core.records.Recording`, so the
same widget follows a live cluster and replays a finished run or a seeded simulation.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import ipywidgets as widgets

from labkit.core.records import FrameRecord, Recording
from labkit.viz.base import LiveWidget
from labkit.viz.svg import PALETTE, el, legend_html, svg, text

CATEGORIES = ("live", "gap_filled", "missing", "duplicate", "reset")
LEGEND = {
    "live": "live",
    "gap_filled": "gap-filled",
    "missing": "missing",
    "duplicate": "duplicate",
    "reset": "skipped by reset",
}
MAX_CELLS = 240
"""A strip shows at most this many seqs (the newest ones)."""


@dataclass(slots=True)
class Strip:
    """What one client got of one channel life, as timed events (no state at a time yet)."""

    client: str
    user: str
    channel: str
    epoch: str | None
    life: int
    start_seq: int
    """First seq owed (head + 1 when tracking began)."""
    receipts: list[tuple[float, int, str]] = field(default_factory=list)
    """(t, seq, ``live``/``gap_filled``/``duplicate``) in time order."""
    skipped: list[tuple[float, int, int]] = field(default_factory=list)
    """(t, first, last): seqs skipped by a ``reset``."""
    end_t: float = math.inf
    """When the client stopped tracking (left the channel, or closed for good)."""
    got: set[int] = field(default_factory=set)


@dataclass(slots=True)
class _Tracker:
    strip: Strip
    fill_top: int = 0
    """Seqs up to this one, received in the current session, were owed from before it."""
    last: int = 0


class TimelineModel:
    """Strips of every client, fed incrementally with records (pure)."""

    def __init__(self, channel: str | None = None, clients: Iterable[str] | None = None) -> None:
        self.channel = channel
        self.clients = set(clients) if clients is not None else None
        self.strips: list[Strip] = []
        self.t0: float | None = None
        self.t_last = 0.0
        self._trackers: dict[tuple[str, str], _Tracker] = {}
        self._hello: dict[str, dict[str, Any]] = {}
        self._known: dict[tuple[str, str | None], tuple[list[float], list[int]]] = {}
        self._closed_at: dict[str, float] = {}
        self._epochs: dict[str, str | None] = {}
        """Channel → the newest epoch any client was told of."""
        self._records = 0

    # -- reading records --------------------------------------------------------------------

    def feed(self, records: Sequence[FrameRecord]) -> None:
        for r in records[self._records :]:
            if self.t0 is None:
                self.t0 = r.t
            self.t_last = max(self.t_last, r.t)
            self._one(r)
        self._records = len(records)

    def _wanted(self, client: str, channel: object) -> bool:
        return (
            isinstance(channel, str)
            and (self.channel is None or channel == self.channel)
            and (self.clients is None or client in self.clients)
        )

    def _one(self, r: FrameRecord) -> None:
        frame = r.frame
        kind = frame.get("type")
        if r.kind == "out" and kind == "hello":
            self._hello[r.client] = frame
            return
        if r.kind == "close":
            self._closed_at[r.client] = r.t
            return
        if r.kind == "open":
            self._closed_at.pop(r.client, None)
            return
        if r.kind != "in":
            return
        if kind == "welcome":
            self._welcome(r)
        elif kind == "message":
            self._known_seq(r.frame.get("channel"), self._epoch_of(r), r.frame.get("seq"), r.t)
            self._message(r)
        elif kind == "ack":
            self._known_seq(r.frame.get("channel"), self._epoch_of(r), r.frame.get("seq"), r.t)
        elif kind == "reset":
            self._reset(r)
        elif kind == "joined":
            channel = frame.get("channel")
            head = _int(frame.get("head"))
            if self._wanted(r.client, channel) and head is not None:
                assert isinstance(channel, str)
                tracker = self._trackers.get((r.client, channel))
                if tracker is None or tracker.strip.end_t < math.inf:
                    self._start(r, channel, _str(frame.get("epoch")), head)
        elif kind == "left":
            channel = frame.get("channel")
            tracker = self._trackers.get((r.client, str(channel)))
            if tracker is not None:
                tracker.strip.end_t = r.t

    def _epoch_of(self, r: FrameRecord) -> str | None:
        """The epoch the record's client is in for the channel (else the latest one seen)."""
        channel = str(r.frame.get("channel"))
        tracker = self._trackers.get((r.client, channel))
        return tracker.strip.epoch if tracker is not None else self._epochs.get(channel)

    def _known_seq(self, channel: object, epoch: str | None, seq: object, t: float) -> None:
        if not isinstance(channel, str) or not isinstance(seq, int):
            return
        times, tops = self._known.setdefault((channel, epoch), ([], []))
        if not tops or seq > tops[-1]:
            times.append(t)
            tops.append(seq)

    def known_top(self, channel: str, epoch: str | None, t: float) -> int:
        """The highest seq known to exist at time ``t`` (seen by anyone, or acked)."""
        times, tops = self._known.get((channel, epoch), ([], []))
        i = bisect.bisect_right(times, t)
        return tops[i - 1] if i else 0

    def _start(self, r: FrameRecord, channel: str, epoch: str | None, head: int) -> _Tracker:
        life = 1 + sum(1 for s in self.strips if s.client == r.client and s.channel == channel)
        strip = Strip(r.client, r.user, channel, epoch, life, head + 1)
        self._epochs[channel] = epoch
        self.strips.append(strip)
        tracker = _Tracker(strip, fill_top=head, last=head)
        self._trackers[r.client, channel] = tracker
        return tracker

    def _welcome(self, r: FrameRecord) -> None:
        hello = self._hello.get(r.client, {})
        last_seen = hello.get("last_seen") or {}
        channels = r.frame.get("channels") or {}
        for channel, info in channels.items():
            if not self._wanted(r.client, channel) or not isinstance(info, dict):
                continue
            head = _int(info.get("head")) or 0
            epoch = _str(info.get("epoch"))
            tracker = self._trackers.get((r.client, channel))
            if tracker is None or tracker.strip.end_t < math.inf:
                self._start(r, channel, epoch, head)
            elif _int(last_seen.get(channel)) is None and tracker.strip.epoch == epoch:
                # A client that tracked the channel but resumed without last_seen is put at
                # the head: what came in between is owed and will never come (missing).
                tracker.fill_top = tracker.last = head
            else:
                tracker.fill_top = head
            self._known_seq(channel, epoch, head, r.t)

    def _message(self, r: FrameRecord) -> None:
        channel, seq = r.frame.get("channel"), r.frame.get("seq")
        if not self._wanted(r.client, channel) or not isinstance(seq, int):
            return
        assert isinstance(channel, str)
        tracker = self._trackers.get((r.client, channel))
        if tracker is None:
            return
        strip = tracker.strip
        if seq in strip.got:
            strip.receipts.append((r.t, seq, "duplicate"))
            return
        strip.got.add(seq)
        late = seq <= tracker.fill_top or seq < tracker.last
        strip.receipts.append((r.t, seq, "gap_filled" if late else "live"))
        tracker.last = max(tracker.last, seq)

    def _reset(self, r: FrameRecord) -> None:
        channel, head = r.frame.get("channel"), _int(r.frame.get("head"))
        if not self._wanted(r.client, channel) or head is None:
            return
        assert isinstance(channel, str)
        epoch = _str(r.frame.get("epoch"))
        tracker = self._trackers.get((r.client, channel))
        if tracker is None or tracker.strip.epoch != epoch:
            if tracker is not None:
                tracker.strip.end_t = r.t
            self._start(r, channel, epoch, head)
        else:
            first = max(tracker.last + 1, tracker.strip.start_seq)
            if head >= first:
                tracker.strip.skipped.append((r.t, first, head))
            tracker.last = max(tracker.last, head)
            tracker.fill_top = head
        self._known_seq(channel, epoch, head, r.t)

    # -- state at a time --------------------------------------------------------------------

    def state(self, t: float, settle_s: float) -> list[dict[str, Any]]:
        """Every strip as of time ``t``: the seqs of each category."""
        rows = []
        for strip in self.strips:
            end = min(t, strip.end_t, self._closed_at.get(strip.client, math.inf))
            cats: dict[str, set[int]] = {c: set() for c in CATEGORIES}
            for rt, seq, how in strip.receipts:
                if rt > t:
                    break
                if how == "duplicate":
                    cats["duplicate"].add(seq)
                else:
                    cats[how].add(seq)
            for rt, first, last in strip.skipped:
                if rt <= t:
                    cats["reset"].update(range(first, last + 1))
            have = cats["live"] | cats["gap_filled"] | cats["reset"]
            top_seen = max(have, default=0)
            top_known = self.known_top(strip.channel, strip.epoch, end - settle_s)
            top = max(top_seen, top_known)
            cats["missing"] = {s for s in range(strip.start_seq, top + 1) if s not in have}
            rows.append(
                {
                    "client": strip.client,
                    "user": strip.user,
                    "channel": strip.channel,
                    "epoch": strip.epoch,
                    "life": strip.life,
                    "first": strip.start_seq,
                    "top": max(top, strip.start_seq - 1),
                    **{c: sorted(cats[c]) for c in CATEGORIES},
                }
            )
        return rows


class SequenceTimeline(LiveWidget):
    """Strips of seqs per client and channel, with a time slider.

    ``SequenceTimeline(cluster.recording, channel="general")`` follows a live cluster (its
    recording grows); pass a finished recording (``sim_result.recording``) to replay a run.
    """

    def __init__(
        self,
        recording: Recording,
        *,
        channel: str | None = None,
        clients: Iterable[str] | None = None,
        settle_s: float = 2.0,
        title: str | None = None,
    ) -> None:
        self.recording = recording
        self.model = TimelineModel(channel, clients)
        self.settle_s = settle_s
        self.title = title or ("#" + channel if channel else "all channels") + ": seqs per client"
        self._pinned: float | None = None
        self._svg = widgets.HTML()
        self._slider = widgets.FloatSlider(
            value=0.0,
            min=0.0,
            max=0.0,
            step=0.01,
            description="time (s)",
            readout_format=".2f",
            continuous_update=True,
            layout=widgets.Layout(width="95%"),
        )
        self._slider.observe(self._on_slider, names="value")
        self._legend = widgets.HTML(self.legend())
        super().__init__(children=[self._svg, self._legend, self._slider])
        self.model.feed(recording.records)
        self.render()

    @classmethod
    def of(cls, source: Any, **kwargs: Any) -> SequenceTimeline:
        """From anything with a ``recording`` (a cluster, a ``SimResult``) or a recording."""
        recording = source if isinstance(source, Recording) else source.recording
        return cls(recording, **kwargs)

    async def collect(self) -> None:
        self.model.feed(self.recording.records)

    @property
    def duration(self) -> float:
        return self.model.t_last - self.model.t0 if self.model.t0 is not None else 0.0

    @property
    def at(self) -> float:
        """The time shown, in seconds since the first record (the end, unless pinned)."""
        return self.duration if self._pinned is None else min(self._pinned, self.duration)

    def show_time(self, seconds: float | None) -> None:
        """Show the strips as of ``seconds`` after the first record (None: follow the end)."""
        self._pinned = seconds
        self.render()

    def _on_slider(self, change: dict[str, Any]) -> None:
        value = float(change["new"])
        self._pinned = None if value >= self.duration - 1e-9 else value
        self._svg.value = self._svg_markup(self.snapshot())

    def snapshot(self) -> dict[str, Any]:
        t0 = self.model.t0 or 0.0
        rows = self.model.state(t0 + self.at, self.settle_s)
        return {
            "t": round(self.at, 6),
            "duration": round(self.duration, 6),
            "rows": rows,
            "totals": {c: sum(len(r[c]) for r in rows) for c in CATEGORIES},
            "legend": {LEGEND[c]: PALETTE[c] for c in CATEGORIES},
        }

    def render(self) -> None:
        self._slider.unobserve(self._on_slider, names="value")
        try:
            self._slider.max = max(self.duration, 0.01)
            self._slider.value = self.at
        finally:
            self._slider.observe(self._on_slider, names="value")
        self._svg.value = self._svg_markup(self.snapshot())

    def legend(self) -> str:
        return legend_html([(LEGEND[c], PALETTE[c]) for c in CATEGORIES])

    def _svg_markup(self, snap: dict[str, Any]) -> str:
        """One strip per row; rows of the same channel life share a seq axis (the newest
        ``MAX_CELLS`` seqs of that life), labelled at the right of each strip."""
        rows = snap["rows"]
        label_w, width, row_h, top = 190.0, 780.0, 26.0, 30.0
        range_w = 84.0
        body: list[str] = [
            el(
                "text",
                text(f"{self.title} · as of t = {snap['t']:.2f} s of {snap['duration']:.2f} s"),
                x="4",
                y="16",
                font_size="13",
                font_weight="bold",
            )
        ]
        if not rows:
            body.append(
                el(
                    "text",
                    "no client has tracked a channel yet",
                    x="4",
                    y="34",
                    font_size="12",
                    fill="#6b7280",
                )
            )
        spans: dict[tuple[str, str | None, int], tuple[int, int]] = {}
        for row in rows:
            key = (row["channel"], row["epoch"], row["life"])
            lo, hi = spans.get(key, (row["first"], row["top"]))
            spans[key] = (min(lo, row["first"]), max(hi, row["top"]))
        for i, row in enumerate(rows):
            y = top + i * row_h
            lo, hi = spans[row["channel"], row["epoch"], row["life"]]
            first = max(lo, hi - MAX_CELLS + 1, 1)
            cells = max(hi - first + 1, 1)
            cell_w = min(16.0, (width - label_w - range_w) / cells)
            name = f"{row['client']} #{row['channel']}" + (
                f" (life {row['life']})" if row["life"] > 1 else ""
            )
            body.append(el("text", text(name), x="4", y=f"{y + 12:.0f}", font_size="12"))
            seq_range = f"seq {first}–{hi}" if hi >= first else "nothing yet"
            body.append(
                el(
                    "text",
                    seq_range,
                    x=f"{label_w + cells * cell_w + 6:.0f}",
                    y=f"{y + 12:.0f}",
                    font_size="10",
                    fill="#6b7280",
                )
            )
            colour_of: dict[int, str] = {}
            for cat in ("live", "gap_filled", "reset", "missing"):
                for seq in row[cat]:
                    colour_of[seq] = PALETTE[cat]
            for seq in range(max(row["first"], first), row["top"] + 1):
                x = label_w + (seq - first) * cell_w
                body.append(
                    el(
                        "rect",
                        el("title", f"seq {seq}"),
                        x=f"{x:.1f}",
                        y=f"{y:.0f}",
                        width=f"{max(cell_w - 1, 0.6):.1f}",
                        height="16",
                        fill=colour_of.get(seq, PALETTE["pending"]),
                    )
                )
            for seq in row["duplicate"]:
                if seq >= first:
                    x = label_w + (seq - first) * cell_w
                    body.append(
                        el(
                            "rect",
                            x=f"{x:.1f}",
                            y=f"{y - 4:.0f}",
                            width=f"{max(cell_w - 1, 0.6):.1f}",
                            height="4",
                            fill=PALETTE["duplicate"],
                        )
                    )
        height = top + max(len(rows), 1) * row_h + 8
        return svg(width, height, body, label=self.title)

    def to_html(self) -> str:
        return self._svg_markup(self.snapshot()) + self.legend()


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None
