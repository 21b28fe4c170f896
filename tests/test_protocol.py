"""Tests for labkit.core.protocol: every error path of the parser, the exact wire spelling of the
encoder, and round trips (example-based and with Hypothesis)."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labkit.core.protocol import (
    CHANNEL_NAME,
    DEFAULT_HISTORY_LIMIT,
    MAX_HISTORY_LIMIT,
    MAX_PRESENCE_USERS,
    MAX_TEXT_CHARS,
    PROTOCOL_VERSION,
    Ack,
    ChannelInfo,
    ClientFrame,
    CloseCode,
    Error,
    ErrorCode,
    Hello,
    History,
    HistoryReply,
    Join,
    Joined,
    Leave,
    Left,
    Message,
    Ping,
    Pong,
    Post,
    Presence,
    PresenceDigest,
    PresenceSub,
    ProtocolError,
    Reconnect,
    Reset,
    ServerFrame,
    Typing,
    TypingEvent,
    Welcome,
    encode,
    encode_client,
    encode_history_reply,
    encode_message_parts,
    encoding,
    frame_to_dict,
    frames,
    is_valid_channel,
    parse_client_frame,
    parse_server_frame,
    parsing,
)

BAD = ErrorCode.BAD_FRAME
UNKNOWN = ErrorCode.UNKNOWN_TYPE
INVALID = ErrorCode.INVALID


_DROP = object()
"""Pass as a field's value to leave that field out of the frame."""


def _frame(kind: str, defaults: dict[str, Any], over: dict[str, Any]) -> str:
    fields = {"type": kind, **defaults, **over}
    return json.dumps({k: v for k, v in fields.items() if v is not _DROP})


def post(**over: Any) -> str:
    return _frame("post", {"id": "c-1", "channel": "general", "text": "hi"}, over)


def history(**over: Any) -> str:
    return _frame("history", {"id": "h1", "channel": "general"}, over)


def hello(**over: Any) -> str:
    return _frame("hello", {"token": "tok"}, over)


def presence_sub(**over: Any) -> str:
    return _frame("presence_sub", {"users": ["bob"]}, over)


# --------------------------------------------------------------------------- refused frames

