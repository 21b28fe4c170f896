"""Weaker designs, live: each undoes one decision of the real design, to watch it fail.

These are the live counterparts of the pure variants in :mod:`labkit.lab.variants` (same names,
built from the same pieces where a live gateway can use them), so a notebook can show the same
failure in the seeded simulator and then on real WebSockets, next to the real design.

The real code path never reaches this module. A variant is switched on only by naming it, for
one cluster: ``Cluster(variant="no_bus_repair")`` or ``labkit.lab.weak.enable(cluster, name)``.
There is no default, no environment variable and no global switch. A variant swaps one piece:
the gateways the cluster builds from then on (gateways already running keep the real design
until restarted) or the clients it connects.

The variants, and what each one shows live (PROTOCOL.md guarantees in brackets):

``read_then_write_sequencer``
    The message server takes a seq with GET head, then SET head + 1, two commands with an
    await between (:data:`SEQUENCER_WINDOW_S`), instead of the atomic Lua script. Two posts
    handled at once read the same head and get the same seq: the store holds two messages
    under one seq (checker: ``store_duplicate``); gateways keep whichever reaches them first
    and drop the other as a duplicate, so members can disagree on what seq N says
    (``order_mismatch``). [1, 5]

``resume_from_head``
    The client reconnects without ``last_seen``, so the gateway resumes it at the head: what
    was posted while it was away silently vanishes. (Client side, as in most real bugs of this
    kind; :func:`labkit.lab.variants.plan_resume_from_head` is the gateway-side twin.) The checker
    cannot see it, since a client that asks for nothing is owed nothing: the client's own
    records show it, as ``client.gaps`` and seqs missing from ``client.seqs(channel)``. [3]

``no_bus_repair``
    The gateway trusts the bus (:class:`labkit.lab.variants.NoRepairCore`, the same core the
    simulator runs): no fetch on a seq jump, no lost-tail repair by the head check, and no
    per-connection gap-fill on a jump either. With bus loss
    (``cluster.faults.set_bus(loss=...)``) members miss exactly the seqs the seed dropped at
    their gateway (checker: ``gap``, ``not_delivered``). [3]

``history_before_subscribe``
    The gateway reads a new connection's heads and history first and attaches it to the live
    stream afterwards (:class:`HistoryBeforeSubscribeGateway` with
    :class:`labkit.lab.variants.HistoryBeforeSubscribeCore`). When the channel's feed moved on in
    between (another member on the gateway keeps it running), the connection joins the stream
    where it is by then: what was posted during its welcome never arrives (``gap``). The
    window is widened to :data:`RACE_WINDOW_S`; in production it is one round trip, so it bites
    rarely, which is worse. [3]

``flapping_presence``
    Presence goes offline the moment a user's last open connection closes
    (:class:`FlappingPresenceStore`, the rule of
    :class:`labkit.lab.variants.FlappingPresenceTracker` in Redis), instead of letting the
    heartbeat window run out. A reconnect (a phone switching networks, a gateway draining)
    shows as offline then online to everyone watching: the watcher's records hold ``presence``
    frames with status ``offline`` that the real design never sends.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis

from labkit.core.client_state import ClientState
from labkit.core.gateway import events as ev
from labkit.core.presence import OFFLINE, Transition
from labkit.core.protocol import encode_message_parts
from labkit.lab.variants import VARIANTS as PURE_VARIANTS
from labkit.lab.variants import HistoryBeforeSubscribeCore, NoRepairCore
from labkit.server.gateway import Gateway, GatewayConfig
from labkit.server.message_server import MessageServer
from labkit.server.redis.bus import Bus, RedisBus
from labkit.server.redis.directory import Directory
from labkit.server.redis.presence_store import (
    ONLINE_KEY,
    PresenceStore,
    conns_key,
)
from labkit.server.redis.store import (
    Appended,
    IdConflict,
    Store,
    epoch_key,
    head_key,
    idem_key,
    log_key,
    reaching,
    ts_key,
)
from labkit.server.requests import StoreRequests

if TYPE_CHECKING:
    from labkit.lab.cluster import Cluster
    from labkit.server.client import Client

log = logging.getLogger(__name__)

SEQUENCER_WINDOW_S = 0.005
"""The await between GET and SET in the read-then-write sequencer (a round trip, widened)."""
RACE_WINDOW_S = 0.3
"""How long ``history_before_subscribe`` takes between reading the heads and attaching."""


# --------------------------------------------------------------------------- read-then-write


class ReadThenWriteStore(Store):
    """A store whose ``append`` takes the seq with GET head, then SET head + 1: not atomic."""

    window_s = SEQUENCER_WINDOW_S

    async def append(
        self, channel: str, user: str, post_id: str, text: str, *, now: float
    ) -> Appended:
        prefix, middle, suffix = encode_message_parts(channel, user, text)
        fingerprint = f"{channel}\t{hashlib.sha256(text.encode('utf-8')).hexdigest()}"
        redis = self.redis
        with reaching(redis, f"store a post in {channel!r}"):
            seen = await redis.get(idem_key(user, post_id))
            if seen:
                ch, digest, seq_text, ts_text = str(seen).split("\t")
                if f"{ch}\t{digest}" != fingerprint:
                    raise IdConflict(f"post id {post_id!r} of {user!r} was used for another post")
                raws = await redis.zrangebyscore(log_key(channel), seq_text, seq_text)
                raw = str(raws[0]) if raws else f"{prefix}{seq_text}{middle}{ts_text}{suffix}"
                return Appended(int(seq_text), float(ts_text), raw, duplicate=True)
            await redis.set(epoch_key(channel), self.new_epoch(), nx=True)
            head = int(await redis.get(head_key(channel)) or 0)  # 1. read the head ...
            await asyncio.sleep(self.window_s)  # ... another server reads the same head here ...
            seq = head + 1
            await redis.set(head_key(channel), seq)  # 2. ... and both write head + 1.
            ts_text = repr(float(now))
            last = await redis.get(ts_key(channel))
            if last is not None and float(last) > now:
                ts_text = str(last)
            await redis.set(ts_key(channel), ts_text)
            raw = f"{prefix}{seq}{middle}{ts_text}{suffix}"
            await redis.zadd(log_key(channel), {raw: seq})
            await redis.set(
                idem_key(user, post_id), f"{fingerprint}\t{seq}\t{ts_text}", ex=self.idem_ttl_s
            )
        return Appended(seq, float(ts_text), raw, duplicate=False)


class ReadThenWriteMessageServer(MessageServer):
    """A message server sequencing with :class:`ReadThenWriteStore` (everything else real)."""

    def __init__(
        self,
        store: Store,
        directory: Directory,
        bus: Bus,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(ReadThenWriteStore(store.redis), directory, bus, clock=clock)


def _read_then_write_gateway(
    config: GatewayConfig,
    make_client: Callable[[], aioredis.Redis],
    secret: str,
    *,
    clock: Callable[[], float] = time.time,
) -> Gateway:
    return _wired(
        config,
        make_client,
        secret,
        clock,
        messages=lambda store, directory, bus: ReadThenWriteMessageServer(
            store, directory, bus, clock=clock
        ),
    )


# --------------------------------------------------------------------------- trusting the bus


def _wired(
    config: GatewayConfig,
    make_client: Callable[[], aioredis.Redis],
    secret: str,
    clock: Callable[[], float],
    *,
    messages: Callable[[Store, Directory, Bus], MessageServer] | None = None,
    **pieces: Any,
) -> Gateway:
    """Like :func:`labkit.server.cluster.build_gateway`, with one piece swapped through the
    gateway's constructor."""
    client = make_client()
    store, directory, bus = Store(client), Directory(client), RedisBus(make_client)
    presence = pieces.pop("presence", None) or PresenceStore(client, heartbeat_s=config.heartbeat_s)
    return Gateway(
        config,
        store=store,
        directory=directory,
        bus=bus,
        secret=secret,
        presence=presence,
        clock=clock,
        messages=messages(store, directory, bus) if messages is not None else None,
        **pieces,
    )


