"""The gateway machine alone: events in, actions out, no sockets, no Redis, no clock.

Two kinds of test:

* **Replay.** ``tests/data/gateway_machine.jsonl`` is an event log recorded from a live gateway
  (through its observer) while two users connected, posted, joined, left, typed, subscribed to
  presence, read history and closed. Replayed into a fresh machine, every event must produce
  exactly the actions recorded. Regenerate the log with ``.venv/bin/python
  tests/record_machine_log.py`` after a deliberate change of behaviour.
* **Rules.** Each decision of PROTOCOL.md that the machine makes, driven by hand-made events,
  and checked on the actions it returns.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from labkit.core import protocol as p
from labkit.core.auth import make_token
from labkit.core.gateway import GatewayMachine, MachineConfig, token_checker
from labkit.core.gateway import events as ev
from labkit.core.gateway import log as machine_log
from labkit.core.gateway.bus_payloads import CONTROL_TOPIC, MembershipChange, channel_topic

LOG = Path(__file__).parent / "data" / "gateway_machine.jsonl"
SECRET = "machine-test-secret"
T0 = 1_000.0


# --------------------------------------------------------------------------- replay


def _replay_machine(header: dict[str, Any]) -> GatewayMachine:
    config = MachineConfig(**header["config"])
    return GatewayMachine(config, authenticate=token_checker(header["secret"]))


def test_a_recorded_live_log_replays_to_the_same_actions() -> None:
    lines = LOG.read_text().splitlines()
    header = json.loads(lines[0])
    machine = _replay_machine(header)
    kinds: set[str] = set()
    for number, line in enumerate(lines[1:], start=2):
        event, recorded = machine_log.loads(line)
        got = [machine_log.action_to_json(a) for a in machine.handle(event)]
        assert got == recorded, f"line {number}: {event}"
        kinds.update(a["kind"] for a in recorded)
    # The log exercises every kind of action a live gateway takes, so the replay means something.
    assert {"Send", "Broadcast", "Request", "Publish", "Subscribe", "Unsubscribe"} <= kinds
    assert len(lines) > 30


def test_a_changed_reply_changes_the_actions() -> None:
    """The replay test can fail: a store answering differently changes what the machine does."""
    lines = LOG.read_text().splitlines()
    machine = _replay_machine(json.loads(lines[0]))
    for line in lines[1:]:
        event, recorded = machine_log.loads(line)
        if isinstance(event, ev.Reply) and isinstance(event.request.op, ev.ReadChannels):
            event = ev.Reply(event.request, [], None)  # the user is in no channel
            got = [machine_log.action_to_json(a) for a in machine.handle(event)]
            assert got != recorded
            return
        machine.handle(event)
    pytest.fail("the log has no ReadChannels reply")


# --------------------------------------------------------------------------- rules


class Harness:
    """One machine, driven by hand: ``handle`` returns its actions, and requests are answered
    from a tiny in-memory store."""

    def __init__(self, **config: Any) -> None:
        self.machine = GatewayMachine(MachineConfig(**config), authenticate=token_checker(SECRET))
        self.requests: list[ev.Request] = []

    def handle(self, event: ev.Event) -> list[ev.Action]:
        actions = self.machine.handle(event)
        self.requests += [a for a in actions if isinstance(a, ev.Request)]
        return actions

    def reply(self, op_type: type, result: object, error: str | None = None) -> list[ev.Action]:
        """Answer the oldest pending request of ``op_type``."""
        for request in self.requests:
            if isinstance(request.op, op_type):
                self.requests.remove(request)
                return self.handle(ev.Reply(request, result, error))
        raise AssertionError(f"no pending {op_type.__name__}: {self.requests}")

    def pending(self, op_type: type) -> list[ev.Request]:
        return [r for r in self.requests if isinstance(r.op, op_type)]

    def welcome(self, conn: str, user: str, channels: dict[str, int]) -> list[ev.Action]:
        """Open ``conn``, say hello, answer every request of the handshake; returns the actions
        of the last answer (the one that sends ``welcome``)."""
        self.handle(ev.Opened(conn, T0))
        token = make_token(user, SECRET, now=T0)
        self.handle(ev.Received(conn, json.dumps({"type": "hello", "token": token}), T0))
        self.reply(ev.ReadChannels, sorted(channels))
        actions: list[ev.Action] = []
        while self.pending(ev.ReadStates):
            op = self.pending(ev.ReadStates)[0].op
            assert isinstance(op, ev.ReadStates)
            actions = self.reply(ev.ReadStates, {ch: (channels[ch], "e1") for ch in op.channels})
        return actions


def frames(actions: list[ev.Action], conn: str | None = None) -> list[dict[str, Any]]:
    """The frames written, to ``conn`` (sends and broadcasts) or to anyone."""
    out = []
    for action in actions:
        if (isinstance(action, ev.Send) and (conn is None or action.conn == conn)) or (
            isinstance(action, ev.Broadcast) and (conn is None or conn in action.conns)
        ):
            out.append(json.loads(action.payload))
    return out


def message(channel: str, seq: int, text: str = "x") -> str:
    return p.encode(p.Message(channel, seq, "bob", text, T0))


def test_the_first_frame_must_be_a_valid_hello() -> None:
    h = Harness()
    h.handle(ev.Opened("c1", T0))
    actions = h.handle(ev.Received("c1", '{"type": "ping"}', T0))
    assert frames(actions)[0]["code"] == "unauthorized"
    assert [a for a in actions if isinstance(a, ev.Close)] == [
        ev.Close("c1", p.CloseCode.UNAUTHORIZED, "unauthorized")
    ]


def test_a_silent_hello_is_refused_after_the_timeout() -> None:
    h = Harness(hello_timeout_s=5.0)
    h.handle(ev.Opened("c1", T0))
    assert not any(isinstance(a, ev.Close) for a in h.handle(ev.Tick(T0 + 4.9)))
    closes = [a for a in h.handle(ev.Tick(T0 + 5.1)) if isinstance(a, ev.Close)]
    assert closes == [ev.Close("c1", p.CloseCode.UNAUTHORIZED, "unauthorized")]


def test_welcome_subscribes_before_reading_heads_and_resumes_from_last_seen() -> None:
    h = Harness()
    h.handle(ev.Opened("c1", T0))
    token = make_token("alice", SECRET, now=T0)
    hello = {"type": "hello", "token": token, "last_seen": {"general": 2}}
    assert [type(a) for a in h.handle(ev.Received("c1", json.dumps(hello), T0))] == [ev.Request]
    actions = h.reply(ev.ReadChannels, ["general"])
    # Subscribe first, then read the head (the subscribe-then-backfill order).
    assert isinstance(actions[0], ev.Subscribe) and actions[0].topic == channel_topic("general")
    assert isinstance(actions[1], ev.Request) and isinstance(actions[1].op, ev.ReadStates)
    h.reply(ev.ReadStates, {"general": (5, "e1")})
    actions = h.reply(ev.ReadStates, {"general": (5, "e1")})
    assert frames(actions, "c1")[0]["type"] == "welcome"
    history = [a for a in actions if isinstance(a, ev.Request) and isinstance(a.op, ev.ReadHistory)]
    assert [r.op for r in history] == [ev.ReadHistory("general", 2, 200)]
    page = [(3, message("general", 3)), (4, message("general", 4)), (5, message("general", 5))]
    actions = h.reply(ev.ReadHistory, ("e1", page))
    assert [f["seq"] for f in frames(actions, "c1")] == [3, 4, 5]
    assert h.machine.core.cursor("c1", "general").live  # caught up in the same step


def test_a_seq_jump_on_the_bus_fetches_the_hole_and_a_stale_fetch_is_dropped() -> None:
    h = Harness()
    h.welcome("c1", "alice", {"general": 0})
    topic = channel_topic("general")
    actions = h.handle(ev.BusMessage(topic, message("general", 3), T0))
    assert frames(actions) == []
    fetch = [a for a in actions if isinstance(a, ev.Request)]
    assert [a.op for a in fetch] == [ev.ReadRange("general", 1, 2)]
    # The channel gets a new epoch before the fetch is answered: the answer is stale.
    h.handle(ev.Tick(T0 + 1))
    h.reply(ev.ReadStates, {"general": (0, "e2")})
    stale = h.reply(ev.ReadRange, ("e1", [(1, message("general", 1)), (2, message("general", 2))]))
    assert frames(stale) == []


def test_a_new_epoch_resets_every_local_member() -> None:
    h = Harness()
    h.welcome("c1", "alice", {"general": 4})
    h.welcome("c2", "bob", {"general": 4})
    h.handle(ev.Tick(T0 + 1))
    actions = h.reply(ev.ReadStates, {"general": (0, "e9")})
    resets = [a for a in actions if isinstance(a, ev.Broadcast)]
    assert len(resets) == 1 and set(resets[0].conns) == {"c1", "c2"}
    assert json.loads(resets[0].payload) == {
        "type": "reset", "channel": "general", "head": 0, "epoch": "e9", "reason": "epoch_changed"
    }  # fmt: skip


def test_a_post_is_stored_then_published_then_acked() -> None:
    h = Harness()
    h.welcome("c1", "alice", {"general": 0})
    frame = {"type": "post", "id": "p1", "channel": "general", "text": "hi"}
    actions = h.handle(ev.Received("c1", json.dumps(frame), T0 + 1))
    assert [r.op for r in h.pending(ev.Append)] == [
        ev.Append("alice", "general", "p1", "hi", T0 + 1)
    ]
    raw = message("general", 1, "hi")
    actions = h.reply(ev.Append, ev.Appended("new", 1, T0 + 1, raw))
    assert isinstance(actions[0], ev.Publish) and actions[0].payload == raw
    assert frames(actions, "c1") == [
        {"type": "ack", "id": "p1", "channel": "general", "seq": 1, "ts": T0 + 1}
    ]


def test_a_connections_requests_are_answered_in_order() -> None:
    h = Harness()
    h.welcome("c1", "alice", {"general": 0})
    join = {"type": "join", "id": "j1", "channel": "design"}
    post_frame = {"type": "post", "id": "p1", "channel": "design", "text": "hi"}
    h.handle(ev.Received("c1", json.dumps(join), T0))
    assert h.handle(ev.Received("c1", json.dumps(post_frame), T0)) == []  # waits for the join
    assert not h.pending(ev.Append)
    h.reply(ev.JoinChannel, (True, 0, "e1"))
    assert [r.op.channel for r in h.pending(ev.Append)] == ["design"]  # type: ignore[attr-defined]


def test_a_slow_consumer_is_closed_but_a_paced_gap_fill_is_not() -> None:
    h = Harness(max_buffer_bytes=1000)
    h.welcome("c1", "alice", {"general": 0})
    over = ev.BufferLevel("c1", 5000, T0, live_write=True)
    closes = [a for a in h.handle(over) if isinstance(a, ev.Close)]
    assert closes == [ev.Close("c1", p.CloseCode.SLOW_CONSUMER, "slow consumer")]
    h2 = Harness(max_buffer_bytes=1000)
    h2.handle(ev.Opened("c2", T0))
    token = make_token("bob", SECRET, now=T0)
    hello = {"type": "hello", "token": token, "last_seen": {"general": 0}}
    h2.handle(ev.Received("c2", json.dumps(hello), T0))
    h2.reply(ev.ReadChannels, ["general"])
    h2.reply(ev.ReadStates, {"general": (300, "e1")})
    h2.reply(ev.ReadStates, {"general": (300, "e1")})
    page = [(s, message("general", s)) for s in range(1, 201)]
    actions = h2.reply(ev.ReadHistory, ("e1", page))
    assert ev.WatchWritable("c2") in actions
    assert not any(isinstance(a, ev.Close) for a in h2.handle(ev.BufferLevel("c2", 5000, T0)))
    assert not h2.pending(ev.ReadHistory)  # the next page waits for the reader
    h2.handle(ev.Writable("c2", T0))
    assert [r.op for r in h2.pending(ev.ReadHistory)] == [ev.ReadHistory("general", 200, 200)]


def test_silence_closes_4002_after_three_heartbeat_periods() -> None:
    h = Harness(heartbeat_s=1.0)
    h.welcome("c1", "alice", {"general": 0})
    assert not any(isinstance(a, ev.Close) for a in h.handle(ev.Tick(T0 + 2.9)))
    closes = [a for a in h.handle(ev.Tick(T0 + 3.1)) if isinstance(a, ev.Close)]
    assert closes == [ev.Close("c1", p.CloseCode.SILENT, "no heartbeat")]


def test_drain_tells_everyone_to_reconnect_then_closes_1012() -> None:
    h = Harness()
    h.welcome("c1", "alice", {"general": 0})
    h.welcome("c2", "bob", {"general": 0})
    actions = h.handle(ev.Drain(T0))
    assert [f["type"] for f in frames(actions)] == ["reconnect", "reconnect"]
    assert {a.conn for a in actions if isinstance(a, ev.Close)} == {"c1", "c2"}
    assert {a.code for a in actions if isinstance(a, ev.Close)} == {p.CloseCode.SERVICE_RESTART}


def test_membership_changes_reach_the_users_other_connections_even_while_welcoming() -> None:
    h = Harness()
    h.welcome("c1", "alice", {"general": 0})
    h.handle(ev.Opened("c2", T0))
    token = make_token("alice", SECRET, now=T0)
    h.handle(ev.Received("c2", json.dumps({"type": "hello", "token": token}), T0))
    change = MembershipChange("joined", "alice", "design", "gw-9:1", 3, "e1")
    actions = h.handle(ev.BusMessage(CONTROL_TOPIC, change.encode(), T0))
    assert frames(actions, "c1") == [
        {"type": "joined", "channel": "design", "head": 3, "epoch": "e1"}
    ]
    assert frames(actions, "c2") == []  # held until c2's welcome
    h.reply(ev.ReadStates, {"design": (3, "e1")})  # c1's new channel starts its feed
    h.reply(ev.ReadChannels, ["general"])
    actions = h.reply(ev.ReadStates, {"general": (0, "e1")})
    assert [f["type"] for f in frames(actions, "c2")] == ["welcome", "joined"]


def test_typing_goes_to_the_other_members_and_may_be_dropped() -> None:
    h = Harness()
    h.welcome("c1", "alice", {"general": 0})
    h.welcome("c2", "bob", {"general": 0})
    typing = p.encode(p.TypingEvent("general", "alice"))
    actions = h.handle(ev.BusMessage(channel_topic("general"), typing, T0))
    assert actions == [ev.Broadcast(("c2",), typing, droppable_above=1024 * 1024 // 4)]


def test_a_fetch_answered_from_a_newer_history_is_never_delivered_as_the_old_one() -> None:
    """The store lost the channel and restarted its seqs under a new epoch before the fetch was
    answered: those messages are not the old epoch's seq 1 and 2, whatever their numbers say.
    Nothing is delivered and the heads are read at once (the reset follows from there)."""
    h = Harness()
    h.welcome("c1", "alice", {"general": 0})
    h.handle(ev.BusMessage(channel_topic("general"), message("general", 3), T0))
    actions = h.reply(ev.ReadRange, ("e2", [(1, message("general", 1, "new epoch"))]))
    assert frames(actions) == []
    heads = [a for a in actions if isinstance(a, ev.Request) and isinstance(a.op, ev.ReadStates)]
    assert [r.op for r in heads] == [ev.ReadStates(("general",))]
    actions = h.reply(ev.ReadStates, {"general": (1, "e2")})
    assert [f["type"] for f in frames(actions, "c1")] == ["reset"]