# (name, frame, expected code, expected id on the error)
REFUSED: list[tuple[str, str | bytes, ErrorCode, str | None]] = [
    # bad_frame: not text, not JSON, not an object, no string type
    ("binary frame", b'{"type": "ping"}', BAD, None),
    ("empty binary frame", b"", BAD, None),
    ("empty text", "", BAD, None),
    ("not json", "hello", BAD, None),
    ("truncated json", '{"type": "ping"', BAD, None),
    ("json array", "[]", BAD, None),
    ("json null", "null", BAD, None),
    ("json string", '"ping"', BAD, None),
    ("json number", "5", BAD, None),
    ("NaN constant", '{"type": "ping", "x": NaN}', BAD, None),
    ("Infinity constant", '{"type": "ping", "x": Infinity}', BAD, None),
    ("-Infinity constant", '{"type": "ping", "x": -Infinity}', BAD, None),
    ("raw control character", '{"type": "ping\x00"}', BAD, None),
    ("nesting deeper than the stack", "[" * 100_000, BAD, None),
    ("no type", '{"id": "p1"}', BAD, "p1"),
    ("type is a number", '{"type": 5}', BAD, None),
    ("type is null", '{"type": null, "id": "p1"}', BAD, "p1"),
    ("type is a list", '{"type": ["ping"]}', BAD, None),
    # unknown_type
    ("unknown type", '{"type": "shout", "id": "s1"}', UNKNOWN, "s1"),
    ("empty type", '{"type": ""}', UNKNOWN, None),
    ("type in upper case", '{"type": "PING"}', UNKNOWN, None),
    ("server-only type", '{"type": "welcome"}', UNKNOWN, None),
    ("unknown type, invalid id", '{"type": "shout", "id": ""}', UNKNOWN, None),
    # invalid: id
    ("post without id", post(id=_DROP), INVALID, None),
    ("id of 65 chars", post(id="x" * 65), INVALID, None),
    ("id empty", post(id=""), INVALID, None),
    ("id a number", '{"type": "ping", "id": 7}', INVALID, None),
    ("id null", '{"type": "ping", "id": null}', INVALID, None),
    ("id a lone surrogate", '{"type": "ping", "id": "\\ud800"}', INVALID, None),
    # invalid: post
    ("post without channel", post(channel=_DROP), INVALID, "c-1"),
    ("post without text", post(text=_DROP), INVALID, "c-1"),
    ("text empty", post(text=""), INVALID, "c-1"),
    ("text of 4001 chars", post(text="x" * 4001), INVALID, "c-1"),
    ("text of 4001 emoji", post(text="😀" * 4001), INVALID, "c-1"),
    ("text a number", post(text=5), INVALID, "c-1"),
    ("text with a lone surrogate", post(text="\ud800"), INVALID, "c-1"),
    # invalid: channel names
    ("channel General", post(channel="General"), INVALID, "c-1"),
    ("channel of 81 chars", post(channel="a" * 81), INVALID, "c-1"),
    ("channel with trailing newline", post(channel="general\n"), INVALID, "c-1"),
    ("channel empty", post(channel=""), INVALID, "c-1"),
    ("channel starting with -", post(channel="-general"), INVALID, "c-1"),
    ("channel starting with _", post(channel="_general"), INVALID, "c-1"),
    ("channel with a space", post(channel="gen eral"), INVALID, "c-1"),
    ("channel with a dot", post(channel="gen.eral"), INVALID, "c-1"),
    ("channel non-ascii digit", post(channel="٣"), INVALID, "c-1"),
    ("channel a number", post(channel=5), INVALID, "c-1"),
    ("join without channel", '{"type": "join", "id": "j1"}', INVALID, "j1"),
    ("leave bad channel", '{"type": "leave", "id": "l1", "channel": "A"}', INVALID, "l1"),
    ("typing without channel", '{"type": "typing"}', INVALID, None),
    # invalid: history
    ("history without channel", history(channel=_DROP), INVALID, "h1"),
    ("limit True", history(limit=True), INVALID, "h1"),
    ("limit False", history(limit=False), INVALID, "h1"),
    ("limit 0", history(limit=0), INVALID, "h1"),
    ("limit 1001", history(limit=1001), INVALID, "h1"),
    ("limit 10.0", history(limit=10.0), INVALID, "h1"),
    ("limit a string", history(limit="10"), INVALID, "h1"),
    ("limit null", history(limit=None), INVALID, "h1"),
    ("after -1", history(after=-1), INVALID, "h1"),
    ("after 1.5", history(after=1.5), INVALID, "h1"),
    ("after True", history(after=True), INVALID, "h1"),
    ("after 1e3", '{"type": "history", "channel": "general", "after": 1e3}', INVALID, None),
    # invalid: hello
    ("hello without token", hello(token=_DROP), INVALID, None),
    ("hello empty token", hello(token=""), INVALID, None),
    ("hello token a number", hello(token=5), INVALID, None),
    ("hello last_seen seq a string", hello(last_seen={"general": "41"}), INVALID, None),
    ("hello last_seen seq negative", hello(last_seen={"general": -1}), INVALID, None),
    ("hello last_seen seq a bool", hello(last_seen={"general": True}), INVALID, None),
    ("hello last_seen seq a float", hello(last_seen={"general": 41.0}), INVALID, None),
    ("hello last_seen a list", hello(last_seen=[["general", 41]]), INVALID, None),
    ("hello last_seen null", hello(last_seen=None), INVALID, None),
    ("hello last_seen bad channel", hello(last_seen={"General": 41}), INVALID, None),
    ("hello epochs value a number", hello(epochs={"general": 3}), INVALID, None),
    ("hello epochs value empty", hello(epochs={"general": ""}), INVALID, None),
    ("hello epochs bad channel", hello(epochs={"gen eral": "k3x9"}), INVALID, None),
    ("hello epochs a string", hello(epochs="k3x9"), INVALID, None),
    # invalid: presence_sub
    ("presence_sub without users", presence_sub(users=_DROP), INVALID, None),
    ("presence_sub users a string", presence_sub(users="bob"), INVALID, None),
    ("presence_sub 501 users", presence_sub(users=[f"u{i}" for i in range(501)]), INVALID, None),
    ("presence_sub empty user", presence_sub(users=["bob", ""]), INVALID, None),
    ("presence_sub user a number", presence_sub(users=[7]), INVALID, None),
    ("presence_sub digest_s 0.5", presence_sub(digest_s=0.5), INVALID, None),
    ("presence_sub digest_s 3601", presence_sub(digest_s=3601), INVALID, None),
    ("presence_sub digest_s True", presence_sub(digest_s=True), INVALID, None),
    ("presence_sub digest_s a string", presence_sub(digest_s="5"), INVALID, None),
    ("digest_s 1e999", presence_sub(digest_s=0).replace(" 0", " 1e999"), INVALID, None),
    ("presence_sub digest_s huge int", presence_sub(digest_s=10**400), INVALID, None),
    ("presence_sub with id", presence_sub(users=7, id="ps1"), INVALID, "ps1"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("frame", "code", "error_id"),
    [pytest.param(frame, code, error_id, id=name) for name, frame, code, error_id in REFUSED],
)
def test_refused_frames(frame: str | bytes, code: ErrorCode, error_id: str | None) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_client_frame(frame)
    assert info.value.code == code
    assert info.value.id == error_id
    # The error reply can always be sent back as a UTF-8 text frame.
    encode(info.value.as_frame()).encode("utf-8")


def test_error_messages_name_the_field() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_client_frame(history(limit=1001))
    assert info.value.message == "'limit' must be an integer from 1 to 1000"
    assert str(info.value) == info.value.message
    with pytest.raises(ProtocolError) as info:
        parse_client_frame(post(text=_DROP))
    assert info.value.message == "'text' is missing; it must be a string of 1 to 4000 characters"
    with pytest.raises(ProtocolError) as info:
        parse_client_frame(hello(last_seen={"general": "41"}))
    assert info.value.message == "'last_seen.general' must be an integer >= 0"


def test_protocol_error_as_frame_echoes_the_id() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_client_frame(post(channel="General"))
    frame = info.value.as_frame()
    assert frame == Error(ErrorCode.INVALID, info.value.message, "c-1")
    assert json.loads(encode(frame))["id"] == "c-1"


# --------------------------------------------------------------------------- accepted frames

ACCEPTED: list[tuple[str, str, ClientFrame]] = [
    ("post", post(), Post("c-1", "general", "hi")),
    ("text of 4000 chars", post(text="x" * 4000), Post("c-1", "general", "x" * 4000)),
    ("text of 4000 emoji", post(text="😀" * 4000), Post("c-1", "general", "😀" * 4000)),
    ("text with a surrogate pair escape", post(text="😀"), Post("c-1", "general", "😀")),
    ("id of 64 chars", post(id="x" * 64), Post("x" * 64, "general", "hi")),
    ("id of 1 char", post(id="x"), Post("x", "general", "hi")),
    ("channel of 80 chars", post(channel="a" * 80), Post("c-1", "a" * 80, "hi")),
    ("channel of 1 digit", post(channel="7"), Post("c-1", "7", "hi")),
    ("channel with - and _", post(channel="a-b_c"), Post("c-1", "a-b_c", "hi")),
    ("unknown fields ignored", post(future={"x": [1]}), Post("c-1", "general", "hi")),
    ("history defaults", '{"type": "history", "channel": "g"}', History(None, "g", 0, 100)),
    ("history bounds", history(after=0, limit=1000), History("h1", "general", 0, 1000)),
    ("history limit 1", history(limit=1), History("h1", "general", 0, 1)),
    ("history big after", history(after=2**70), History("h1", "general", 2**70, 100)),
    ("hello minimal", hello(), Hello("tok", {}, {})),
    (
        "hello full",
        hello(last_seen={"general": 41, "eng": 0}, epochs={"general": "k3x9"}),
        Hello("tok", {"general": 41, "eng": 0}, {"general": "k3x9"}),
    ),
    ("hello with id", hello(id="h"), Hello("tok")),
    ("join", '{"type": "join", "id": "j1", "channel": "design"}', Join("j1", "design")),
    ("join without id", '{"type": "join", "channel": "design"}', Join(None, "design")),
    ("leave", '{"type": "leave", "id": "l1", "channel": "design"}', Leave("l1", "design")),
    ("typing", '{"type": "typing", "channel": "general"}', Typing("general")),
    ("ping", '{"type": "ping", "id": "p1"}', Ping("p1")),
    ("ping without id", '{"type": "ping"}', Ping()),
    ("presence_sub", presence_sub(users=["bob", "carol"]), PresenceSub(("bob", "carol"))),
    ("presence_sub no users", presence_sub(users=[]), PresenceSub(())),
    ("presence_sub dedupes", presence_sub(users=["b", "a", "b"]), PresenceSub(("b", "a"))),
    (
        "presence_sub 500 users",
        presence_sub(users=[f"u{i}" for i in range(MAX_PRESENCE_USERS)]),
        PresenceSub(tuple(f"u{i}" for i in range(MAX_PRESENCE_USERS))),
    ),
    ("presence_sub digest_s 1", presence_sub(digest_s=1), PresenceSub(("bob",), 1.0)),
    ("presence_sub digest_s 3600", presence_sub(digest_s=3600.0), PresenceSub(("bob",), 3600.0)),
    ("presence_sub with id", presence_sub(id="ps"), PresenceSub(("bob",), None, "ps")),
]


@pytest.mark.parametrize(
    ("text", "expected"), [pytest.param(t, e, id=name) for name, t, e in ACCEPTED]
)
def test_accepted_frames(text: str, expected: ClientFrame) -> None:
    assert parse_client_frame(text) == expected


def test_text_is_counted_in_code_points() -> None:
    # 4000 emoji are 16000 UTF-8 bytes and 8000 UTF-16 units, but 4000 code points.
    frame = parse_client_frame(post(text="😀" * MAX_TEXT_CHARS))
    assert isinstance(frame, Post)
    assert len(frame.text) == MAX_TEXT_CHARS


def test_constants() -> None:
    assert PROTOCOL_VERSION == 1
    assert (MAX_HISTORY_LIMIT, DEFAULT_HISTORY_LIMIT, MAX_PRESENCE_USERS) == (1000, 100, 500)
    assert [c.value for c in ErrorCode] == [
        "bad_frame",
        "unknown_type",
        "invalid",
        "not_member",
        "rate_limited",
        "unavailable",
        "unauthorized",
    ]


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("general", True),
        ("a", True),
        ("0", True),
        ("a" * 80, True),
        ("a" * 81, False),
        ("General", False),
        ("general\n", False),
        ("", False),
        ("-x", False),
        ("x y", False),
        (None, False),
        (5, False),
        (b"general", False),
    ],
)
def test_is_valid_channel(name: object, valid: bool) -> None:
    assert is_valid_channel(name) is valid


