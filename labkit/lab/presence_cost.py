"""What presence costs in frames: naive broadcast vs ``presence_sub`` vs digests (pure).

Run ``python -m labkit.lab.presence_cost`` to print the table in ``docs/presence.md``.

Why measure: presence changes are the chattiest thing in a chat system. Broadcasting every
change to every member of every channel the user shares costs, per change, about as many frames
as there are people online (everyone shares ``#general``), so a team's total grows with the
square of its size. Subscribing only to the users on screen bounds it by the sidebar size.

The numbers come from *running* :class:`~labkit.core.presence.PresenceTracker` and
:class:`~labkit.core.presence.DigestBuffer` over a synthetic team in virtual time, seeded with
``random.Random(seed)``; the same seed gives the same table. The model, and what it assumes:

* **Channels.** Everyone is in ``#general``. There are ``max(2, users // 10)`` other channels,
  each of ``max(2, min(users // 2, int(4 * paretovariate(1.1))))`` random members: most are
  small (a median of about 7), a few are large, none as large as ``#general``.
* **Sidebar.** Each user's client subscribes with ``presence_sub`` to ``K = min(50, users - 1)``
  users: the people visible in a sidebar, drawn first from the members of the user's smaller
  channels (up to 15 from each, in random order), then at random from the team. 50 is an
  assumption about screen space, not a measurement.
* **Churn.** Sessions and absences are exponential with means of 45 minutes each (half the team
  is online at a time). Within a session the connection drops every 20 minutes on average (a
  phone changing networks, a laptop sleeping) and reconnects 1 to 15 s later; these reconnects
  fall inside the 30 s window, so they must produce no status change at all, and the
  simulation checks that they do not. The hour is measured after the team's state at ``t = 0``
  is drawn from the same steady state.
* **Heartbeats.** Each client heartbeats every ``heartbeat_s = 10`` s from its connect (so
  ``expiry_s = 30``). The simulation does not feed the tracker every beat: every 15 s it feeds
  each open connection its latest beat, and at close the connection's last beat. Transitions
  depend only on whether gaps reach ``expiry_s`` (these never do) and on the last beat, so the
  result is the same, and the 10,000-user hour runs in a few seconds.
* **Recipients.** A frame goes to a user only while they have an open connection (one device
  each here; multiply by devices per user for connection frames). The subject of a change
  never receives their own.

What is counted, per status change (one :class:`~labkit.core.presence.Transition`):

* ``naive per channel``: the change is broadcast into each channel the user is in and every
  connected member of each such channel receives it, once per shared channel.
* ``naive, deduplicated``: the same, but a recipient sharing several channels gets it once.
  With ``#general`` this is everyone connected.
* ``presence_sub``: one ``presence`` frame to each connected subscriber of the user.
* ``digest 60 s``: subscribers in digest mode (``"digest_s": 60``) get one
  ``presence_digest`` frame per minute at most, listing the net changes; we count the frames
  and the entries in them.

Snapshots (the reply to ``presence_sub`` at every connect, ``K`` frames; a naive client needs
the status of everyone it shares a channel with) are counted separately, per hour.
"""

from __future__ import annotations

import heapq
import random
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from labkit.core.presence import OFFLINE, DigestBuffer, PresenceTracker, Transition

TEAM_SIZES = (10, 100, 1000, 10000)
HEARTBEAT_S = 10.0
FEED_EVERY_S = 15.0
"""How often the simulation feeds the tracker the latest beat of every open connection."""
HOUR_S = 3600.0
SESSION_MEAN_S = 45 * 60.0
AWAY_MEAN_S = 45 * 60.0
DROP_MEAN_S = 20 * 60.0
RECONNECT_S = (1.0, 15.0)
SIDEBAR_K = 50
PER_CHANNEL_PICKS = 15
DIGEST_S = 60.0

# Event kinds, in the order they are processed when times tie.
_CLOSE, _CONNECT, _FEED, _FLUSH = range(4)


