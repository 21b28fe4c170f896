"""The simulated store (Redis): sequence and store in one atomic step, as in the real system.

One :class:`SimStore` holds what ``labkit.server.redis.store`` and
``labkit.server.redis.directory`` keep in Redis: the
channels' heads (a :class:`~labkit.core.sequencer.MemorySequencer`), their logs of ``message``
frames, the epoch, the idempotency keys and the memberships. Each method is one Redis round
trip's worth of work and runs at one instant of virtual time, so nothing interleaves with it:
the same guarantee the Lua script gets from Redis. The simulated gateways reach it through
:meth:`labkit.lab.sim.gateway.SimGateway.store_call`, which adds the network latency both ways.

The ``read_then_write_sequencer`` variant splits :meth:`append` into :meth:`read_head` and
:meth:`write_at`, one round trip apart: that split is its bug.

A *data loss* (:meth:`lose`) is a Redis restart without persistence, as
``labkit.lab.faults`` injects it live: the channel's history, head and post ids are gone and the
channel starts a new epoch at head 0; memberships are kept (a deployment keeps its directory in a
durable database). What the channel held under the old epoch is kept aside in :attr:`lost`, for
the checker only: no gateway can read it any more.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import Any

from labkit.core.protocol import Message, encode, frame_to_dict
from labkit.core.sequencer import MemorySequencer
from labkit.lab.checker import LostEpoch
from labkit.lab.variants import ReadThenWriteSequencer

EPOCH = "e1"

NEW = "new"
DUP = "dup"
CONFLICT = "conflict"
NOT_MEMBER = "not_member"


class SimStore:
    """Heads, logs, idempotency keys and memberships, all in one place."""

    def __init__(
        self,
        users: Iterable[str],
        channels: Iterable[str],
        *,
        read_then_write: bool = False,
    ) -> None:
        self.read_then_write = read_then_write
        """The ``read_then_write_sequencer`` variant: heads read and written in two steps."""
        self._sequencers: dict[str, MemorySequencer] = {}
        """One head counter per channel, so that a data loss can start a channel's over."""
        self._splits: dict[str, ReadThenWriteSequencer] = {}
        self.epochs: dict[str, str] = {}
        """Channel → its current epoch (:data:`EPOCH` until a data loss)."""
        self._epochs_made = 1
        self.lost: list[LostEpoch] = []
        """Every epoch a data loss ended, with what the store held under it then."""
        self.logs: dict[str, list[dict[str, Any]]] = {}
        self._raws: dict[str, list[tuple[int, str]]] = {}
        """Each channel's ``(seq, encoded frame)`` pairs, as the Redis store returns them."""
        self._seqs: dict[str, list[int]] = {}
        self._last_ts: dict[str, float] = {}
        self._idem: dict[tuple[str, str], tuple[str, str, dict[str, Any]]] = {}
        self.members: dict[str, dict[str, None]] = {}
        self.user_channels: dict[str, dict[str, None]] = {}
        for channel in channels:
            self.logs[channel] = []
            self._seqs[channel] = []
            self._raws[channel] = []
        for user in users:
            for channel in self.logs:
                self.join(user, channel)

    # -- messages ---------------------------------------------------------------------------

    def _sequencer(self, channel: str) -> MemorySequencer:
        sequencer = self._sequencers.get(channel)
        if sequencer is None:
            sequencer = self._sequencers[channel] = MemorySequencer()
        return sequencer

    def _split(self, channel: str) -> ReadThenWriteSequencer:
        split = self._splits.get(channel)
        if split is None:
            split = self._splits[channel] = ReadThenWriteSequencer()
        return split

    def head(self, channel: str) -> int:
        if self.read_then_write:
            return self._split(channel).head(channel)
        return self._sequencer(channel).head(channel)

    def epoch(self, channel: str) -> str:
        return self.epochs.get(channel, EPOCH)

    def states(self, channels: Iterable[str]) -> dict[str, tuple[int, str]]:
        """``channel → (head, epoch)``, as ``Store.states`` returns them."""
        return {channel: (self.head(channel), self.epoch(channel)) for channel in channels}

    def check_post(
        self, channel: str, user: str, post_id: str, text: str
    ) -> tuple[str, dict[str, Any] | None]:
        """Membership and idempotency: ``(NEW, None)`` when the post may be sequenced."""
        if user not in self.members.get(channel, {}):
            return NOT_MEMBER, None
        seen = self._idem.get((user, post_id))
        if seen is not None:
            if seen[0] != channel or seen[1] != text:
                return CONFLICT, None
            return DUP, seen[2]
        return NEW, None

    def append(
        self, channel: str, user: str, post_id: str, text: str, now: float
    ) -> tuple[str, dict[str, Any] | None]:
        """The Lua script: check, take the next seq, store, remember the id. One atomic step."""
        verdict, frame = self.check_post(channel, user, post_id, text)
        if verdict != NEW:
            return verdict, frame
        seq = self._sequencer(channel).next(channel)
        return NEW, self._store(channel, seq, user, post_id, text, now)

    def read_head(self, channel: str) -> int:
        """Variant, step 1: GET the head (the caller writes head + 1 a round trip later)."""
        assert self.read_then_write
        return self._split(channel).read(channel)

    def write_at(
        self, channel: str, seq: int, user: str, post_id: str, text: str, now: float
    ) -> tuple[str, dict[str, Any] | None]:
        """Variant, step 2: SET the head to ``seq`` and store the message under it."""
        assert self.read_then_write
        verdict, frame = self.check_post(channel, user, post_id, text)
        if verdict != NEW:
            return verdict, frame
        self._split(channel).write(channel, seq)
        return NEW, self._store(channel, seq, user, post_id, text, now)

    def _store(
        self, channel: str, seq: int, user: str, post_id: str, text: str, now: float
    ) -> dict[str, Any]:
        ts = max(now, self._last_ts.get(channel, 0.0))
        self._last_ts[channel] = ts
        message = Message(channel, seq, user, text, ts)
        frame = frame_to_dict(message)
        seqs = self._seqs.setdefault(channel, [])
        log = self.logs.setdefault(channel, [])
        raws = self._raws.setdefault(channel, [])
        pair = (seq, encode(message))
        if not seqs or seq >= seqs[-1]:
            seqs.append(seq)
            log.append(frame)
            raws.append(pair)
        else:  # only the variant writes out of order: a sorted set keeps score order
            i = bisect.bisect_right(seqs, seq)
            seqs.insert(i, seq)
            log.insert(i, frame)
            raws.insert(i, pair)
        self._idem[(user, post_id)] = (channel, text, frame)
        return frame

    def history(self, channel: str, after: int, limit: int) -> list[tuple[int, str]]:
        """Stored ``(seq, frame)`` pairs with ``seq > after``, ascending, at most ``limit``."""
        seqs = self._seqs.get(channel, [])
        i = bisect.bisect_right(seqs, after)
        return self._raws[channel][i : i + limit] if seqs else []

    def history_range(self, channel: str, first: int, last: int) -> list[tuple[int, str]]:
        """Stored ``(seq, frame)`` pairs with ``first <= seq <= last``, ascending."""
        seqs = self._seqs.get(channel, [])
        if not seqs:
            return []
        i = bisect.bisect_left(seqs, first)
        j = bisect.bisect_right(seqs, last)
        return self._raws[channel][i:j]

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """Every channel's stored frames, as the checker reads them after a run."""
        return {channel: list(log) for channel, log in self.logs.items()}

    def epoch_names(self) -> dict[str, str]:
        """Every channel's current epoch: the one :meth:`snapshot` holds."""
        return {channel: self.epoch(channel) for channel in self.logs}

    # -- faults -----------------------------------------------------------------------------

    def lose(self, channels: Iterable[str], now: float) -> list[str]:
        """Data loss: each channel's history, head and post ids are gone and it starts a new
        epoch at head 0. Returns the new epochs, in the order of ``channels``."""
        made: list[str] = []
        for channel in channels:
            self.lost.append(
                LostEpoch(channel, self.epoch(channel), tuple(self.logs.get(channel, ())), now)
            )
            self._epochs_made += 1
            self.epochs[channel] = epoch = f"e{self._epochs_made}"
            made.append(epoch)
            self.logs[channel] = []
            self._seqs[channel] = []
            self._raws[channel] = []
            self._last_ts.pop(channel, None)
            self._sequencers.pop(channel, None)
            self._splits.pop(channel, None)
        gone = set(channels)
        self._idem = {key: seen for key, seen in self._idem.items() if seen[0] not in gone}
        return made

    # -- membership -------------------------------------------------------------------------

    def channels_of(self, user: str) -> list[str]:
        return sorted(self.user_channels.get(user, {}))

    def is_member(self, user: str, channel: str) -> bool:
        return user in self.members.get(channel, {})

    def join(self, user: str, channel: str) -> bool:
        """Add ``user`` to ``channel`` (creating it); True if they were not a member."""
        self.logs.setdefault(channel, [])
        self._seqs.setdefault(channel, [])
        self._raws.setdefault(channel, [])
        members = self.members.setdefault(channel, {})
        new = user not in members
        members[user] = None
        self.user_channels.setdefault(user, {})[channel] = None
        return new

    def leave(self, user: str, channel: str) -> bool:
        """Remove ``user`` from ``channel``; True if they were a member."""
        was = user in self.members.get(channel, {})
        self.members.get(channel, {}).pop(user, None)
        self.user_channels.get(user, {}).pop(channel, None)
        return was