# --------------------------------------------------------------------------- encoding

WIRE: list[tuple[ServerFrame, str]] = [
    (
        Welcome("alice", "gw-1", 10.0, {"general": ChannelInfo(45, "k3x9")}),
        '{"type":"welcome","protocol":1,"user":"alice","gateway":"gw-1","heartbeat_s":10,'
        '"channels":{"general":{"head":45,"epoch":"k3x9"}}}',
    ),
    (
        Welcome("alice", "gw-1", 2.5, {}),
        '{"type":"welcome","protocol":1,"user":"alice","gateway":"gw-1","heartbeat_s":2.5,'
        '"channels":{}}',
    ),
    (
        Message("general", 46, "alice", "hi", 1764331200.123),
        '{"type":"message","channel":"general","seq":46,"user":"alice","text":"hi",'
        '"ts":1764331200.123}',
    ),
    (
        Message("general", 1, "bob", 'ünï "q" 😀\n', 1764331200),
        '{"type":"message","channel":"general","seq":1,"user":"bob","text":"ünï \\"q\\" 😀\\n",'
        '"ts":1764331200.0}',
    ),
    (
        Ack("c-17", "general", 46, 1764331200.123),
        '{"type":"ack","id":"c-17","channel":"general","seq":46,"ts":1764331200.123}',
    ),
    (
        Reset("general", 45, "k3x9", "epoch_changed"),
        '{"type":"reset","channel":"general","head":45,"epoch":"k3x9","reason":"epoch_changed"}',
    ),
    (
        HistoryReply("h1", "general", 46, (Message("general", 11, "bob", "yo", 1.5),)),
        '{"type":"history","id":"h1","channel":"general","head":46,"messages":[{"type":"message",'
        '"channel":"general","seq":11,"user":"bob","text":"yo","ts":1.5}]}',
    ),
    (
        HistoryReply(None, "general", 0, ()),
        '{"type":"history","channel":"general","head":0,"messages":[]}',
    ),
    (
        Joined("design", 12, "k3x9", "j1"),
        '{"type":"joined","id":"j1","channel":"design","head":12,"epoch":"k3x9"}',
    ),
    (Joined("design", 12, "k3x9"), '{"type":"joined","channel":"design","head":12,"epoch":"k3x9"}'),
    (Left("design", "l1"), '{"type":"left","id":"l1","channel":"design"}'),
    (Left("design"), '{"type":"left","channel":"design"}'),
    (TypingEvent("general", "alice"), '{"type":"typing","channel":"general","user":"alice"}'),
    (Pong("p1"), '{"type":"pong","id":"p1"}'),
    (Pong(), '{"type":"pong"}'),
    (
        Presence("bob", "online", 1764331200.1),
        '{"type":"presence","user":"bob","status":"online","last_active":1764331200.1}',
    ),
    (
        Presence("bob", "offline", None),
        '{"type":"presence","user":"bob","status":"offline","last_active":null}',
    ),
    (
        PresenceDigest((Presence("bob", "online", 5.0),), 0.0, 10.0),
        '{"type":"presence_digest","changes":[{"type":"presence","user":"bob","status":"online",'
        '"last_active":5.0}],"since":0.0,"until":10.0}',
    ),
    (
        Error(ErrorCode.NOT_MEMBER, "you are not a member of 'eng'", "c-1"),
        '{"type":"error","code":"not_member","message":"you are not a member of \'eng\'",'
        '"id":"c-1"}',
    ),
    (
        Error(ErrorCode.BAD_FRAME, "the frame is not valid JSON"),
        '{"type":"error","code":"bad_frame","message":"the frame is not valid JSON"}',
    ),
    (Reconnect("draining"), '{"type":"reconnect","reason":"draining"}'),
]