@dataclass(frozen=True, slots=True)
class CostRow:
    """Frames delivered during one simulated hour for one team size (see the module docstring)."""

    users: int
    channels: int
    """Including ``#general``."""
    memberships: int
    sidebar: int
    """``K``, the users each client subscribes to."""
    status_changes: int
    reconnects: int
    """Connections that closed and reopened inside the window: status changes they caused = 0."""
    connects: int
    """Times a user's client connected with no other connection open (each sends presence_sub)."""
    naive_channel: int
    naive_unique: int
    presence_sub: int
    digest_frames: int
    digest_entries: int
    naive_snapshot: int
    """Frames to tell each connecting client the status of everyone it shares a channel with."""
    sub_snapshot: int
    """Frames replying to ``presence_sub`` at each connect (``K`` each)."""

    def per_change(self, frames: int) -> float:
        """Frames per status change (0 when nothing changed)."""
        return frames / self.status_changes if self.status_changes else 0.0


@dataclass
class _Team:
    names: list[str]
    channels: list[list[int]]
    """Members of each channel; index 0 is ``#general``."""
    chans_of: list[list[int]]
    watchers: list[list[int]]
    """``watchers[v]``: the users whose sidebar shows ``v``."""
    sidebar: int


def _build_team(n: int, rng: random.Random) -> _Team:
    """Channels and sidebars as described in the module docstring."""
    channels: list[list[int]] = [list(range(n))]
    for _ in range(max(2, n // 10)):
        size = max(2, min(n // 2, int(4 * rng.paretovariate(1.1))))
        channels.append(rng.sample(range(n), size))
    chans_of: list[list[int]] = [[] for _ in range(n)]
    for c, members in enumerate(channels):
        for u in members:
            chans_of[u].append(c)
    k = min(SIDEBAR_K, n - 1)
    watchers: list[list[int]] = [[] for _ in range(n)]
    for u in range(n):
        picked: set[int] = set()
        small = chans_of[u][1:]
        rng.shuffle(small)
        for c in small:
            if len(picked) >= k:
                break
            members = channels[c]
            for v in rng.sample(members, min(PER_CHANNEL_PICKS, len(members))):
                if v != u and len(picked) < k:
                    picked.add(v)
        while len(picked) < k:
            v = rng.randrange(n)
            if v != u:
                picked.add(v)
        for v in sorted(picked):
            watchers[v].append(u)
    return _Team([f"u{i}" for i in range(n)], channels, chans_of, watchers, k)


def simulate(n: int, seed: int = 1) -> CostRow:
    """Run one simulated hour for a team of ``n`` users and count the frames."""
    if n < 2:
        raise ValueError("a team needs at least 2 users")
    rng = random.Random(seed * 1_000_003 + n)
    team = _build_team(n, rng)
    index = {name: i for i, name in enumerate(team.names)}
    tracker = PresenceTracker(HEARTBEAT_S)

    events: list[tuple[float, int, int, int, object]] = []
    counter = 0

    def push(t: float, kind: int, user: int, arg: object = None) -> None:
        nonlocal counter
        counter += 1
        heapq.heappush(events, (t, kind, counter, user, arg))

    session_end = [0.0] * n
    open_conn: list[str | None] = [None] * n  # one device each: at most one open connection
    conn_serial = [0] * n
    conn_start = [0.0] * n
    connected: set[int] = set()
    conn_in = [0] * len(team.channels)  # connected members per channel
    buffers: dict[int, tuple[DigestBuffer, float]] = {}  # subscriber -> (buffer, subscribed at)
    dirty: set[int] = set()
    measuring = False
    status_now = [OFFLINE] * n  # what was last announced, to check that transitions alternate

    counts = dict.fromkeys(
        (
            "changes",
            "reconnects",
            "connects",
            "naive_channel",
            "naive_unique",
            "presence_sub",
            "digest_frames",
            "digest_entries",
        ),
        0,
    )

    def on_transition(tr: Transition) -> None:
        u = index[tr.user]
        if status_now[u] == tr.status:
            raise AssertionError(f"seed {seed}: {tr.user} announced {tr.status} twice: {tr}")
        status_now[u] = tr.status
        if not measuring:
            return
        counts["changes"] += 1
        own = 1 if u in connected else 0
        counts["naive_channel"] += sum(conn_in[c] - own for c in team.chans_of[u])
        counts["naive_unique"] += len(connected) - own
        delivered = 0
        for w in team.watchers[u]:
            if w in connected:
                delivered += 1
                buf, since = buffers[w]
                buf.add(tr)
                if w not in dirty:
                    dirty.add(w)
                    periods = int((tr.at - since) // DIGEST_S) + 1
                    push(since + periods * DIGEST_S, _FLUSH, w, buf)
        counts["presence_sub"] += delivered

    def connect(u: int, t: float) -> None:
        conn_serial[u] += 1
        cid = f"{u}:{conn_serial[u]}"
        open_conn[u] = cid
        connected.add(u)
        for c in team.chans_of[u]:
            conn_in[c] += 1
        buffers[u] = (DigestBuffer(DIGEST_S, t), t)
        dirty.discard(u)
        if measuring:
            counts["connects"] += 1
        for tr in tracker.connect(team.names[u], cid, t):
            on_transition(tr)
        conn_start[u] = t
        # This connection ends at the session's end or at a drop, whichever comes first.
        push(min(session_end[u], t + rng.expovariate(1 / DROP_MEAN_S)), _CLOSE, u, cid)

    def last_beat(u: int, t: float) -> float:
        start = conn_start[u]
        return start + HEARTBEAT_S * ((t - start) // HEARTBEAT_S)

    def start_session(u: int, t: float) -> None:
        session_end[u] = t + rng.expovariate(1 / SESSION_MEAN_S)
        connect(u, t)

    # The state at t = 0, drawn from the steady state; its transitions are not counted.
    p_online = SESSION_MEAN_S / (SESSION_MEAN_S + AWAY_MEAN_S)
    for u in range(n):
        if rng.random() < p_online:
            start_session(u, 0.0)
        else:
            push(rng.expovariate(1 / AWAY_MEAN_S), _CONNECT, u, "session")
    measuring = True
    push(FEED_EVERY_S, _FEED, -1)

    # A lower bound on tracker.next_deadline(): heartbeats only push deadlines later, and a
    # connect adds one 30 s ahead, so the exact (and costlier) call is only needed when an
    # event reaches this bound.
    bound = tracker.next_deadline()
    while events and events[0][0] <= HOUR_S:
        t = events[0][0]
        while bound is not None and bound <= t:
            bound = tracker.next_deadline()
            if bound is not None and bound <= t:
                for tr in tracker.expire(bound):
                    on_transition(tr)
        t, kind, _, u, arg = heapq.heappop(events)
        if kind == _FEED:
            # Each open connection's latest beat (at most 10 s old: the gaps between fed beats
            # stay under 25 s, so no deadline is ever reached while a connection is open).
            names, heartbeat = team.names, tracker.heartbeat
            for v in connected:
                cid = open_conn[v]
                assert cid is not None
                start = conn_start[v]
                beat = start + HEARTBEAT_S * ((t - start) // HEARTBEAT_S)
                if beat > start and heartbeat(names[v], cid, beat):
                    raise AssertionError(f"seed {seed}: a heartbeat of a live conn announced")
            push(t + FEED_EVERY_S, _FEED, -1)
        elif kind == _CLOSE:
            cid = open_conn[u]
            if cid is None or cid != arg:
                continue
            # The client's last beat before closing is the one that sets the deadline.
            tracker.heartbeat(team.names[u], cid, last_beat(u, t))
            tracker.disconnect(team.names[u], cid, t)
            open_conn[u] = None
            connected.discard(u)
            for c in team.chans_of[u]:
                conn_in[c] -= 1
            del buffers[u]
            dirty.discard(u)
            back = t + rng.uniform(*RECONNECT_S)
            if back < session_end[u]:
                push(back, _CONNECT, u, "reconnect")
            else:
                push(session_end[u] + rng.expovariate(1 / AWAY_MEAN_S), _CONNECT, u, "session")
        elif kind == _CONNECT:
            changes_before = counts["changes"]
            if arg == "reconnect":
                connect(u, t)
                counts["reconnects"] += 1
                if counts["changes"] != changes_before:
                    raise AssertionError(f"seed {seed}: a reconnect inside the window flapped")
            else:
                start_session(u, t)
            if bound is None or t + tracker.expiry_s < bound:
                bound = t + tracker.expiry_s
        elif kind == _FLUSH:
            entry = buffers.get(u)
            if entry is None or entry[0] is not arg:
                continue  # the subscriber disconnected since: that buffer is gone
            buf = entry[0]
            dirty.discard(u)
            changes, _, _ = buf.flush(t)
            if changes:
                counts["digest_frames"] += 1
                counts["digest_entries"] += len(changes)
    deadline = tracker.next_deadline()
    while deadline is not None and deadline <= HOUR_S:
        for tr in tracker.expire(deadline):
            on_transition(tr)
        deadline = tracker.next_deadline()

    naive_peers = n - 1  # everyone shares #general
    return CostRow(
        users=n,
        channels=len(team.channels),
        memberships=sum(len(m) for m in team.channels),
        sidebar=team.sidebar,
        status_changes=counts["changes"],
        reconnects=counts["reconnects"],
        connects=counts["connects"],
        naive_channel=counts["naive_channel"],
        naive_unique=counts["naive_unique"],
        presence_sub=counts["presence_sub"],
        digest_frames=counts["digest_frames"],
        digest_entries=counts["digest_entries"],
        naive_snapshot=counts["connects"] * naive_peers,
        sub_snapshot=counts["connects"] * team.sidebar,
    )


def measure(team_sizes: Iterable[int] = TEAM_SIZES, seed: int = 1) -> list[CostRow]:
    """One :class:`CostRow` per team size, each from its own seeded simulation."""
    return [simulate(n, seed) for n in team_sizes]


def _num(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def render_markdown(rows: Sequence[CostRow]) -> str:
    """Two Markdown tables: frames per status change, and totals for the hour."""
    lines = [
        "Frames delivered per status change (mean over the simulated hour):",
        "",
        "| users | channels | status changes / h | naive, per channel | naive, deduplicated"
        " | presence_sub | digest 60 s: frames | digest 60 s: entries |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        cells = [
            f"{r.users:,}",
            f"{r.channels:,}",
            f"{r.status_changes:,}",
            _num(r.per_change(r.naive_channel)),
            _num(r.per_change(r.naive_unique)),
            _num(r.per_change(r.presence_sub)),
            _num(r.per_change(r.digest_frames)),
            _num(r.per_change(r.digest_entries)),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Frames in the hour, status changes plus the snapshots sent at each connect:",
        "",
        "| users | sidebar K | connects / h | reconnects in window (flaps: 0) | naive, per channel"
        " | naive, deduplicated | presence_sub | digest 60 s |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        cells = [
            f"{r.users:,}",
            f"{r.sidebar}",
            f"{r.connects:,}",
            f"{r.reconnects:,}",
            f"{r.naive_channel + r.naive_snapshot:,}",
            f"{r.naive_unique + r.naive_snapshot:,}",
            f"{r.presence_sub + r.sub_snapshot:,}",
            f"{r.digest_frames + r.sub_snapshot:,}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m labkit.lab.presence_cost [SEED]``: print the tables for ``SEED`` (default 1)."""
    args = list(sys.argv[1:] if argv is None else argv)
    seed = int(args[0]) if args else 1
    print(render_markdown(measure(seed=seed)), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
