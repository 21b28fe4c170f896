"""A simulated client: the real client's bookkeeping and records, in virtual time.

Theory of operation
-------------------
:class:`SimClient` behaves like ``labkit.server.client.Client`` and writes the same records:

- it connects to one gateway of the list, sends ``hello`` with the ``last_seen`` and ``epochs``
  that :class:`~labkit.core.client_state.ClientState` keeps, and counts a new *session* at each
  ``welcome`` (so the ``hello`` is recorded under the previous session number, as live);
- every frame it sends is an ``out`` record, every frame it receives an ``in`` record; a
  ``welcome`` is followed by an ``open`` record and a lost connection by a ``close`` record;
- posts not yet acked are sent again, with the same ``id``, after every ``welcome``;
- a lost connection is retried with exponential backoff and seeded jitter, on the next gateway
  of the list (the real client's formula, with the same defaults);
- it pings every ``heartbeat_s / 2`` seconds.

A user may have several clients (``SimConfig.devices``): ``u0#1``, ``u0#2``, … each with its own
connection, :class:`~labkit.core.client_state.ClientState` and post ids, all recorded under the
user. Records are stamped with virtual time, so the checker reads a simulated run exactly like a
live one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from labkit.core.backoff import backoff_delay
from labkit.core.client_state import ClientState
from labkit.core.records import FrameRecord, Kind
from labkit.lab.sim.network import Link

if TYPE_CHECKING:
    from labkit.lab.sim.conns import SimConn
    from labkit.lab.sim.gateway import SimGateway
    from labkit.lab.sim.run import World

Frame = dict[str, Any]


class SimClient:
    """One client (device) of one user."""

    def __init__(self, world: World, user: str, first_gateway: int, device: int = 1) -> None:
        self.world = world
        self.user = user
        self.name = f"{user}#{device}"
        self.tag = user if device == 1 else f"{user}.{device}"
        """Prefix of the post and request ids: unique per user, as the protocol asks."""
        self.state = ClientState()
        self.session = 0
        self.conn: SimConn | None = None
        self.welcomed = False
        self.attempt = 0
        self.gateway_index = first_gateway
        self.pending_posts: dict[str, Frame] = {}
        self.pending_requests: dict[str, Frame] = {}
        self.posts = 0
        self.deliveries = 0
        self._ids = 0
        self.up = Link(world.net_latency, world.rng_net)
        self._append = world.recording.records.append

    def _record(self, kind: Kind, frame: Frame) -> None:
        self._append(
            FrameRecord(self.world.sched.now, self.name, self.user, self.session, kind, frame)
        )

    # -- connection lifecycle ---------------------------------------------------------------

    def connect(self) -> None:
        """Open a connection to the current gateway (a TCP + WebSocket handshake)."""
        world = self.world
        gateway = world.gateways[self.gateway_index % len(world.gateways)]
        world.sched.after(world.net_latency.sample(world.rng_net), self._reach, gateway)

    def _reach(self, gateway: SimGateway) -> None:
        world = self.world
        delay = world.net_latency.sample(world.rng_net)
        if not gateway.alive:
            world.sched.after(delay, self._retry)  # connection refused
            return
        world.sched.after(delay, self._opened, gateway.accept(self))

    def _opened(self, conn: SimConn) -> None:
        if not conn.client_open:  # the gateway died during the handshake
            self._retry()
            return
        self.conn = conn
        self.attempt = 0
        last_seen, epochs = self.state.hello_fields()
        self.send(
            {"type": "hello", "token": f"sim:{self.user}", "last_seen": last_seen, "epochs": epochs}
        )

    def on_closed(self, conn: SimConn, code: int, reason: str) -> None:
        """The connection is gone (cut, or its gateway crashed)."""
        if conn is not self.conn:
            return
        conn.client_open = False
        if self.welcomed:
            self._record("close", {"code": code, "reason": reason})
        self.conn = None
        self.welcomed = False
        self._retry()

    def _retry(self) -> None:
        world = self.world
        self.gateway_index += 1
        self.attempt += 1
        base_s, cap_s = world.config.backoff_s
        delay = backoff_delay(self.attempt, world.rng_clients, base_s, cap_s)
        world.count("reconnect")
        world.sched.after(delay, self.connect)

    def cut(self) -> None:
        """Fault: the connection breaks; the client sees it now, the gateway a moment later."""
        conn = self.conn
        if conn is None:
            return
        world = self.world
        world.say(self.name, f"connection to {conn.gateway.name} cut")
        world.sched.after(
            world.net_latency.sample(world.rng_net), conn.gateway.closed_by_client, conn
        )
        self.on_closed(conn, 1006, "")

    def send(self, frame: Frame) -> bool:
        conn = self.conn
        if conn is None:
            return False
        self._record("out", frame)
        sched = self.world.sched
        sched.at(self.up.arrival(sched.now), conn.gateway.receive, conn, frame)
        return True

    # -- frames in --------------------------------------------------------------------------

    def on_message(self, conn: SimConn, frame: Frame) -> None:
        """A ``message`` frame (the hot path: no dispatch)."""
        if conn is not self.conn:
            return
        self._append(
            FrameRecord(self.world.sched.now, self.name, self.user, self.session, "in", frame)
        )
        self.deliveries += 1
        self.state.on_message(frame["channel"], frame["seq"])

    def on_frame(self, conn: SimConn, frame: Frame) -> None:
        if conn is not self.conn or not conn.client_open:
            return
        kind = frame["type"]
        if kind == "message":
            self.on_message(conn, frame)
            return
        if kind == "welcome":
            self.session += 1
        self._record("in", frame)
        if kind == "welcome":
            self._on_welcome(conn, frame)
        elif kind == "ack":
            self.pending_posts.pop(frame["id"], None)
        elif kind == "reset":
            self.state.on_reset(frame["channel"], frame["head"], frame["epoch"])
        elif kind == "joined":
            self.state.on_joined(frame["channel"], frame["head"], frame["epoch"])
            self.pending_requests.pop(frame.get("id", ""), None)
        elif kind == "left":
            self.state.on_left(frame["channel"])
            self.pending_requests.pop(frame.get("id", ""), None)
        elif kind == "error":
            request_id = frame.get("id")
            if request_id is not None:
                self.pending_posts.pop(request_id, None)
                self.pending_requests.pop(request_id, None)

    def _on_welcome(self, conn: SimConn, frame: Frame) -> None:
        world = self.world
        self.welcomed = True
        channels = frame["channels"]
        self.state.on_welcome({ch: (info["head"], info["epoch"]) for ch, info in channels.items()})
        gateway = frame["gateway"]
        self._record("open", {"url": f"sim://{gateway}/ws", "gateway": gateway})
        world.say(self.name, f"welcomed by {gateway} (session {self.session})")
        for post in list(self.pending_posts.values()):
            self.send(post)
        world.sched.after(world.config.heartbeat_s / 2, self._ping, conn)

    def _ping(self, conn: SimConn) -> None:
        if conn is self.conn and self.welcomed:
            self.send({"type": "ping"})
            self.world.sched.after(self.world.config.heartbeat_s / 2, self._ping, conn)

    # -- what the user does -----------------------------------------------------------------

    def post_random(self) -> None:
        """Post to one of the user's channels; queued until the next welcome if offline."""
        world = self.world
        channels = sorted(self.state.last_seen)
        if not channels:
            world.tally("posts_skipped")
            return
        channel = channels[int(world.rng_clients.random() * len(channels))]
        self._ids += 1
        self.posts += 1
        world.tally("posts")
        post_id = f"{self.tag}-p{self._ids}"
        frame = {
            "type": "post",
            "id": post_id,
            "channel": channel,
            "text": f"{self.tag} #{self._ids} in {channel}",
        }
        self.pending_posts[post_id] = frame
        if self.welcomed:
            self.send(frame)

    def change_membership(self) -> None:
        """Leave one of the user's channels, or join one they are not in."""
        if not self.welcomed:
            return
        world = self.world
        rng = world.rng_clients
        mine = sorted(self.state.last_seen)
        others = [ch for ch in world.config.channels if ch not in self.state.last_seen]
        self._ids += 1
        request_id = f"{self.tag}-r{self._ids}"
        if mine and (not others or rng.random() < 0.5):
            frame = {
                "type": "leave",
                "id": request_id,
                "channel": mine[int(rng.random() * len(mine))],
            }
        elif others:
            frame = {
                "type": "join",
                "id": request_id,
                "channel": others[int(rng.random() * len(others))],
            }
        else:
            return
        self.pending_requests[request_id] = frame
        world.tally("membership_changes")
        self.send(frame)
