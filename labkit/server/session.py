"""What a gateway does with each client frame after ``welcome``.

One function per frame type, each short: parse, check, act, reply. The connection stays open
through every error of PROTOCOL.md's table (``bad_frame``, ``unknown_type``, ``invalid``,
``not_member``, ``rate_limited``, ``unavailable``); only the gateway's own rules close it
(4002 for silence, 4008 for a slow reader, 1009 for an oversized frame, which websockets
enforces before the frame reaches us).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace

from websockets.exceptions import ConnectionClosed

from labkit.core import protocol as p
from labkit.core.presence import DigestBuffer
from labkit.server.gateway import Conn, Gateway
from labkit.server.redis.bus import channel_topic
from labkit.server.redis.store import StoreUnavailable

log = logging.getLogger(__name__)


async def serve_session(gw: Gateway, conn: Conn) -> None:
    """Read frames until the connection closes, answering each one."""
    async for data in conn.ws:
        if isinstance(data, str):
            await gw.heartbeat(conn)
        frame: p.ClientFrame | None = None
        try:
            frame = p.parse_client_frame(data)
            await _dispatch(gw, conn, frame, data)
        except p.ProtocolError as exc:
            await _send(conn, exc.as_frame())
        except StoreUnavailable as exc:
            request_id = getattr(frame, "id", None)  # the error answers the request
            await _send(conn, p.Error(p.ErrorCode.UNAVAILABLE, f"{exc}; retry later", request_id))
        except ConnectionClosed:
            raise
        except Exception:  # never let one frame kill the connection or the gateway
            log.exception("%s: frame from %s failed", gw.name, conn.id)
            error = p.Error(p.ErrorCode.UNAVAILABLE, "internal error; retry later")
            await _send(conn, replace(error, id=getattr(frame, "id", None)))


async def _send(conn: Conn, frame: p.ServerFrame) -> None:
    await conn.ws.send(p.encode(frame))


async def _dispatch(gw: Gateway, conn: Conn, frame: p.ClientFrame, data: str | bytes) -> None:
    if isinstance(frame, p.Ping):
        await _send(conn, p.Pong(frame.id))
        return
    request_id = getattr(frame, "id", None)
    if isinstance(frame, p.Hello):
        request_id = _request_id(data)
    if not gw.limiter.allow(conn.user, gw.clock()):
        if isinstance(frame, p.Typing):
            return  # typing may be dropped silently
        raise p.ProtocolError(
            p.ErrorCode.RATE_LIMITED, "too many frames; slow down and retry", request_id
        )
    handler = _HANDLERS.get(type(frame))
    if handler is None:  # a second hello
        raise p.ProtocolError(p.ErrorCode.INVALID, "hello was already accepted", request_id)
    await handler(gw, conn, frame)


def _request_id(data: str | bytes) -> str | None:
    """The valid ``id`` of a frame that parsed (``Hello`` keeps none, but its error echoes it)."""
    with contextlib.suppress(ValueError, TypeError):
        value = json.loads(data).get("id")
        if isinstance(value, str) and 1 <= len(value) <= p.MAX_ID_CHARS:
            return value
    return None


async def _post(gw: Gateway, conn: Conn, frame: p.ClientFrame) -> None:
    assert isinstance(frame, p.Post)
    await _send(conn, await gw.messages.post(conn.user, frame))


async def _history(gw: Gateway, conn: Conn, frame: p.ClientFrame) -> None:
    assert isinstance(frame, p.History)
    await _require_member(gw, conn, frame.channel, frame.id)
    state = await gw.store.state(frame.channel)
    raws = await gw.store.history(frame.channel, frame.after, frame.limit)
    await conn.ws.send(p.encode_history_reply(frame.id, frame.channel, state.head, raws))


async def _join(gw: Gateway, conn: Conn, frame: p.ClientFrame) -> None:
    assert isinstance(frame, p.Join)
    newly = await gw.directory.join(conn.user, frame.channel)
    state = await gw.store.state(frame.channel)
    already = gw.core.cursor(conn, frame.channel) is not None
    await _send(conn, p.Joined(frame.channel, state.head, state.epoch, frame.id))
    if not already:
        await gw.attach(conn, frame.channel, state.head)
    if newly:
        await gw.announce_membership(
            "joined", conn, frame.channel, head=state.head, epoch=state.epoch
        )


async def _leave(gw: Gateway, conn: Conn, frame: p.ClientFrame) -> None:
    assert isinstance(frame, p.Leave)
    was_member = await gw.directory.leave(conn.user, frame.channel)
    gw.detach(conn, frame.channel)
    await _send(conn, p.Left(frame.channel, frame.id))
    if was_member:
        await gw.announce_membership("left", conn, frame.channel)


async def _typing(gw: Gateway, conn: Conn, frame: p.ClientFrame) -> None:
    assert isinstance(frame, p.Typing)
    if gw.core.cursor(conn, frame.channel) is None:
        raise p.ProtocolError(
            p.ErrorCode.NOT_MEMBER,
            f"{conn.user} is not a member of #{frame.channel}",
            frame.id,
        )
    if not gw.typing.allow(conn.user, frame.channel, gw.clock()):
        return
    payload = p.encode(p.TypingEvent(frame.channel, conn.user))
    try:
        await gw.bus.publish(channel_topic(frame.channel), payload)
    except Exception:  # typing is best effort: silently dropped
        log.debug("typing publish failed", exc_info=True)


async def _presence_sub(gw: Gateway, conn: Conn, frame: p.ClientFrame) -> None:
    assert isinstance(frame, p.PresenceSub)
    now = gw.clock()
    statuses = await gw.presence.status(list(frame.users), now)
    gw.watch_presence(conn, frame.users)
    told = {user: status for user, (status, _) in statuses.items()}
    conn.digest = (
        DigestBuffer(frame.digest_s, now, told=told) if frame.digest_s is not None else None
    )
    for user in frame.users:
        status, last_active = statuses.get(user, ("offline", None))
        await _send(conn, p.Presence(user, status, last_active))


async def _require_member(gw: Gateway, conn: Conn, channel: str, request_id: str | None) -> None:
    if not await gw.directory.is_member(conn.user, channel):
        raise p.ProtocolError(
            p.ErrorCode.NOT_MEMBER, f"{conn.user} is not a member of #{channel}", request_id
        )


_Handler = Callable[[Gateway, Conn, p.ClientFrame], Awaitable[None]]
_HANDLERS: dict[type, _Handler] = {
    p.Post: _post,
    p.History: _history,
    p.Join: _join,
    p.Leave: _leave,
    p.Typing: _typing,
    p.PresenceSub: _presence_sub,
}