def _no_repair_gateway(
    config: GatewayConfig,
    make_client: Callable[[], aioredis.Redis],
    secret: str,
    *,
    clock: Callable[[], float] = time.time,
) -> Gateway:
    return _wired(config, make_client, secret, clock, core=NoRepairCore())


# --------------------------------------------------------------------------- history first


class RaceWindow:
    """Store requests with the heads read :data:`RACE_WINDOW_S` before they are used.

    With ``subscribe_first=False`` the gateway machine reads a new connection's heads, pages
    the history up to them, and attaches it to the live stream afterwards
    (:class:`labkit.lab.variants.HistoryBeforeSubscribeCore`). The window between the read and
    the attach is a round trip in production; this wrapper widens it so a demo hits it every
    time: a connection whose channel's feed moved on meanwhile (another member on the gateway
    keeps it running) jumps to the feed's head, and the seqs in between are never sent.
    """

    def __init__(self, inner: StoreRequests, window_s: float = RACE_WINDOW_S) -> None:
        self.inner = inner
        self.window_s = window_s

    async def run(self, op: ev.StoreOp) -> object:
        result = await self.inner.run(op)
        if isinstance(op, ev.ReadStates):
            await asyncio.sleep(self.window_s)  # the world moves on after the heads were read
        return result


def _history_first_gateway(
    config: GatewayConfig,
    make_client: Callable[[], aioredis.Redis],
    secret: str,
    *,
    clock: Callable[[], float] = time.time,
) -> Gateway:
    return _wired(
        dataclasses.replace(config, subscribe_first=False),
        make_client,
        secret,
        clock,
        core=HistoryBeforeSubscribeCore(),
        requests=RaceWindow,
    )


