"""Event logs: a gateway machine's events and actions as JSON, to record and replay.

Because the machine does no I/O and reads no clock, the same events always give the same
actions. A log recorded from a live gateway (through its observer) can therefore be replayed
into a fresh machine, with no sockets and no Redis, and must produce the very actions recorded:
the test of that is ``tests/test_gateway_machine.py``, and a notebook draws a log as a table.

Each line is ``{"event": {...}, "actions": [...]}``; every object carries its class name under
``"kind"``. Store replies keep their shape (tuples become lists, which the machine reads alike);
:class:`~labkit.core.gateway.events.Appended` and presence transitions are rebuilt as objects.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from labkit.core.gateway import events as ev
from labkit.core.presence import Transition
from labkit.core.protocol import CloseCode

_EVENTS: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        ev.Opened,
        ev.Received,
        ev.Closed,
        ev.BusMessage,
        ev.Reply,
        ev.Tick,
        ev.BufferLevel,
        ev.Writable,
        ev.Resync,
        ev.Drain,
    )
}
_OPS: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        ev.ReadChannels,
        ev.ReadStates,
        ev.ReadHistory,
        ev.ReadRange,
        ev.Append,
        ev.JoinChannel,
        ev.LeaveChannel,
        ev.IsMember,
        ev.Heartbeat,
        ev.Disconnect,
        ev.ExpirePresence,
        ev.ReadPresence,
    )
}
_TRANSITIONS = (ev.Heartbeat, ev.Disconnect, ev.ExpirePresence)


def _plain(value: Any) -> Any:
    """A JSON-able copy: dataclasses become tagged dicts, tuples lists, bytes text."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"kind": type(value).__name__, **fields}
    if isinstance(value, CloseCode):
        return int(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def event_to_json(event: ev.Event) -> dict[str, Any]:
    plain: dict[str, Any] = _plain(event)
    return plain


def action_to_json(action: ev.Action) -> dict[str, Any]:
    plain: dict[str, Any] = _plain(action)
    return plain


def _op(data: dict[str, Any]) -> ev.StoreOp:
    cls = _OPS[data["kind"]]
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k != "kind"}
    op: ev.StoreOp = cls(**fields)
    return op


def _result(op: ev.StoreOp, result: Any) -> object:
    if isinstance(op, ev.Append) and isinstance(result, dict):
        return ev.Appended(**{k: v for k, v in result.items() if k != "kind"})
    if isinstance(op, _TRANSITIONS) and isinstance(result, list):
        return [Transition(**{k: v for k, v in t.items() if k != "kind"}) for t in result]
    return result


def event_from_json(data: dict[str, Any]) -> ev.Event:
    """The event :func:`event_to_json` wrote."""
    kind = data["kind"]
    fields = {k: v for k, v in data.items() if k != "kind"}
    if kind == "Reply":
        op = _op(fields["request"]["op"])
        request = ev.Request(fields["request"]["id"], op)
        return ev.Reply(request, _result(op, fields["result"]), fields["error"])
    event: ev.Event = _EVENTS[kind](**fields)
    return event


def dumps(event: ev.Event, actions: list[ev.Action]) -> str:
    """One log line."""
    return json.dumps(
        {"event": event_to_json(event), "actions": [action_to_json(a) for a in actions]},
        separators=(",", ":"),
        sort_keys=True,
    )


def loads(line: str) -> tuple[ev.Event, list[dict[str, Any]]]:
    """The event of one log line (rebuilt) and its recorded actions (as JSON)."""
    data = json.loads(line)
    return event_from_json(data["event"]), data["actions"]
