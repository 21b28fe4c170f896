"""Checks for ex03_fanout: one bus message to every local member, encoded once.

The connections are test doubles that record every write and close, and report a buffered byte
count the check sets. The frame is a ``Message`` whose ``text`` field counts how often it is read:
encoding it reads it once, so reading it once per connection means encoding it once per
connection. That is the cost this exercise is about: a channel with 5,000 local members should
cost one encode and 5,000 writes, not 5,000 encodes.
"""

from __future__ import annotations

import json
import random
from types import ModuleType
from typing import Any

from labkit.core.protocol import CloseCode, Message, encode
from labkit.grading.framework import CheckList, Failure, expect, need, show

checks = CheckList()

SLOW_CONSUMER = CloseCode.SLOW_CONSUMER
"""The close code the contract gives a slow consumer (PROTOCOL.md, "Errors and limits")."""


class FakeConn:
    """A connection double: records writes and closes; ``buffered`` is set by the check."""

    def __init__(self, name: str, buffered: int = 0, *, broken: bool = False) -> None:
        self.name = name
        self.buffered = buffered
        self.broken = broken
        self.writes: list[str] = []
        self.closes: list[int] = []

    def write(self, text: str) -> None:
        if self.broken:
            raise ConnectionResetError(f"{self.name}: the peer went away")
        self.writes.append(text)
        self.buffered += len(text.encode("utf-8"))

    def buffered_bytes(self) -> int:
        return self.buffered

    def close(self, code: int) -> None:
        self.closes.append(code)

    def __repr__(self) -> str:
        return self.name


def counted_message(channel: str, seq: int, user: str, text: str) -> tuple[Message, list[int]]:
    """A real ``Message`` (``encode`` accepts it) whose ``text`` counts its reads."""
    reads = [0]
    slot = Message.__dict__["text"]

    def get_text(self: Message) -> Any:
        reads[0] += 1
        return slot.__get__(self, Message)

    counted = type("Message", (Message,), {"__slots__": (), "text": property(get_text)})
    frame = Message(channel, seq, user, text, 1764331200.25)
    object.__setattr__(frame, "__class__", counted)
    return frame, reads


def _frame(text: str = "hello, world") -> Message:
    return Message("general", 46, "alice", text, 1764331200.25)


def _size(frame: Message) -> int:
    return len(encode(frame).encode("utf-8"))


def _fanout(module: ModuleType, frame: Message, conns: list[FakeConn], max_buffer: int) -> Any:
    result = need(module, "fanout")(frame, conns, max_buffer)
    for attr in ("sent", "closed"):
        if not hasattr(result, attr):
            raise Failure(
                "fanout to return a FanoutResult with .sent and .closed",
                f"it returned {show(result)}",
            )
    return result


def _expect_received(conn: FakeConn, frame: Message) -> None:
    wanted = json.loads(encode(frame))
    expect(
        len(conn.writes) == 1,
        f"{conn} to be written the frame once",
        f"it was written {len(conn.writes)} times",
    )
    try:
        got = json.loads(conn.writes[0])
    except (TypeError, ValueError):
        got = conn.writes[0]
    expect(
        got == wanted,
        f"{conn} to receive encode(frame): {show(encode(frame))}",
        f"it received {show(conn.writes[0])}",
    )
    expect(not conn.closes, f"{conn} (not slow) to stay open", f"it was closed with {conn.closes}")


@checks.add("every connection is written the encoded frame once, in order")
def check_every_connection(module: ModuleType, rng: random.Random) -> None:
    frame = _frame()
    conns = [FakeConn(f"conn-{i}") for i in range(1, 6)]
    result = _fanout(module, frame, conns, 64 * 1024)
    for conn in conns:
        _expect_received(conn, frame)
    expect(list(result.sent) == conns, f"result.sent to be {conns}", show(result.sent))
    expect(list(result.closed) == [], "result.closed to be []", show(result.closed))
    result = _fanout(module, frame, [], 64 * 1024)
    expect(
        list(result.sent) == [] and list(result.closed) == [],
        "fanout to no connections to send and close nothing",
        f"sent {show(result.sent)}, closed {show(result.closed)}",
    )


@checks.add("the frame is encoded once, not once per connection (budget)")
def check_encode_once(module: ModuleType, rng: random.Random) -> None:
    frame, reads = counted_message("general", 46, "alice", "encode me once")
    conns = [FakeConn(f"conn-{i}") for i in range(1, 9)]
    _fanout(module, frame, conns, 64 * 1024)
    written = [w for conn in conns for w in conn.writes]
    expect(len(written) == len(conns), "one write per connection", f"{len(written)} writes")
    expect(
        reads[0] <= 1,
        "the frame encoded once for 8 connections (encode before the loop)",
        f"its text was read {reads[0]} times: it was encoded about once per connection",
    )
    expect(
        all(w is written[0] for w in written),
        "every connection to be handed the very same encoded string",
        "the connections got separately built strings: one encode per connection",
    )


@checks.add("a slow connection is closed with 4008 and not written to")
def check_slow_closed(module: ModuleType, rng: random.Random) -> None:
    frame = _frame()
    fast1, slow, fast2 = FakeConn("conn-1"), FakeConn("slow-2", 4096), FakeConn("conn-3")
    result = _fanout(module, frame, [fast1, slow, fast2], 4096)
    expect(
        slow.closes == [SLOW_CONSUMER],
        "slow-2 (4096 bytes already buffered, bound 4096) to be closed once with code 4008",
        f"it was closed with {slow.closes}" if slow.closes else "it was not closed",
    )
    expect(
        slow.writes == [],
        "nothing written to slow-2 (its queue is already full)",
        f"{len(slow.writes)} writes",
    )
    expect(list(result.closed) == [slow], "result.closed to be [slow-2]", show(result.closed))
    expect(
        list(result.sent) == [fast1, fast2], "result.sent to be [conn-1, conn-3]", show(result.sent)
    )


