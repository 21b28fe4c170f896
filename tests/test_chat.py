"""``labkit chat`` without a terminal or a network: the printer, the commands, the state file.

:class:`FakeClient` has the attributes and async methods of
:class:`labkit.server.client.Client` that the chat uses, answers from an in-memory channel
log, and records every request it gets.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import pytest

from labkit.cli.chat import HELP, ChatPrinter, handle_line, load_resume_state, save_resume_state
from labkit.core import protocol as p
from labkit.core.client_state import ClientState
from labkit.server.client import Client

NOW = 1_764_331_200.0


def msg(channel: str, seq: int, user: str = "bob", text: str | None = None) -> p.Message:
    return p.Message(channel, seq, user, text if text is not None else f"t{seq}", NOW + seq)


class FakeClient:
    def __init__(self, user: str = "alice") -> None:
        self.user = user
        self.session = 0
        self.welcome: p.Welcome | None = None
        self.gateway_url: str | None = None
        self.messages: dict[str, list[p.Message]] = {}
        self.typing_events: list[p.TypingEvent] = []
        self.errors: list[p.Error] = []
        self.state = ClientState()
        self.log: dict[str, list[p.Message]] = {}
        self.calls: list[tuple[Any, ...]] = []

    def connect_to(self, gateway: str, url: str) -> None:
        self.session += 1
        self.gateway_url = url
        self.welcome = p.Welcome(self.user, gateway, 10, {})

    async def post(self, channel: str, text: str) -> p.Ack:
        self.calls.append(("post", channel, text))
        seq = len(self.log.setdefault(channel, [])) + 1
        self.log[channel].append(msg(channel, seq, self.user, text))
        return p.Ack(f"c-{len(self.calls)}", channel, seq, NOW)

    async def join(self, channel: str) -> p.Joined:
        self.calls.append(("join", channel))
        return p.Joined(channel, len(self.log.get(channel, [])), "e1", "j1")

    async def leave(self, channel: str) -> p.Left:
        self.calls.append(("leave", channel))
        return p.Left(channel, "l1")

    async def history(self, channel: str, after: int = 0, limit: int = 100) -> p.HistoryReply:
        self.calls.append(("history", channel, after, limit))
        log = self.log.get(channel, [])
        page = tuple(m for m in log if m.seq > after)[:limit]
        return p.HistoryReply("h1", channel, len(log), page)


def as_client(fake: FakeClient) -> Client:
    return cast(Client, fake)


# -- ChatPrinter ------------------------------------------------------------------------------


def printer_for(fake: FakeClient) -> tuple[ChatPrinter, list[str]]:
    lines: list[str] = []
    return ChatPrinter(as_client(fake), lines.append), lines


def test_the_printer_prints_each_new_message_once_per_channel() -> None:
    fake = FakeClient()
    printer, lines = printer_for(fake)
    printer.poll()
    assert lines == []
    fake.messages["general"] = [msg("general", 1), msg("general", 2, "carol", "hi there")]
    printer.poll()
    assert lines == ["#general 1 <bob> t1", "#general 2 <carol> hi there"]
    printer.poll()
    assert len(lines) == 2, "nothing printed twice"
    fake.messages["general"].append(msg("general", 3))
    fake.messages["eng"] = [msg("eng", 7)]
    printer.poll()
    assert lines[2:] == ["#general 3 <bob> t3", "#eng 7 <bob> t7"]


def test_the_printer_announces_connects_and_reconnects() -> None:
    fake = FakeClient()
    printer, lines = printer_for(fake)
    fake.connect_to("gw-1", "ws://127.0.0.1:8700/ws")
    printer.poll()
    printer.poll()
    fake.connect_to("gw-2", "ws://127.0.0.1:8701/ws")
    printer.poll()
    assert lines == [
        "-- connected to gw-1 as alice (ws://127.0.0.1:8700/ws)",
        "-- reconnected to gw-2 as alice (ws://127.0.0.1:8701/ws)",
    ]


def test_the_printer_shows_typing_once_and_only_errors_nobody_asked_for() -> None:
    fake = FakeClient()
    printer, lines = printer_for(fake)
    fake.typing_events.append(p.TypingEvent("general", "bob"))
    fake.errors.append(p.Error(p.ErrorCode.NOT_MEMBER, "not yours", "c-1"))  # a reply: raised
    fake.errors.append(p.Error(p.ErrorCode.RATE_LIMITED, "slow down"))
    printer.poll()
    printer.poll()
    assert lines == ["   bob is typing… (#general)", "!! rate_limited: slow down"]
    fake.typing_events.append(p.TypingEvent("eng", "carol"))
    printer.poll()
    assert lines[2:] == ["   carol is typing… (#eng)"]


# -- handle_line ----------------------------------------------------------------------------


async def run(fake: FakeClient, line: str, state: dict[str, str]) -> str | None:
    return await handle_line(as_client(fake), line, state)


async def test_a_plain_line_is_posted_to_the_current_channel() -> None:
    fake, state = FakeClient(), {"channel": "general"}
    assert await run(fake, "hello there", state) is None
    assert await run(fake, "   ", state) is None
    assert await run(fake, "", state) is None
    assert fake.calls == [("post", "general", "hello there")]


async def test_channel_switches_where_lines_are_posted() -> None:
    fake, state = FakeClient(), {"channel": "general"}
    assert await run(fake, "/channel eng", state) == "-- posting to #eng"
    await run(fake, "hi eng", state)
    assert state == {"channel": "eng"}
    assert fake.calls == [("post", "eng", "hi eng")]


async def test_join_joins_and_posts_there_and_leave_leaves() -> None:
    fake, state = FakeClient(), {"channel": "general"}
    fake.log["design"] = [msg("design", 1), msg("design", 2)]
    out = await run(fake, "/join design", state)
    assert out == "-- joined #design (head 2); posting there"
    assert state["channel"] == "design"
    assert await run(fake, "/leave design", state) == "-- left #design"
    assert fake.calls == [("join", "design"), ("leave", "design")]


async def test_history_shows_the_last_n_of_a_channel() -> None:
    fake, state = FakeClient(), {"channel": "general"}
    fake.log["general"] = [msg("general", seq) for seq in range(1, 11)]
    fake.log["eng"] = [msg("eng", 1), msg("eng", 2)]
    out = await run(fake, "/history 3", state)
    assert out == "\n".join(
        [
            "-- #general, head 10",
            "#general 8 <bob> t8",
            "#general 9 <bob> t9",
            "#general 10 <bob> t10",
        ]
    )
    assert fake.calls == [("history", "general", 0, 1), ("history", "general", 7, 3)]
    fake.calls.clear()
    out = await run(fake, "/history eng", state)  # default: the last 20
    assert out == "-- #eng, head 2\n#eng 1 <bob> t1\n#eng 2 <bob> t2"
    assert fake.calls == [("history", "eng", 0, 1), ("history", "eng", 0, 20)]
    fake.calls.clear()
    await run(fake, "/history general 5000", state)
    assert fake.calls[-1] == ("history", "general", 0, 1000), "a page is at most 1000"


async def test_who_lists_channels_with_the_last_seq_seen() -> None:
    fake, state = FakeClient(), {"channel": "general"}
    assert await run(fake, "/who", state) == "-- alice in no channels"
    fake.state.on_welcome({"random": (3, "e1"), "eng": (12, "e1")})
    assert await run(fake, "/who", state) == "-- alice in #eng@12, #random@3"


@pytest.mark.parametrize(
    "line", ["/help", "/nope", "/channel", "/channel a b", "/join", "/leave", "/history a 1 2"]
)
async def test_unknown_or_malformed_commands_print_help_and_do_nothing(line: str) -> None:
    fake, state = FakeClient(), {"channel": "general"}
    assert await run(fake, line, state) == HELP
    assert fake.calls == [] and state == {"channel": "general"}


async def test_quit_raises_system_exit() -> None:
    fake = FakeClient()
    with pytest.raises(SystemExit) as caught:
        await run(fake, "/quit", {"channel": "general"})
    assert caught.value.code == 0
    assert fake.calls == []


# -- the resume state file ------------------------------------------------------------------


def test_resume_state_round_trips_through_the_file(tmp_path: Path) -> None:
    before = FakeClient()
    before.state.on_welcome({"general": (41, "k3x9"), "eng": (7, "k3x9")})
    before.state.on_message("general", 42)
    path = tmp_path / "nested" / "chat-alice.json"
    save_resume_state(as_client(before), path)
    assert [f.name for f in path.parent.iterdir()] == ["chat-alice.json"], "no temp file left"
    after = FakeClient()
    load_resume_state(as_client(after), path)
    assert after.state.hello_fields() == (
        {"general": 42, "eng": 7},
        {"general": "k3x9", "eng": "k3x9"},
    )


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[1, 2]",
        '{"last_seen": {"general": 5}}',
        '{"last_seen": {"general": "five"}, "epochs": {}}',
        '{"last_seen": [1], "epochs": {}}',
        '{"last_seen": {"general": 5}, "epochs": null}',
        "",
    ],
    ids=["not-json", "a-list", "no-epochs", "bad-seq", "seen-list", "epochs-null", "empty"],
)
def test_a_corrupt_state_file_is_ignored_whole(tmp_path: Path, content: str) -> None:
    path = tmp_path / "chat-alice.json"
    path.write_text(content)
    fake = FakeClient()
    fake.state.last_seen["random"] = 3
    load_resume_state(as_client(fake), path)
    assert fake.state.hello_fields() == ({"random": 3}, {})


def test_a_missing_state_file_changes_nothing(tmp_path: Path) -> None:
    fake = FakeClient()
    load_resume_state(as_client(fake), tmp_path / "absent.json")
    assert fake.state.hello_fields() == ({}, {})


def test_saving_replaces_the_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "chat-alice.json"
    path.write_text('{"last_seen": {"old": 1}, "epochs": {"old": "e0"}}')
    fake = FakeClient()
    fake.state.on_welcome({"general": (2, "e1")})
    save_resume_state(as_client(fake), path)
    assert json.loads(path.read_text()) == {
        "last_seen": {"general": 2},
        "epochs": {"general": "e1"},
    }
