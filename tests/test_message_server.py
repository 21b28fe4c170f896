"""The message server on both backends: check, sequence and store, publish, ack.

The bus is a stub that records what was published (or fails to publish), so every test can
say exactly what went out on the channel's topic.
"""

from __future__ import annotations

import json
import socket

import fakeredis
import pytest
import redis.asyncio as aioredis
import redis.exceptions
from conftest import RedisFactory

from labkit.core.protocol import Ack, ErrorCode, Post, ProtocolError
from labkit.server.message_server import MessageServer
from labkit.server.redis.bus import Bus, channel_topic
from labkit.server.redis.directory import Directory
from labkit.server.redis.store import Store, connect

NOW = 1_764_331_200.0


class RecordingBus(Bus):
    """Records each publish; raises ``fail`` instead when it is set."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.fail = fail
        self.sent: list[tuple[str, str]] = []

    async def publish(self, topic: str, payload: str) -> None:
        if self.fail is not None:
            raise self.fail
        self.sent.append((topic, payload))

    def seqs(self) -> list[int]:
        return [json.loads(payload)["seq"] for _, payload in self.sent]


async def server_on(
    factory: RedisFactory, bus: Bus | None = None, store: Store | None = None
) -> tuple[MessageServer, RecordingBus]:
    recording = bus if isinstance(bus, RecordingBus) else RecordingBus()
    directory = Directory(factory())
    await directory.join("alice", "general")
    server = MessageServer(
        store or Store(factory()), directory, bus or recording, clock=lambda: NOW
    )
    return server, recording


def unreachable(kind: str) -> aioredis.Redis:
    """A client of nothing: a fake server that refuses connections, or a closed local port."""
    if kind == "fake":
        server = fakeredis.FakeServer()
        server.connected = False
        return connect(None, fake_server=server)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return connect(f"redis://127.0.0.1:{port}/0")


async def test_a_post_is_stored_published_and_acked(redis_backend: RedisFactory) -> None:
    server, bus = await server_on(redis_backend)
    ack = await server.post("alice", Post("c-1", "general", "hi"))
    assert ack == Ack("c-1", "general", 1, NOW)
    assert len(bus.sent) == 1
    topic, payload = bus.sent[0]
    assert topic == channel_topic("general")
    assert json.loads(payload) == {
        "type": "message",
        "channel": "general",
        "seq": 1,
        "user": "alice",
        "text": "hi",
        "ts": NOW,
    }
    assert await server.store.history("general") == [(1, payload)], "published what was stored"
    assert (server.posts, server.publish_failures) == (1, 0)


async def test_a_non_member_is_refused_and_nothing_is_stored_or_published(
    redis_backend: RedisFactory,
) -> None:
    server, bus = await server_on(redis_backend)
    with pytest.raises(ProtocolError) as caught:
        await server.post("mallory", Post("m-1", "general", "let me in"))
    assert (caught.value.code, caught.value.id) == (ErrorCode.NOT_MEMBER, "m-1")
    assert "#general" in caught.value.message
    with pytest.raises(ProtocolError) as caught:
        await server.post("alice", Post("c-1", "nowhere", "hi"))
    assert caught.value.code == ErrorCode.NOT_MEMBER
    assert (await server.store.state("general")).head == 0
    assert bus.sent == [] and server.posts == 0


async def test_a_reused_id_with_other_text_is_invalid_naming_the_id(
    redis_backend: RedisFactory,
) -> None:
    server, bus = await server_on(redis_backend)
    await server.directory.join("alice", "eng")
    await server.post("alice", Post("c-1", "general", "hi"))
    for conflicting in (Post("c-1", "general", "bye"), Post("c-1", "eng", "hi")):
        with pytest.raises(ProtocolError) as caught:
            await server.post("alice", conflicting)
        assert (caught.value.code, caught.value.id) == (ErrorCode.INVALID, "c-1")
        assert "'c-1'" in caught.value.message
    assert (await server.store.state("general")).head == 1
    assert (await server.store.state("eng")).head == 0
    assert bus.seqs() == [1]


async def test_a_duplicate_post_returns_the_same_seq_and_publishes_again(
    redis_backend: RedisFactory,
) -> None:
    server, bus = await server_on(redis_backend)
    first = await server.post("alice", Post("c-1", "general", "hi"))
    await server.post("alice", Post("c-2", "general", "there"))
    again = await server.post("alice", Post("c-1", "general", "hi"))
    assert again == first
    assert bus.seqs() == [1, 2, 1]
    assert bus.sent[0] == bus.sent[2], "the same frame, byte for byte"
    assert len(await server.store.history("general")) == 2, "stored once"


@pytest.mark.parametrize(
    "failure",
    [redis.exceptions.ConnectionError("bus down"), OSError("network unreachable")],
    ids=["redis-error", "os-error"],
)
async def test_a_failed_publish_still_acks_what_was_stored(
    redis_backend: RedisFactory, failure: Exception
) -> None:
    server, _ = await server_on(redis_backend, bus=RecordingBus(fail=failure))
    ack = await server.post("alice", Post("c-1", "general", "hi"))
    assert (ack.seq, ack.ts) == (1, NOW)
    assert (server.posts, server.publish_failures) == (1, 1)
    [(seq, raw)] = await server.store.history("general")
    assert seq == 1
    assert json.loads(raw)["text"] == "hi"


async def test_an_unreachable_store_is_unavailable_and_the_retry_succeeds(
    redis_backend: RedisFactory,
) -> None:
    down = unreachable(redis_backend.kind)
    server, bus = await server_on(redis_backend, store=Store(down))
    try:
        with pytest.raises(ProtocolError) as caught:
            await server.post("alice", Post("c-1", "general", "hi"))
    finally:
        await down.aclose()
    assert (caught.value.code, caught.value.id) == (ErrorCode.UNAVAILABLE, "c-1")
    assert "retry later" in caught.value.message
    assert bus.sent == [] and server.posts == 0
    server.store = Store(redis_backend())  # the store is back
    ack = await server.post("alice", Post("c-1", "general", "hi"))
    assert ack.seq == 1, "the refused id was not used up"
    assert bus.seqs() == [1]


async def test_an_unreachable_directory_is_unavailable_too(redis_backend: RedisFactory) -> None:
    down = unreachable(redis_backend.kind)
    bus = RecordingBus()
    server = MessageServer(Store(redis_backend()), Directory(down), bus, clock=lambda: NOW)
    try:
        with pytest.raises(ProtocolError) as caught:
            await server.post("alice", Post("c-1", "general", "hi"))
    finally:
        await down.aclose()
    assert (caught.value.code, caught.value.id) == (ErrorCode.UNAVAILABLE, "c-1")
    assert (await server.store.state("general")).head == 0 and bus.sent == []
