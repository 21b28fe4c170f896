"""The simulated store and shared presence answering the gateway machine's requests.

Each :data:`~labkit.core.gateway.events.StoreOp` is one Redis round trip's worth of work and runs
at one instant of virtual time (:func:`run_op`), the guarantee the Lua scripts get from Redis.
The one exception is the ``read_then_write_sequencer`` weaker design, whose ``Append`` reads the
head and writes ``head + 1`` one round trip apart: that split is its bug.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from labkit.core.gateway import events as ev
from labkit.core.protocol import Message, encode
from labkit.lab.sim.store import NEW

if TYPE_CHECKING:
    from labkit.lab.sim.run import World


def _appended(verdict: str, frame: dict[str, Any] | None) -> ev.Appended:
    if frame is None:
        return ev.Appended(verdict)
    message = Message(frame["channel"], frame["seq"], frame["user"], frame["text"], frame["ts"])
    return ev.Appended(verdict, message.seq, message.ts, encode(message))


def run_op(world: World, who: str, op: ev.StoreOp, reply: Callable[[object], None]) -> None:
    """Carry out ``op`` now and hand the result to ``reply`` (later, for the split append)."""
    store = world.store
    if isinstance(op, ev.ReadStates):
        reply(store.states(op.channels))
    elif isinstance(op, ev.ReadHistory):
        reply((store.epoch(op.channel), store.history(op.channel, op.after, op.limit)))
    elif isinstance(op, ev.ReadRange):
        world.say(who, f"fetches #{op.channel} {op.first}..{op.last} from the store")
        reply((store.epoch(op.channel), store.history_range(op.channel, op.first, op.last)))
    elif isinstance(op, ev.Append):
        _append(world, who, op, reply)
    elif isinstance(op, ev.Heartbeat):
        reply(_presence(world, world.presence.heartbeat(op.user, op.conn, op.now)))
    elif isinstance(op, ev.Disconnect):
        reply(_presence(world, world.presence.disconnect(op.user, op.conn, op.now)))
    elif isinstance(op, ev.ExpirePresence):
        reply(_presence(world, world.presence.expire(op.now)))
    elif isinstance(op, ev.ReadPresence):
        reply({user: world.presence.status(user, op.now) for user in op.users})
    else:
        reply(_membership(world, who, op))


def _membership(world: World, who: str, op: ev.StoreOp) -> object:
    store = world.store
    if isinstance(op, ev.ReadChannels):
        return store.channels_of(op.user)
    if isinstance(op, ev.IsMember):
        return store.is_member(op.user, op.channel)
    if isinstance(op, ev.JoinChannel):
        newly = store.join(op.user, op.channel)
        head, epoch = store.states([op.channel])[op.channel]
        world.say(who, f"{op.user} joined #{op.channel} at head {head}")
        return (newly, head, epoch)
    if isinstance(op, ev.LeaveChannel):
        world.say(who, f"{op.user} left #{op.channel}")
        return store.leave(op.user, op.channel)
    raise TypeError(f"unknown store operation {op!r}")


def _presence(world: World, transitions: list[Any]) -> list[Any]:
    world.on_presence(transitions)
    return transitions


def _append(world: World, who: str, op: ev.Append, reply: Callable[[object], None]) -> None:
    store = world.store
    if not store.read_then_write:
        verdict, frame = store.append(op.channel, op.user, op.post_id, op.text, op.now)
        if verdict == NEW and frame is not None:
            world.say(
                who, f"stored {op.user}'s post {op.post_id} as #{op.channel} seq {frame['seq']}"
            )
        reply(_appended(verdict, frame))
        return
    verdict, stored = store.check_post(op.channel, op.user, op.post_id, op.text)
    if verdict != NEW:
        reply(_appended(verdict, stored))
        return
    head = store.read_head(op.channel)
    gap = world.rw_gap.sample(world.rng_net) + 2 * world.store_latency.sample(world.rng_net)

    def write() -> None:
        got = store.write_at(op.channel, head + 1, op.user, op.post_id, op.text, world.sched.now)
        reply(_appended(*got))

    world.sched.after(gap, write)