@pytest.mark.parametrize(("frame", "wire"), WIRE, ids=lambda v: type(v).__name__)
def test_encode_exact_wire_form(frame: ServerFrame, wire: str) -> None:
    assert encode(frame) == wire
    assert parse_server_frame(wire) == frame
    assert frame_to_dict(frame) == json.loads(wire)
    assert next(iter(json.loads(wire))) == "type"


def test_encode_refuses_non_finite_numbers() -> None:
    with pytest.raises(ValueError):
        encode(Message("general", 1, "alice", "hi", float("nan")))
    with pytest.raises(ValueError):
        encode(Ack("c", "general", 1, float("inf")))


def test_frame_to_dict_returns_fresh_data() -> None:
    channels = {"general": ChannelInfo(1, "e")}
    frame = Welcome("alice", "gw-1", 10, channels)
    d = frame_to_dict(frame)
    d["channels"]["general"]["head"] = 99
    assert frame_to_dict(frame)["channels"]["general"]["head"] == 1
    hello = Hello("tok", {"general": 3})
    assert frame_to_dict(hello) == {
        "type": "hello",
        "token": "tok",
        "last_seen": {"general": 3},
        "epochs": {},
    }
    assert frame_to_dict(hello)["last_seen"] is not hello.last_seen


@pytest.mark.parametrize("frame_id", ["h1", None])
@pytest.mark.parametrize("count", [0, 1, 3])
def test_encode_history_reply_splices_stored_frames(frame_id: str | None, count: int) -> None:
    messages = tuple(Message("general", 10 + i, "bob", f'm{i} "ü"', 5.0 + i) for i in range(count))
    raw = [encode(m) for m in messages]
    spliced = encode_history_reply(frame_id, "general", 46, raw)
    expected = encode(HistoryReply(frame_id, "general", 46, messages))
    assert json.loads(spliced) == json.loads(expected)
    assert spliced == expected  # the same spelling, since the stored frames came from encode
    assert parse_server_frame(spliced) == HistoryReply(frame_id, "general", 46, messages)


