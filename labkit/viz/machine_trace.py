"""The gateway machine at work: each event a gateway handled and the actions it decided.

:class:`MachineTrace` joins a running gateway's ``observers`` (no change to the gateway) and
keeps the last ``limit`` events with their actions, in words. ``table()`` draws them as a
table in a notebook cell; ``snapshot()`` is the same as plain data, for tests. Ticks with no
action are left out by default: they are most of the events and say nothing.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any, Protocol

from labkit.core.gateway import events as ev
from labkit.viz.svg import table


class Observed(Protocol):
    observers: list[Any]


def _payload(payload: str) -> str:
    try:
        frame = json.loads(payload)
    except ValueError:
        return payload[:40]
    kind = frame.get("type", "?")
    detail = " ".join(
        f"{key}={frame[key]}" for key in ("channel", "seq", "user", "status") if key in frame
    )
    return f"{kind} {detail}".strip()


def describe_event(event: ev.Event) -> str:
    """One line for an event."""
    if isinstance(event, ev.Received):
        data = event.data if isinstance(event.data, str) else event.data.decode("utf-8", "replace")
        return f"Received {event.conn}: {_payload(data)}"
    if isinstance(event, ev.BusMessage):
        return f"BusMessage {event.topic.removeprefix('labkit:bus:')}: {_payload(event.payload)}"
    if isinstance(event, ev.Reply):
        outcome = f"error {event.error}" if event.error else "ok"
        return f"Reply #{event.request.id} {type(event.request.op).__name__}: {outcome}"
    if isinstance(event, ev.Opened | ev.Closed | ev.Writable):
        return f"{type(event).__name__} {event.conn}"
    if isinstance(event, ev.BufferLevel):
        return f"BufferLevel {event.conn}: {event.queued} bytes"
    return type(event).__name__


def describe_action(action: ev.Action) -> str:
    """One line for an action."""
    if isinstance(action, ev.Send):
        return f"Send {action.conn}: {_payload(action.payload)}"
    if isinstance(action, ev.Broadcast):
        return f"Broadcast to {len(action.conns)}: {_payload(action.payload)}"
    if isinstance(action, ev.Request):
        fields = ", ".join(f"{k}={v}" for k, v in vars_of(action.op).items() if k != "now")
        return f"Request #{action.id} {type(action.op).__name__}({fields})"
    if isinstance(action, ev.Publish):
        return f"Publish {action.topic.removeprefix('labkit:bus:')}: {_payload(action.payload)}"
    if isinstance(action, ev.Subscribe | ev.Unsubscribe):
        return f"{type(action).__name__} {action.topic.removeprefix('labkit:bus:')}"
    if isinstance(action, ev.Close):
        return f"Close {action.conn}: {int(action.code)} {action.reason}"
    if isinstance(action, ev.WatchWritable):
        return f"WatchWritable {action.conn}"
    return type(action).__name__


def vars_of(obj: object) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in getattr(obj, "__slots__", ())}


class MachineTrace:
    """The last ``limit`` events of one gateway's machine, with the actions each produced."""

    def __init__(self, limit: int = 40, *, quiet_ticks: bool = True) -> None:
        self.rows: deque[tuple[str, list[str]]] = deque(maxlen=limit)
        self.quiet_ticks = quiet_ticks
        self.events = 0

    @classmethod
    def attach(cls, gateway: Observed, limit: int = 40) -> MachineTrace:
        trace = cls(limit)
        gateway.observers.append(trace.observe)
        return trace

    def observe(self, event: ev.Event, actions: list[ev.Action]) -> None:
        self.events += 1
        if self.quiet_ticks and isinstance(event, ev.Tick) and not actions:
            return
        self.rows.append((describe_event(event), [describe_action(a) for a in actions]))

    def snapshot(self) -> list[dict[str, Any]]:
        return [{"event": event, "actions": list(actions)} for event, actions in self.rows]

    def table(self) -> Any:
        rows = [[event, "; ".join(actions) or "—"] for event, actions in self.rows]
        return table(["event in", "actions out, in order"], rows)
