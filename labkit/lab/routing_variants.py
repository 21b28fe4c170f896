"""Routing on the bus, targeted or broadcast, with the cost of each counted per gateway.

Theory of operation
-------------------
labkit routes by channel: a gateway subscribes to a channel's topic only while it holds a local
member of that channel, so a message reaches only the gateways that have someone to give it to
(:mod:`labkit.core.routing`). The obvious alternative is one topic for everything: every gateway
subscribes to it, every message reaches every gateway, and each gateway throws away what it has
no member for. That is simpler (no subscribe and unsubscribe as people come and go) and costs
one bus delivery per gateway per message, however small the channel: a direct message between
two people on a 100-gateway fleet reaches 100 gateways to be used by at most 2.

:class:`RoutedBus` wraps a gateway's bus and counts, for channel messages, what the bus
delivered to this gateway (``delivered``) and how many of those the gateway had a local member
for (``useful``). With ``broadcast=True`` it also changes the routing:

* ``publish`` of a channel message goes to the single topic :data:`ALL_TOPIC`, as
  ``"<channel topic>\\n<payload>"`` (JSON never holds a raw newline);
* the gateway is subscribed to :data:`ALL_TOPIC` from the start, and ``subscribe`` /
  ``unsubscribe`` of a channel topic only record what the gateway wants;
* every message received is unwrapped and handed to the gateway, which drops what it has no
  feed for, as a broadcast design must: the cost is real, not simulated.

Membership notices and presence keep their own topics. Use it on a cluster before it starts::

    cluster = Cluster(gateways=4)
    use_routing(cluster, "broadcast")        # or "targeted": the real routing, counted
    await cluster.start_all()
    ...
    bus_cost(cluster)      # {"posts": ..., "delivered": ..., "useful": ..., "wasted": ...}

It plugs in through ``Cluster.gateway_builder``; the gateway's own code is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis

from labkit.server.redis.bus import Bus, Handler, Resync, topic_channel

if TYPE_CHECKING:
    from labkit.server.cluster import Cluster
    from labkit.server.gateway import Gateway, GatewayConfig

ALL_TOPIC = "labkit:bus:all"
"""The one topic every gateway listens to under broadcast routing."""

MODES = ("targeted", "broadcast")


class RoutedBus(Bus):
    """A gateway's bus, counting channel messages delivered and useful; optionally broadcast."""

    def __init__(self, inner: Bus, *, broadcast: bool = False) -> None:
        self.inner = inner
        self.broadcast = broadcast
        self.delivered = 0
        """Channel messages the bus delivered to this gateway."""
        self.useful = 0
        """Of those, the ones for a channel with a local member (the gateway asked for it)."""
        self._wanted: set[str] = set()
        self._handler: Handler | None = None

    @property
    def published(self) -> int:  # type: ignore[override]
        return self.inner.published

    @property
    def received(self) -> int:  # type: ignore[override]
        return self.inner.received

    @property
    def wasted(self) -> int:
        return self.delivered - self.useful

    @property
    def topics(self) -> set[str]:
        """What the gateway asked for (plus the inner bus's own topics)."""
        return self._wanted | (self.inner.topics - {ALL_TOPIC})

    async def start(self, handler: Handler, on_resync: Resync | None = None) -> None:
        self._handler = handler
        await self.inner.start(self._on_message, on_resync)
        if self.broadcast:
            await self.inner.subscribe(ALL_TOPIC)

    def _on_message(self, topic: str, payload: str) -> None:
        if topic == ALL_TOPIC:
            topic, _, payload = payload.partition("\n")
        if topic_channel(topic) is not None:
            self.delivered += 1
            if topic in self._wanted:
                self.useful += 1
        if self._handler is not None:
            self._handler(topic, payload)

    async def subscribe(self, topic: str) -> None:
        if topic_channel(topic) is not None:
            self._wanted.add(topic)
            if self.broadcast:
                return  # everything arrives on ALL_TOPIC already
        await self.inner.subscribe(topic)

    async def unsubscribe(self, topic: str) -> None:
        if topic_channel(topic) is not None:
            self._wanted.discard(topic)
            if self.broadcast:
                return
        await self.inner.unsubscribe(topic)

    async def publish(self, topic: str, payload: str) -> None:
        if self.broadcast and topic_channel(topic) is not None:
            await self.inner.publish(ALL_TOPIC, f"{topic}\n{payload}")
        else:
            await self.inner.publish(topic, payload)

    async def close(self) -> None:
        await self.inner.close()


def routed_builder(mode: str) -> Callable[..., Gateway]:
    """A ``Cluster.gateway_builder`` whose gateways use a :class:`RoutedBus` in ``mode``."""
    if mode not in MODES:
        raise ValueError(f"unknown routing mode {mode!r}; use one of {', '.join(MODES)}")
    from labkit.server.cluster import build_gateway

    def build(
        config: GatewayConfig,
        make_client: Callable[[], aioredis.Redis],
        secret: str,
        *,
        clock: Callable[[], float],
        **kwargs: Any,
    ) -> Gateway:
        def routed(bus: Bus) -> Bus:
            return RoutedBus(bus, broadcast=mode == "broadcast")

        return build_gateway(config, make_client, secret, clock=clock, bus_wrapper=routed, **kwargs)

    return build


def use_routing(cluster: Cluster, mode: str) -> None:
    """Make every gateway ``cluster`` starts from now on route in ``mode`` (and count)."""
    cluster.gateway_builder = routed_builder(mode)


def bus_cost(cluster: Cluster) -> dict[str, float]:
    """Totals over the cluster's running gateways: posts accepted, channel messages the bus
    delivered to gateways, how many were useful and wasted, and deliveries per post."""
    posts = delivered = useful = 0
    for gateway in cluster.gateways:
        if gateway is None:
            continue
        posts += gateway.messages.posts
        bus = gateway.bus
        if isinstance(bus, RoutedBus):
            delivered += bus.delivered
            useful += bus.useful
    return {
        "posts": posts,
        "delivered": delivered,
        "useful": useful,
        "wasted": delivered - useful,
        "per_post": delivered / posts if posts else 0.0,
    }