def test_encode_history_reply_does_not_reencode() -> None:
    # A stored frame with a different (but valid) spelling is copied byte for byte.
    stored = (
        '{"type": "message", "channel": "general", "seq": 1, "user": "a", "text": "x", "ts": 1}'
    )
    spliced = encode_history_reply(None, "general", 1, [stored])
    assert stored in spliced
    assert parse_server_frame(spliced) == HistoryReply(
        None, "general", 1, (Message("general", 1, "a", "x", 1.0),)
    )


@pytest.mark.parametrize(
    ("channel", "user", "text"),
    [
        ("general", "alice", "hi"),
        ("a-b_c", "bob.b", 'quotes " and \\ backslash and } brace ,"ts":'),
        ("x" * 80, "u", "ünïcödé 😀 \u2028 \x00 \t\n"),
    ],
)
@pytest.mark.parametrize(
    ("seq", "ts_text"),
    [(1, "1764331200.123"), (46, "1764331200.0"), (10**12, "1764331200"), (7, "1.5e9")],
)
def test_encode_message_parts(channel: str, user: str, text: str, seq: int, ts_text: str) -> None:
    prefix, middle, suffix = encode_message_parts(channel, user, text)
    assembled = prefix + str(seq) + middle + ts_text + suffix
    expected = encode(Message(channel, seq, user, text, float(ts_text)))
    assert json.loads(assembled) == json.loads(expected)
    assert list(json.loads(assembled)) == ["type", "channel", "seq", "user", "text", "ts"]
    if ts_text == repr(float(ts_text)):
        assert assembled == expected