# --------------------------------------------------------------------------- clients


class HeadResumeState(ClientState):
    """Client state that forgets to send ``last_seen``: every reconnect resumes at the head."""

    def hello_fields(self) -> tuple[dict[str, int], dict[str, str]]:
        return {}, dict(self.epochs)


def _resume_from_head(client: Client) -> None:
    state = HeadResumeState()
    state.last_seen = dict(client.state.last_seen)
    state.epochs = dict(client.state.epochs)
    client.state = state


# --------------------------------------------------------------------------- presence


class FlappingPresenceStore(PresenceStore):
    """Presence in Redis that announces ``offline`` the moment a user's last open connection
    closes: :class:`labkit.lab.variants.FlappingPresenceTracker`'s rule, shared by the gateways.

    The real :meth:`PresenceStore.disconnect` does nothing and lets the heartbeat window run
    out, so a reconnect inside it is invisible. Here the closed connection is struck off at
    once, and with none left the user is announced offline; the reconnect's first heartbeat
    then announces online again: one flap per reconnect, for everyone watching.
    """

    async def disconnect(self, user: str, conn_id: str, now: float) -> list[Transition]:
        with reaching(self.redis, "record a disconnect"):
            await self.redis.zrem(conns_key(user), conn_id)
            if await self.redis.zcard(conns_key(user)):
                return []  # another connection of the user is still open
            removed = await self.redis.zrem(ONLINE_KEY, user)
        return [Transition(user, OFFLINE, now, now)] if removed else []


def _flapping_presence_gateway(
    config: GatewayConfig,
    make_client: Callable[[], aioredis.Redis],
    secret: str,
    *,
    clock: Callable[[], float] = time.time,
) -> Gateway:
    presence = FlappingPresenceStore(make_client(), heartbeat_s=config.heartbeat_s)
    return _wired(config, make_client, secret, clock, presence=presence)


# --------------------------------------------------------------------------- the registry


@dataclass(frozen=True, slots=True)
class WeakVariant:
    """One weaker design, live, and what it breaks."""

    name: str
    summary: str
    """What the design gets wrong (the sentence of :data:`labkit.lab.variants.VARIANTS`)."""
    shows: str
    """The failure it produces live, as the checker or the records report it."""
    gateway_builder: Callable[..., Gateway] | None = None
    client_setup: Callable[[Client], None] | None = None


_LIVE: dict[str, tuple[str, dict[str, Any]]] = {
    "read_then_write_sequencer": (
        "two posts get the same seq: store_duplicate (and order_mismatch when two gateways "
        "keep different ones)",
        {"gateway_builder": _read_then_write_gateway},
    ),
    "resume_from_head": (
        "messages posted while the client was away vanish: client.gaps and missing seqs (the "
        "checker, told nothing was asked for, sees nothing wrong)",
        {"client_setup": _resume_from_head},
    ),
    "no_bus_repair": (
        "with bus loss, members miss messages for good: gap, not_delivered",
        {"gateway_builder": _no_repair_gateway},
    ),
    "history_before_subscribe": (
        "a connection that arrives while its channel is busy misses what was posted during "
        "its welcome: gap, not_delivered",
        {"gateway_builder": _history_first_gateway},
    ),
    "flapping_presence": (
        "watchers see offline then online on every reconnect (presence frames)",
        {"gateway_builder": _flapping_presence_gateway},
    ),
}

VARIANTS: dict[str, WeakVariant] = {
    name: WeakVariant(name, PURE_VARIANTS[name], shows, **parts)
    for name, (shows, parts) in _LIVE.items()
}
"""The live variants, under the same names as the pure ones of :mod:`labkit.lab.variants`."""


def names() -> list[str]:
    return list(VARIANTS)


def enable(cluster: Cluster, name: str) -> WeakVariant:
    """Switch ``cluster`` to the weaker design ``name`` (one of :data:`VARIANTS`).

    Gateways the cluster starts from now on are built the weak way, and clients it connects
    from now on (and those already connected, for client variants) behave the weak way.
    Gateways already running keep the real design until restarted. A cluster runs at most one
    variant.
    """
    variant = VARIANTS.get(name)
    if variant is None:
        raise ValueError(f"unknown weak variant {name!r}; choose one of {', '.join(VARIANTS)}")
    if cluster.variant is not None and cluster.variant != name:
        raise RuntimeError(f"this cluster already runs the variant {cluster.variant!r}")
    cluster.variant = name
    if variant.gateway_builder is not None:
        cluster.gateway_builder = variant.gateway_builder
        if any(g is not None for g in cluster.gateways):
            log.warning("variant %s: running gateways keep the real design until restarted", name)
    if variant.client_setup is not None:
        cluster.client_setup.append(variant.client_setup)
        for client in cluster.clients:
            variant.client_setup(client)
    log.warning("weak variant %s enabled: %s", name, variant.summary)
    return variant
