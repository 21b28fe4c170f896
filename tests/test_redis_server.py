"""The private redis-server: start, stop, crash, restart, and what survives each."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

import pytest
import redis

from labkit.server import redis_server
from labkit.server.redis_server import RedisServer, RedisServerError, find_redis_server


def client(server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(server.url, decode_responses=True, socket_timeout=5)


@pytest.mark.real_redis
def test_starts_on_a_free_port_and_cleans_up(redis_server_binary: str) -> None:
    with RedisServer(binary=redis_server_binary) as server:
        assert server.port != 6379
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        assert server.running
        folder = server.dir
        assert folder is not None and folder.is_dir()
        with client(server) as r:
            assert r.ping()
            assert r.config_get("appendonly") == {"appendonly": "no"}
            assert r.config_get("save") == {"save": ""}
    assert not server.running
    assert not folder.exists()


@pytest.mark.real_redis
def test_kill_without_persistence_loses_data_on_the_same_port(redis_server_binary: str) -> None:
    with RedisServer(binary=redis_server_binary) as server:
        port = server.port
        with client(server) as r:
            r.set("k", "v")
        server.kill()
        assert not server.running
        server.restart()
        assert server.port == port
        with client(server) as r:
            assert r.get("k") is None


@pytest.mark.real_redis
def test_aof_always_keeps_acknowledged_writes_across_a_kill(redis_server_binary: str) -> None:
    with RedisServer(appendonly=True, appendfsync="always", binary=redis_server_binary) as server:
        with client(server) as r:
            r.set("k", "v")
            assert r.config_get("appendfsync") == {"appendfsync": "always"}
        server.kill()
        server.restart()
        with client(server) as r:
            assert r.get("k") == "v"


@pytest.mark.real_redis
def test_stop_then_start_keeps_aof_data(redis_server_binary: str) -> None:
    with RedisServer(appendonly=True, binary=redis_server_binary) as server:
        with client(server) as r:
            r.rpush("l", "a", "b")
        server.stop()
        assert server.pid is None
        server.start()
        with client(server) as r:
            assert r.lrange("l", 0, -1) == ["a", "b"]


@pytest.mark.real_redis
def test_retries_when_the_port_was_taken(
    redis_server_binary: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = iter([taken, redis_server._free_port()])
        monkeypatch.setattr(redis_server, "_free_port", lambda: next(ports))
        with RedisServer(binary=redis_server_binary) as server:
            assert server.port != taken
            with client(server) as r:
                assert r.ping()


def test_failure_to_start_reports_the_log(tmp_path: Path) -> None:
    fake = tmp_path / "redis-server"
    fake.write_text("#!/bin/sh\necho 'FATAL CONFIG FILE ERROR: nope'\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    server = RedisServer(binary=str(fake))
    with pytest.raises(RedisServerError, match="FATAL CONFIG FILE ERROR"):
        server.start()
    server.close()


def test_bad_appendfsync_is_refused() -> None:
    with pytest.raises(ValueError):
        RedisServer(appendfsync="sometimes")


def test_find_redis_server_follows_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_redis_server() is None
    binary = tmp_path / "redis-server"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    assert find_redis_server() == str(binary)