@given(
    channel=st.from_regex(CHANNEL_NAME, fullmatch=True),
    user=st.text(min_size=1),
    text=st.text(),
    seq=st.integers(min_value=1, max_value=2**63),
    ts=st.floats(min_value=0, max_value=4e9),
)
def test_encode_message_parts_property(
    channel: str, user: str, text: str, seq: int, ts: float
) -> None:
    prefix, middle, suffix = encode_message_parts(channel, user, text)
    assembled = prefix + str(seq) + middle + repr(ts) + suffix
    assert assembled == encode(Message(channel, seq, user, text, ts))


# --------------------------------------------------------------------------- parse_server_frame


def srv(kind: str, base: dict[str, Any], **over: Any) -> str:
    """A server frame of ``kind`` as JSON: ``base`` with ``over`` applied (``_DROP`` removes)."""
    return _frame(kind, base, over)


MSG: dict[str, Any] = {"channel": "g", "seq": 1, "user": "a", "text": "x", "ts": 1}
WELCOME: dict[str, Any] = {"protocol": 1, "user": "a", "gateway": "g", "heartbeat_s": 10}
HIST: dict[str, Any] = {"channel": "g", "head": 1}

SERVER_REFUSED: list[tuple[str, str | bytes, ErrorCode]] = [
    ("binary", b'{"type":"pong"}', BAD),
    ("not json", "pong", BAD),
    ("array", "[]", BAD),
    ("no type", "{}", BAD),
    ("unknown type", '{"type":"shout"}', UNKNOWN),
    ("client-only type", '{"type":"ping"}', UNKNOWN),
    ("message seq a bool", srv("message", MSG, seq=True), BAD),
    ("message seq 0", srv("message", MSG, seq=0), BAD),
    ("message seq a float", srv("message", MSG, seq=1.0), BAD),
    ("message ts a string", srv("message", MSG, ts="1"), BAD),
    ("message ts NaN", srv("message", MSG, ts=float("nan")), BAD),
    ("message ts 1e999", srv("message", MSG, ts=0).replace('"ts": 0', '"ts": 1e999'), BAD),
    ("message without text", srv("message", MSG, text=_DROP), BAD),
    ("message bad channel", srv("message", MSG, channel="G"), BAD),
    ("ack without id", '{"type":"ack","channel":"g","seq":1,"ts":1}', BAD),
    ("ack id empty", '{"type":"ack","id":"","channel":"g","seq":1,"ts":1}', BAD),
    ("welcome without channels", srv("welcome", WELCOME), BAD),
    ("welcome channels a list", srv("welcome", WELCOME, channels=[]), BAD),
    ("welcome channel info a number", srv("welcome", WELCOME, channels={"g": 5}), BAD),
    (
        "welcome head negative",
        srv("welcome", WELCOME, channels={"g": {"head": -1, "epoch": "e"}}),
        BAD,
    ),
    ("welcome heartbeat 0", srv("welcome", WELCOME, heartbeat_s=0, channels={}), BAD),
    ("welcome without protocol", srv("welcome", WELCOME, protocol=_DROP, channels={}), BAD),
    ("history messages an object", srv("history", HIST, messages={}), BAD),
    ("history message without type", srv("history", HIST, messages=[MSG]), BAD),
    ("history message malformed", srv("history", HIST, messages=[{"type": "message"}]), BAD),
    ("presence without last_active", '{"type":"presence","user":"b","status":"online"}', BAD),
    (
        "presence_digest changes not presence",
        srv("presence_digest", {"since": 0, "until": 1}, changes=[1]),
        BAD,
    ),
    ("error unknown code", '{"type":"error","code":"oops","message":"m"}', BAD),
    ("pong id a number", '{"type":"pong","id":1}', BAD),
    ("reconnect without reason", '{"type":"reconnect"}', BAD),
]