@checks.add("slow connections do not stall the others, wherever they are in the list")
def check_no_stall(module: ModuleType, rng: random.Random) -> None:
    frame = _frame()
    bound = 2048
    conns = [
        FakeConn("slow-1", bound + 100),
        FakeConn("conn-2"),
        FakeConn("slow-3", bound),
        FakeConn("slow-4", bound * 5),
        FakeConn("conn-5", 10),
        FakeConn("slow-6", bound + 1),
    ]
    result = _fanout(module, frame, conns, bound)
    for conn in conns:
        if conn.name.startswith("conn"):
            _expect_received(conn, frame)
        else:
            expect(
                conn.closes == [SLOW_CONSUMER] and not conn.writes,
                f"{conn} to be closed with 4008 and not written",
                f"closes {conn.closes}, {len(conn.writes)} writes",
            )
    expect(
        list(result.sent) == [conns[1], conns[4]],
        "result.sent to be [conn-2, conn-5]",
        show(result.sent),
    )


@checks.add("the bound is inclusive: a frame that exactly fills the buffer is still written")
def check_boundary(module: ModuleType, rng: random.Random) -> None:
    frame = _frame()
    size = _size(frame)
    bound = 1000
    fits = FakeConn("fits", bound - size)
    over = FakeConn("one-byte-over", bound - size + 1)
    _fanout(module, frame, [fits, over], bound)
    expect(
        bool(fits.writes) and not fits.closes,
        f"a connection with {bound - size} bytes buffered to take a {size}-byte frame"
        f" (bound {bound}: exactly full is allowed)",
        f"closes {fits.closes}, {len(fits.writes)} writes",
    )
    expect(
        over.closes == [SLOW_CONSUMER] and not over.writes,
        f"a connection with {bound - size + 1} bytes buffered to be closed (the frame would"
        f" take it to {bound + 1} bytes, over the bound)",
        f"closes {over.closes}, {len(over.writes)} writes",
    )


@checks.add("the frame's size is counted in UTF-8 bytes, as the socket counts it")
def check_bytes_not_chars(module: ModuleType, rng: random.Random) -> None:
    frame = _frame("héllo wörld, ça va? 😀 " * 8)
    chars = len(encode(frame))
    size = _size(frame)
    bound = 4000
    conn = FakeConn("conn-1", bound - chars)
    _fanout(module, frame, [conn], bound)
    expect(
        conn.closes == [SLOW_CONSUMER] and not conn.writes,
        f"a frame of {chars} characters but {size} UTF-8 bytes not to fit in the {chars}"
        " bytes left in the buffer",
        "it was written (counting characters, not bytes?)"
        if conn.writes
        else f"closes {conn.closes}",
    )


@checks.add("a connection whose write fails does not stop the others")
def check_broken_write(module: ModuleType, rng: random.Random) -> None:
    frame = _frame()
    conns = [FakeConn("conn-1"), FakeConn("gone-2", broken=True), FakeConn("conn-3")]
    try:
        result = _fanout(module, frame, conns, 64 * 1024)
    except ConnectionError as err:
        raise Failure(
            "a write that raises ConnectionError to be skipped, the others served",
            f"fanout raised {type(err).__name__}: {err}",
        ) from None
    _expect_received(conns[0], frame)
    _expect_received(conns[2], frame)
    expect(
        conns[1] not in list(result.sent),
        "gone-2 (its write raised) not to count as sent",
        f"result.sent is {show(result.sent)}",
    )


@checks.add(
    "random buffers and broken peers: each connection gets exactly what it should", randomized=True
)
def check_random(module: ModuleType, rng: random.Random) -> None:
    for _ in range(5):
        frame = _frame("x" * rng.randint(1, 400) + "é" * rng.randint(0, 50))
        size = _size(frame)
        bound = rng.randint(size, 8 * size)
        conns = []
        for i in range(rng.randint(1, 60)):
            roll = rng.random()
            if roll < 0.05:
                conns.append(FakeConn(f"gone-{i}", broken=True))
            elif roll < 0.3:
                conns.append(FakeConn(f"edge-{i}", bound - size + rng.randint(-1, 1)))
            else:
                conns.append(FakeConn(f"conn-{i}", rng.randint(0, 2 * bound)))
        plan = {c.name: c.buffered + size <= bound for c in conns}
        result = _fanout(module, frame, conns, bound)
        for conn in conns:
            if conn.broken:
                continue
            if plan[conn.name]:
                _expect_received(conn, frame)
            else:
                expect(
                    conn.closes == [SLOW_CONSUMER] and not conn.writes,
                    f"{conn} ({conn.buffered} bytes buffered, frame {size} bytes, bound"
                    f" {bound}) to be closed with 4008 and not written",
                    f"closes {conn.closes}, {len(conn.writes)} writes",
                )
        wanted_sent = [c for c in conns if not c.broken and plan[c.name]]
        wanted_closed = [c for c in conns if not c.broken and not plan[c.name]]
        expect(
            list(result.sent) == wanted_sent,
            f"result.sent to be {show(wanted_sent)}",
            show(result.sent),
        )
        expect(
            list(result.closed) == wanted_closed,
            f"result.closed to be {show(wanted_closed)}",
            show(result.closed),
        )


EXERCISE = checks.exercise(
    "ex03_fanout",
    "fanout: one bus message to every local member, encoded once, slow consumers closed (4008)",
)
