"""The sequencer: the in-memory teaching version, and the Lua script run directly.

The script is exercised here on a synchronous fakeredis client, without the store around it,
so each of its branches (new, dup, conflict, ts kept monotonic) is visible on its own;
``test_store.py`` covers it again through ``Store`` on both backends.
"""

from __future__ import annotations

import hashlib
import json
import random

import fakeredis
import pytest

from labkit.core.protocol import Message, encode, encode_message_parts
from labkit.core.sequencer import POST_SCRIPT, MemorySequencer


def test_memory_sequencer_is_gap_free_per_channel() -> None:
    rng = random.Random(1234)
    seq = MemorySequencer()
    channels = ["general", "random", "eng"]
    got: dict[str, list[int]] = {c: [] for c in channels}
    for _ in range(600):
        channel = rng.choice(channels)
        got[channel].append(seq.next(channel))
    for channel in channels:
        assert got[channel] == list(range(1, len(got[channel]) + 1))
        assert seq.head(channel) == len(got[channel])


def test_memory_sequencer_head_of_unknown_channel_is_zero() -> None:
    seq = MemorySequencer()
    assert seq.head("nowhere") == 0
    assert seq.next("a") == 1
    assert seq.head("nowhere") == 0


KEYS = [
    "labkit:ch:{general}:head",
    "labkit:ch:{general}:log",
    "labkit:ch:{general}:epoch",
    "labkit:ch:{general}:ts",
    "labkit:idem:{alice}:{p1}",
]


class Runner:
    """Calls the script as the store would, for user alice in #general."""

    def __init__(self) -> None:
        self.client = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
        self.script = self.client.register_script(POST_SCRIPT)

    def __call__(self, text: str, ts_text: str, *, idem: str = KEYS[4], epoch: str = "e1") -> list:
        prefix, middle, suffix = encode_message_parts("general", "alice", text)
        digest = hashlib.sha256(text.encode()).hexdigest()
        args = [prefix, middle, suffix, ts_text, epoch, 60, f"general\t{digest}"]
        return list(self.script(keys=[*KEYS[:4], idem], args=args))


@pytest.fixture
def run() -> Runner:
    return Runner()


def test_script_new_post_is_stored_with_next_seq(run: Runner) -> None:
    kind, seq, ts, raw = run("hi", "100.5")
    assert (kind, seq, ts) == ("new", 1, "100.5")
    assert raw == encode(Message("general", 1, "alice", "hi", 100.5))
    assert json.loads(raw)["seq"] == 1
    client = run.client
    assert client.get(KEYS[0]) == "1"
    assert client.zrangebyscore(KEYS[1], 1, 1) == [raw]
    assert client.get(KEYS[2]) == "e1"
    assert 0 < client.ttl(KEYS[4]) <= 60
    _, seq2, _, _ = run("again", "101.0", idem="labkit:idem:{alice}:{p2}")
    assert seq2 == 2


def test_script_retry_returns_stored_frame_and_stores_nothing(run: Runner) -> None:
    first = run("hi", "100.5")
    again = run("hi", "200.0", epoch="other")
    assert again == ["dup", *first[1:]]
    assert run.client.get(KEYS[0]) == "1"
    assert run.client.zcard(KEYS[1]) == 1
    assert run.client.get(KEYS[2]) == "e1", "SET NX keeps the first epoch"


def test_script_same_id_other_text_is_a_conflict(run: Runner) -> None:
    run("hi", "100.5")
    assert run("bye", "100.6") == ["conflict"]
    assert run.client.get(KEYS[0]) == "1"


def test_script_keeps_ts_text_of_the_larger_time(run: Runner) -> None:
    run("a", "100.25", idem="labkit:idem:{alice}:{1}")
    _, _, ts, raw = run("b", "99.0", idem="labkit:idem:{alice}:{2}")
    assert ts == "100.25" and json.loads(raw)["ts"] == 100.25
    _, _, ts, _ = run("c", "1e+16", idem="labkit:idem:{alice}:{3}")
    assert ts == "1e+16", "the text is kept verbatim, not reformatted by Lua"
