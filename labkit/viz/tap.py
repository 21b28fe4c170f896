"""A tap on a running cluster's gateways: what each one got from the bus, and what it repaired.

The clients' :class:`~labkit.core.records.Recording` says who received which message; it cannot say
how the message reached the gateway. A :class:`GatewayTap` adds that, without changing the
gateway's code: it joins each running ``Gateway``'s ``observers``, which see every event the
gateway's machine handles and the actions it decided:

* a ``BusMessage`` event (after any fault injection through ``bus_filter`` decided it arrived)
  is a ``bus`` event, or ``wasted`` when the gateway has no local member of the channel (the
  cost of routing a message to a gateway that did not need it);
* a ``Broadcast`` of a message whose seq the gateway never received from the bus was fetched
  from the store, so the tap records a ``repair`` event (the bus lost it, or it was late).

A gateway started (or restarted) after the tap is installed is picked up by the next
:meth:`GatewayTap.install`, which every widget update calls.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from labkit.core.gateway.bus_payloads import topic_channel
from labkit.core.gateway.events import Action, Broadcast, BusMessage, Event

if TYPE_CHECKING:
    from labkit.server.cluster import Cluster
    from labkit.server.gateway import Gateway

How = Literal["bus", "wasted", "repair"]


@dataclass(frozen=True, slots=True)
class BusEvent:
    """One channel message reaching one gateway."""

    t: float
    gateway: str
    channel: str
    seq: int
    how: How
    """``bus``: arrived on the bus for a local member; ``wasted``: arrived on the bus, no local
    member of the channel; ``repair``: delivered after a fetch from the store."""


_taps: weakref.WeakKeyDictionary[Any, GatewayTap] = weakref.WeakKeyDictionary()


class GatewayTap:
    """Bus arrivals and store repairs of every gateway of one cluster (one tap per cluster)."""

    @classmethod
    def of(cls, cluster: Cluster) -> GatewayTap:
        """The cluster's tap, created and installed on first use."""
        tap = _taps.get(cluster)
        if tap is None:
            tap = _taps[cluster] = cls(cluster)
        tap.install()
        return tap

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = weakref.ref(cluster)
        self.clock: Callable[[], float] = cluster.clock
        self.events: list[BusEvent] = []
        self._tapped: weakref.WeakSet[Gateway] = weakref.WeakSet()
        self._arrived: dict[tuple[str, str, str | None], set[int]] = {}

    def install(self) -> int:
        """Tap every running gateway not tapped yet; returns how many were newly tapped."""
        cluster = self._cluster()
        if cluster is None:
            return 0
        fresh = [g for g in cluster.gateways if g is not None and g not in self._tapped]
        for gateway in fresh:
            self._wrap(gateway)
            self._tapped.add(gateway)
        return len(fresh)

    def _wrap(self, gw: Gateway) -> None:
        def arrived(channel: str) -> set[int]:
            return self._arrived.setdefault((gw.name, channel, gw.epochs.get(channel)), set())

        def observe(event: Event, actions: list[Action]) -> None:
            if isinstance(event, BusMessage):
                channel = topic_channel(event.topic)
                seq = _message_seq(event.payload) if channel is not None else None
                if channel is not None and seq is not None:
                    how: How = "bus" if channel in gw.core.feeds else "wasted"
                    arrived(channel).add(seq)
                    self.events.append(BusEvent(self.clock(), gw.name, channel, seq, how))
            for action in actions:
                if not isinstance(action, Broadcast):
                    continue
                frame = _message(action.payload)
                if frame is None:
                    continue
                channel, seq = frame
                seen = arrived(channel)
                if seq not in seen:
                    seen.add(seq)
                    self.events.append(BusEvent(self.clock(), gw.name, channel, seq, "repair"))

        gw.observers.append(observe)

    def counts(self, channel: str | None = None) -> dict[str, dict[str, int]]:
        """``{gateway: {"bus": n, "wasted": n, "repair": n}}``, for one channel or all."""
        out: dict[str, dict[str, int]] = {}
        for e in self.events:
            if channel is None or e.channel == channel:
                row = out.setdefault(e.gateway, {"bus": 0, "wasted": 0, "repair": 0})
                row[e.how] += 1
        return out


def _message(payload: str) -> tuple[str, int] | None:
    """``(channel, seq)`` of an encoded ``message`` frame; None for any other payload."""
    try:
        frame = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(frame, dict) or frame.get("type") != "message":
        return None
    channel, seq = frame.get("channel"), frame.get("seq")
    return (channel, seq) if isinstance(channel, str) and isinstance(seq, int) else None


def _message_seq(payload: str) -> int | None:
    try:
        frame = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(frame, dict) or frame.get("type") != "message":
        return None
    seq = frame.get("seq")
    return seq if isinstance(seq, int) else None