@pytest.mark.parametrize(
    ("frame", "code"), [pytest.param(f, c, id=name) for name, f, c in SERVER_REFUSED]
)
def test_parse_server_frame_refuses(frame: str | bytes, code: ErrorCode) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_server_frame(frame)
    assert info.value.code == code


def test_parse_server_frame_is_lenient_where_it_should_be() -> None:
    # A whole-number ts, extra fields, and ids in any order are all fine.
    wire = '{"ts":1764331200,"type":"message","channel":"g","seq":3,"user":"a","text":"x","v":2}'
    assert parse_server_frame(wire) == Message("g", 3, "a", "x", 1764331200.0)
    welcome = parse_server_frame(encode(Welcome("a", "g", 10, {})))
    assert isinstance(welcome, Welcome)
    assert isinstance(welcome.heartbeat_s, float)


# --------------------------------------------------------------------------- round trips

channels = st.from_regex(CHANNEL_NAME, fullmatch=True)
ids = st.text(min_size=1, max_size=64)
opt_ids = st.none() | ids
words = st.text(min_size=1, max_size=20)
finite = st.floats(allow_nan=False, allow_infinity=False)
seqs = st.integers(min_value=1, max_value=2**63)
heads = st.integers(min_value=0, max_value=2**63)

messages = st.builds(Message, channels, seqs, words, st.text(max_size=50), finite)
presences = st.builds(Presence, words, st.sampled_from(["online", "offline"]), st.none() | finite)

server_frames: st.SearchStrategy[ServerFrame] = st.one_of(
    st.builds(
        Welcome,
        words,
        words,
        st.floats(min_value=0, exclude_min=True, allow_infinity=False),
        st.dictionaries(channels, st.builds(ChannelInfo, heads, words), max_size=5),
        st.integers(min_value=1, max_value=9),
    ),
    messages,
    st.builds(Ack, ids, channels, seqs, finite),
    st.builds(Reset, channels, heads, words, st.sampled_from(["epoch_changed", "too_far_behind"])),
    st.builds(HistoryReply, opt_ids, channels, heads, st.lists(messages, max_size=4).map(tuple)),
    st.builds(Joined, channels, heads, words, opt_ids),
    st.builds(Left, channels, opt_ids),
    st.builds(TypingEvent, channels, words),
    st.builds(Pong, opt_ids),
    presences,
    st.builds(PresenceDigest, st.lists(presences, max_size=4).map(tuple), finite, finite),
    st.builds(Error, st.sampled_from(ErrorCode), st.text(), opt_ids),
    st.builds(Reconnect, words),
)

client_frames: st.SearchStrategy[ClientFrame] = st.one_of(
    st.builds(
        Hello,
        words,
        st.dictionaries(channels, st.integers(min_value=0), max_size=5),
        st.dictionaries(channels, words, max_size=5),
    ),
    st.builds(Post, ids, channels, st.text(min_size=1, max_size=MAX_TEXT_CHARS)),
    st.builds(
        History,
        opt_ids,
        channels,
        st.integers(min_value=0),
        st.integers(min_value=1, max_value=MAX_HISTORY_LIMIT),
    ),
    st.builds(Join, opt_ids, channels),
    st.builds(Leave, opt_ids, channels),
    st.builds(Typing, channels, opt_ids),
    st.builds(Ping, opt_ids),
    st.builds(
        PresenceSub,
        st.lists(words, max_size=MAX_PRESENCE_USERS, unique=True).map(tuple),
        st.none() | st.floats(min_value=1, max_value=3600),
        opt_ids,
    ),
)


@given(server_frames)
def test_server_frames_round_trip(frame: ServerFrame) -> None:
    wire = encode(frame)
    assert parse_server_frame(wire) == frame
    assert frame_to_dict(frame) == json.loads(wire)


@given(client_frames)
def test_client_frames_round_trip(frame: ClientFrame) -> None:
    wire = encode_client(frame)
    assert parse_client_frame(wire) == frame
    assert frame_to_dict(frame) == json.loads(wire)
    assert next(iter(json.loads(wire))) == "type"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
FIELD_NAMES = [
    "id", "channel", "text", "token", "last_seen", "epochs", "after", "limit", "users",
    "digest_s",
]  # fmt: skip
CLIENT_TYPES = ["hello", "post", "history", "join", "leave", "typing", "ping", "presence_sub"]
frame_like = st.fixed_dictionaries(
    {"type": st.sampled_from(CLIENT_TYPES)},
    optional={name: json_values | channels | ids for name in FIELD_NAMES},
)


