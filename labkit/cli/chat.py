"""``labkit chat``: a terminal client on top of :class:`labkit.server.client.Client`.

It prints every message as ``#channel seq <user> text`` the moment it arrives (live or
gap-filled after a reconnect), typing indicators as ``bob is typing…``, and connection changes.
Lines typed are posted to the current channel; lines starting with ``/`` are commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from labkit.core import protocol as p
from labkit.core.auth import make_token
from labkit.server.client import Client, ClientError, Unauthorized

HELP = """commands:
  /channel NAME       post to NAME from now on
  /join NAME          join (or create) a channel
  /leave NAME         leave a channel
  /history [NAME] [N] show the last N messages (default: current channel, 20)
  /who                channels you are in, with the last seq seen
  /quit               leave"""


def format_message(m: p.Message) -> str:
    return f"#{m.channel} {m.seq} <{m.user}> {m.text}"


class ChatPrinter:
    """Watches a client's lists and prints what is new; separated from I/O for testing."""

    def __init__(self, client: Client, write: Callable[[str], None]) -> None:
        self.client = client
        self.write = write
        self._printed: dict[str, int] = {}
        self._typing_seen = 0
        self._session = 0
        self._errors_seen = 0

    def poll(self) -> None:
        c = self.client
        if c.session != self._session:
            self._session = c.session
            gateway = c.welcome.gateway if c.welcome else "?"
            verb = "connected" if self._session == 1 else "reconnected"
            self.write(f"-- {verb} to {gateway} as {c.user} ({c.gateway_url})")
        for channel, messages in c.messages.items():
            start = self._printed.get(channel, 0)
            for m in messages[start:]:
                self.write(format_message(m))
            self._printed[channel] = len(messages)
        for event in c.typing_events[self._typing_seen :]:
            self.write(f"   {event.user} is typing… (#{event.channel})")
        self._typing_seen = len(c.typing_events)
        for error in c.errors[self._errors_seen :]:
            if error.id is None:
                self.write(f"!! {error.code}: {error.message}")
        self._errors_seen = len(c.errors)


async def _read_lines(queue: asyncio.Queue[str | None]) -> None:
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            await queue.put(None)
            return
        await queue.put(line.rstrip("\n"))


async def handle_line(client: Client, line: str, state: dict[str, str]) -> str | None:
    """Act on one typed line; returns text to print, or None. Raises SystemExit on /quit."""
    if not line.strip():
        return None
    if not line.startswith("/"):
        ack = await client.post(state["channel"], line)
        return None if ack.seq else "?"
    command, *rest = line.split()
    if command == "/quit":
        raise SystemExit(0)
    if command == "/channel" and len(rest) == 1:
        state["channel"] = rest[0]
        return f"-- posting to #{rest[0]}"
    if command == "/join" and len(rest) == 1:
        joined = await client.join(rest[0])
        state["channel"] = joined.channel
        return f"-- joined #{joined.channel} (head {joined.head}); posting there"
    if command == "/leave" and len(rest) == 1:
        await client.leave(rest[0])
        return f"-- left #{rest[0]}"
    if command == "/history" and len(rest) <= 2:
        channel = rest[0] if rest and not rest[0].isdigit() else state["channel"]
        count = int(rest[-1]) if rest and rest[-1].isdigit() else 20
        head = (await client.history(channel, 0, 1)).head
        reply = await client.history(
            channel, max(0, head - count), max(1, min(count, p.MAX_HISTORY_LIMIT))
        )
        lines = [format_message(m) for m in reply.messages]
        return "\n".join([f"-- #{channel}, head {reply.head}", *lines])
    if command == "/who":
        seen = ", ".join(f"#{ch}@{seq}" for ch, seq in sorted(client.state.last_seen.items()))
        return f"-- {client.user} in {seen or 'no channels'}"
    return HELP


def load_resume_state(client: Client, path: Path) -> None:
    """Seed ``last_seen``/``epochs`` from the file an earlier ``labkit chat`` left behind, so a
    restarted chat resumes where it stopped and prints what it missed (gap-fill)."""
    try:
        saved = json.loads(path.read_text())
        last_seen = {str(k): int(v) for k, v in saved["last_seen"].items()}
        epochs = {str(k): str(v) for k, v in saved["epochs"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return
    client.state.last_seen.update(last_seen)
    client.state.epochs.update(epochs)


def save_resume_state(client: Client, path: Path) -> None:
    """Write ``last_seen``/``epochs`` atomically (a killed chat leaves a whole file or none)."""
    last_seen, epochs = client.state.hello_fields()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"last_seen": last_seen, "epochs": epochs}))
    os.replace(tmp, path)


async def run_chat(
    user: str, urls: list[str], secret: str, channel: str, state_file: Path | None = None
) -> int:
    client = Client(user, urls, lambda: make_token(user, secret, now=time.time()))
    if state_file is not None:
        load_resume_state(client, state_file)
    try:
        await client.connect()
    except Unauthorized as exc:
        print(f"labkit chat: the gateway refused the token: {exc.message}", file=sys.stderr)
        return 1
    except TimeoutError:
        print(
            f"labkit chat: no gateway answered at {', '.join(urls)}; is 'labkit serve' running?",
            file=sys.stderr,
        )
        await client.close()
        return 1
    printer = ChatPrinter(client, print)
    state = {"channel": channel}
    print(f"-- type to post to #{channel}; /help for commands")
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    reader = asyncio.create_task(_read_lines(lines))
    saved: dict[str, int] = {}
    try:
        while True:
            printer.poll()
            if state_file is not None and client.state.last_seen != saved:
                saved = dict(client.state.last_seen)
                save_resume_state(client, state_file)
            try:
                line = await asyncio.wait_for(lines.get(), 0.1)
            except TimeoutError:
                continue
            if line is None:
                break
            try:
                out = await handle_line(client, line, state)
            except (ClientError, TimeoutError, ConnectionError) as exc:
                out = f"!! {exc}"
            if out:
                print(out)
    except SystemExit:
        pass
    finally:
        reader.cancel()
        printer.poll()
        with contextlib.suppress(Exception):
            await client.close()
    return 0
