"""The gateway machine's store and presence requests, carried out over Redis.

Each :data:`~labkit.core.gateway.events.StoreOp` maps to the Redis-backed piece that owns the
data: the :class:`~labkit.server.redis.store.Store` (heads, epochs, history), the
:class:`~labkit.server.redis.directory.Directory` (memberships), the
:class:`~labkit.server.message_server.MessageServer` (the one atomic sequence-and-store step of a
post) and the :class:`~labkit.server.redis.presence_store.PresenceStore` (shared presence). The
reply has the shape the op's docstring names; an unreachable Redis raises
:class:`~labkit.server.redis.store.StoreUnavailable`, which the driver turns into an error reply.
"""

from __future__ import annotations

from dataclasses import dataclass

from labkit.core.gateway import events as ev
from labkit.server.message_server import MessageServer
from labkit.server.redis.directory import Directory
from labkit.server.redis.presence_store import PresenceStore
from labkit.server.redis.store import Store


@dataclass(slots=True)
class StoreRequests:
    """Answers the machine's requests; swap a piece (a learner's sequencer, a weaker message
    server) by passing another object with the same methods."""

    store: Store
    directory: Directory
    presence: PresenceStore
    messages: MessageServer

    async def run(self, op: ev.StoreOp) -> object:
        """Carry out ``op`` and return its reply value."""
        if isinstance(op, ev.ReadStates):
            states = await self.store.states(op.channels)
            return {ch: (st.head, st.epoch) for ch, st in states.items()}
        if isinstance(op, ev.ReadHistory):
            return await self.store.read_in_epoch(op.channel, op.after + 1, limit=op.limit)
        if isinstance(op, ev.ReadRange):
            return await self.store.read_in_epoch(op.channel, op.first, op.last)
        if isinstance(op, ev.Append):
            return await self.messages.append(op.user, op.channel, op.post_id, op.text, op.now)
        return await self._membership_or_presence(op)

    async def _membership_or_presence(self, op: ev.StoreOp) -> object:
        if isinstance(op, ev.ReadChannels):
            return sorted(await self.directory.channels_of(op.user))
        if isinstance(op, ev.IsMember):
            return await self.directory.is_member(op.user, op.channel)
        if isinstance(op, ev.JoinChannel):
            newly = await self.directory.join(op.user, op.channel)
            state = await self.store.state(op.channel)
            return (newly, state.head, state.epoch)
        if isinstance(op, ev.LeaveChannel):
            return await self.directory.leave(op.user, op.channel)
        if isinstance(op, ev.Heartbeat):
            transition = await self.presence.heartbeat(op.user, op.conn, op.now)
            return [] if transition is None else [transition]
        if isinstance(op, ev.Disconnect):
            # The real presence store never announces offline on a disconnect (expiry does, so
            # a reconnect inside the window is invisible); a weaker one may.
            return await self.presence.disconnect(op.user, op.conn, op.now)
        if isinstance(op, ev.ExpirePresence):
            return await self.presence.expire(op.now)
        if isinstance(op, ev.ReadPresence):
            return await self.presence.status(list(op.users), op.now)
        raise TypeError(f"unknown store operation {op!r}")
