"""``labkit.Cluster``: the real cluster of :mod:`labkit.server.cluster`, plus what the lab does
to it: seeded faults, weaker designs and learners' code.

::

    async with labkit.Cluster(gateways=3, seed=7, bus_faults=BusFaults(7, loss=0.1)) as cluster:
        await cluster.faults.crash(1)
        cluster.faults.set_bus("gw-2", dup=0.2)

Everything here reaches the server's cluster through its constructor arguments, never by
changing its code:

* ``bus_faults`` (:class:`~labkit.lab.faults.BusFaults`, all zero unless turned) is one of the
  ``gateway_hooks``: every gateway the cluster starts is wired to it, and unwired when it stops.
  ``cluster.faults`` (:class:`~labkit.lab.faults.Faults`) turns its knobs and crashes, drains
  and restarts gateways, takes Redis away, and so on.
* ``variant=NAME`` swaps the ``gateway_builder`` or adds a ``client_setup`` of a weaker design
  (:mod:`labkit.lab.weak`), only when named: there is no default.
* ``impl="exercises"`` (or ``"solutions"``, or a folder) builds the gateways from a learner's
  routing table, channel feed, typing throttle and sequencing script, and gives each client the
  learner's client state (:mod:`labkit.lab.impl`); ``cluster.notices`` says which pieces fell
  back to the reference.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from labkit.lab.faults import BusFaults, Faults
from labkit.lab.impl import REFERENCE, Impl, load, load_append
from labkit.server import cluster as server
from labkit.server.client import Client
from labkit.server.gateway import Gateway, GatewayConfig
from labkit.server.redis.store import AppendImpl

log = logging.getLogger(__name__)

LIVE_PRESENCE_NOTICE = (
    "the presence tracker exercise runs in the simulator (labkit.lab.sim); live presence is "
    "shared through Redis by labkit.server.redis.presence_store"
)


class Cluster(server.Cluster):
    """A :class:`labkit.server.cluster.Cluster` with ``faults``, ``bus_faults``, ``variant`` and
    ``impl``; every other argument (``redis_url``, ``config``, ``gateway_hooks``, ...) is the
    server cluster's.
    """

    def __init__(
        self,
        gateways: int = 3,
        *,
        seed: int = 0,
        bus_faults: BusFaults | None = None,
        variant: str | None = None,
        impl: str | Impl = REFERENCE,
        **options: Any,
    ) -> None:
        self.impl: Impl = impl if isinstance(impl, Impl) else load(impl)
        """Whose routing table, feed, typing throttle and client state run: ``impl.describe()``."""
        self.notices: list[str] = list(self.impl.notices)
        self.append_impl: AppendImpl | None = None
        """The learner's ``append_atomic`` once :meth:`start_all` has tried it; None: the
        reference script."""
        self._append_loaded = False
        self.bus_faults = bus_faults if bus_faults is not None else BusFaults(seed)
        """Seeded bus knobs, installed on every gateway; all zero unless turned."""
        learner = self.impl.name != REFERENCE
        client_setup = list(options.pop("client_setup", ()))
        if learner:
            self.notices.append(LIVE_PRESENCE_NOTICE)
            client_setup.append(self._use_learner_client_state)
        options.setdefault(
            "gateway_builder", self._build_learner_gateway if learner else server.build_gateway
        )
        super().__init__(
            gateways,
            seed=seed,
            gateway_hooks=[self.bus_faults, *options.pop("gateway_hooks", ())],
            client_setup=client_setup,
            **options,
        )
        self.faults = Faults(self)
        self.variant: str | None = None
        """The weaker design this cluster runs (:mod:`labkit.lab.weak`), or None: the real one."""
        if variant is not None:
            from labkit.lab.weak import enable  # explicit opt-in only: never on by default

            enable(self, variant)

    def _use_learner_client_state(self, client: Client) -> None:
        client.state = self.impl.client_state()

    def _build_learner_gateway(
        self,
        config: GatewayConfig,
        make_client: Callable[[], aioredis.Redis],
        secret: str,
        *,
        clock: Callable[[], float] = time.time,
        **options: Any,
    ) -> Gateway:
        """:func:`labkit.server.cluster.build_gateway` with the learner's pieces and script;
        ``options`` (the cluster's ``routes=``) pass through."""
        return server.build_gateway(
            config,
            make_client,
            secret,
            clock=clock,
            impl=self.impl,
            append_impl=self.append_impl,
            **options,
        )

    async def start_all(self) -> None:
        """Try the learner's sequencing script (once), say what fell back, then start."""
        if self.impl.name != REFERENCE and not self._append_loaded:
            self.append_impl, notice = await load_append(self.impl.name)
            self._append_loaded = True
            if notice is not None:
                self.notices.append(notice)
            for line in self.notices:
                log.warning("%s", line)
        await super().start_all()