def _only_protocol_errors(data: str | bytes) -> None:
    try:
        parse_client_frame(data)
    except ProtocolError as err:
        assert err.code in (BAD, UNKNOWN, INVALID)
        assert err.id is None or 1 <= len(err.id) <= 64
        encode(err.as_frame()).encode("utf-8")


@settings(max_examples=300)
@given(st.text())
def test_parse_never_raises_other_errors_on_text(data: str) -> None:
    _only_protocol_errors(data)


@given(st.binary())
def test_binary_frames_are_always_bad_frames(data: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_client_frame(data)
    assert info.value.code == BAD


@settings(max_examples=300)
@given(json_values)
def test_parse_never_raises_other_errors_on_json(value: object) -> None:
    _only_protocol_errors(json.dumps(value))


@settings(max_examples=500)
@given(frame_like)
def test_parse_never_raises_other_errors_on_frame_like_objects(value: dict[str, Any]) -> None:
    _only_protocol_errors(json.dumps(value))


@settings(max_examples=200)
@given(json_values)
def test_parse_server_frame_never_raises_other_errors(value: object) -> None:
    for data in (json.dumps(value), json.dumps({"type": "welcome", "channels": value})):
        try:
            parse_server_frame(data)
        except ProtocolError as err:
            assert err.code in (BAD, UNKNOWN)


# --------------------------------------------------------------------------- close codes

DOCS = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"


def test_close_codes_are_the_contracts_numbers() -> None:
    assert {c.name: c.value for c in CloseCode} == {
        "NORMAL_CLOSURE": 1000,
        "ABNORMAL_CLOSURE": 1006,
        "MESSAGE_TOO_BIG": 1009,
        "SERVICE_RESTART": 1012,
        "TRY_AGAIN_LATER": 1013,
        "UNAUTHORIZED": 4001,
        "SILENT": 4002,
        "SLOW_CONSUMER": 4008,
    }


def test_every_close_code_the_docs_list_is_a_member() -> None:
    table = DOCS.read_text().split("## Close codes", 1)[1].split("\n## ", 1)[0]
    listed = {int(code) for code in re.findall(r"^\| (\d{4}) \|", table, re.MULTILINE)}
    assert listed == {1009, 1012, 1013, 4001, 4002, 4008}
    assert listed <= {c.value for c in CloseCode}


def test_a_close_code_is_the_number_on_the_wire() -> None:
    # What a WebSocket library reports is a plain int; records and logs hold the number.
    assert CloseCode(4008) is CloseCode.SLOW_CONSUMER
    assert CloseCode.UNAUTHORIZED == 4001 and CloseCode.SILENT == 4002
    assert 4008 in {CloseCode.SLOW_CONSUMER}
    assert json.dumps({"code": CloseCode.SERVICE_RESTART}) == '{"code": 1012}'
    assert f"{CloseCode.TRY_AGAIN_LATER}" == str(CloseCode.TRY_AGAIN_LATER) == "1013"
    with pytest.raises(ValueError):
        CloseCode(1008)  # policy violation: not a code labkit sends


# --------------------------------------------------------------------------- the package

PARTS = (frames, parsing, encoding)


def _defined_public_names(module: ModuleType) -> set[str]:
    """Public names a module binds at top level itself (not the ones it imports)."""
    assert module.__file__ is not None
    tree = ast.parse(Path(module.__file__).read_text())
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {name for name in names if not name.startswith("_")}


def test_the_package_exports_every_public_name_of_its_modules() -> None:
    from labkit.core import protocol

    defined = set().union(*(_defined_public_names(m) for m in PARTS))
    assert "CloseCode" in defined and "parse_client_frame" in defined and "encode" in defined
    assert set(protocol.__all__) == defined
    assert len(protocol.__all__) == len(set(protocol.__all__))
    for name in protocol.__all__:
        owner = next(m for m in PARTS if name in _defined_public_names(m))
        assert getattr(protocol, name) is getattr(owner, name), name


def test_the_old_import_path_star_exports_the_same_names() -> None:
    from labkit.core import protocol

    namespace: dict[str, Any] = {}
    exec("from labkit.protocol import *", namespace)
    exported = {name for name in namespace if name != "__builtins__"}
    assert exported == set(protocol.__all__)
    assert all(namespace[name] is getattr(protocol, name) for name in exported)
