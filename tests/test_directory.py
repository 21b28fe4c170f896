"""Memberships on both backends: the demo workspace, join and leave, and unreachable Redis."""

from __future__ import annotations

import asyncio

import fakeredis
import pytest
from conftest import RedisFactory

from labkit.server.redis.directory import DEMO_CHANNELS, DEMO_USERS, Directory
from labkit.server.redis.store import StoreUnavailable, connect


async def test_seed_demo_seeds_an_empty_workspace_once(redis_backend: RedisFactory) -> None:
    directory = Directory(redis_backend())
    assert await directory.seed_demo() is True
    assert await directory.seed_demo() is False
    assert await directory.all_channels() == set(DEMO_CHANNELS)
    assert await directory.channels_of("alice") == {"general", "random", "eng"}
    assert await directory.channels_of("dave") == {"general", "random"}
    assert await directory.members("eng") == {"alice", "bob", "carol"}
    assert await directory.members("general") == set(DEMO_USERS)
    assert await directory.is_member("carol", "eng")
    assert not await directory.is_member("erin", "eng")


async def test_concurrent_seeds_seed_exactly_once(redis_backend: RedisFactory) -> None:
    directories = [Directory(redis_backend()) for _ in range(4)]
    seeded = await asyncio.gather(*(d.seed_demo() for d in directories))
    assert sorted(seeded) == [False, False, False, True]
    assert await directories[0].members("eng") == {"alice", "bob", "carol"}


async def test_seed_leaves_an_existing_workspace_alone(redis_backend: RedisFactory) -> None:
    directory = Directory(redis_backend())
    await directory.join("zoe", "lobby")
    assert await directory.seed_demo() is False
    assert await directory.all_channels() == {"lobby"}


async def test_join_creates_the_channel_and_updates_both_sides(
    redis_backend: RedisFactory,
) -> None:
    directory = Directory(redis_backend())
    assert await directory.join("erin", "design") is True
    assert await directory.join("erin", "design") is False
    assert "design" in await directory.all_channels()
    assert await directory.members("design") == {"erin"}
    assert await directory.channels_of("erin") == {"design"}
    assert await Directory(redis_backend()).is_member("erin", "design")


async def test_leave_updates_both_sides_and_keeps_the_channel(
    redis_backend: RedisFactory,
) -> None:
    directory = Directory(redis_backend())
    await directory.seed_demo()
    assert await directory.leave("bob", "eng") is True
    assert await directory.leave("bob", "eng") is False
    assert await directory.leave("nobody", "nowhere") is False
    assert await directory.members("eng") == {"alice", "carol"}
    assert await directory.channels_of("bob") == {"general", "random"}
    assert not await directory.is_member("bob", "eng")
    assert "eng" in await directory.all_channels()


async def test_unknown_user_and_channel_are_empty(redis_backend: RedisFactory) -> None:
    directory = Directory(redis_backend())
    assert await directory.channels_of("ghost") == set()
    assert await directory.members("void") == set()
    assert await directory.all_channels() == set()


async def test_unreachable_redis_raises_store_unavailable() -> None:
    server = fakeredis.FakeServer()
    directory = Directory(connect(None, fake_server=server))
    server.connected = False
    for call in (
        directory.seed_demo,
        lambda: directory.join("alice", "x"),
        lambda: directory.leave("alice", "x"),
        lambda: directory.channels_of("alice"),
        lambda: directory.is_member("alice", "x"),
        lambda: directory.members("x"),
        directory.all_channels,
    ):
        with pytest.raises(StoreUnavailable, match="fake Redis"):
            await call()
