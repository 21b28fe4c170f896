"""Sets last_seen to every incoming seq, even an old one."""

from __future__ import annotations

from labkit.core.client_state import DUPLICATE, GAP, NEW, Verdict

EXERCISE = "ex04_resume"
MISTAKE = "a late duplicate moves last_seen backwards, so the next resume repeats old messages"
CAUGHT_BY = ("duplicate",)


class ClientState:
    def __init__(self) -> None:
        self.last_seen: dict[str, int] = {}
        self.epochs: dict[str, str] = {}

    def hello_fields(self) -> tuple[dict[str, int], dict[str, str]]:
        return dict(self.last_seen), dict(self.epochs)

    def on_welcome(self, channels: dict[str, tuple[int, str]]) -> None:
        for channel in [c for c in self.last_seen if c not in channels]:
            self.on_left(channel)
        for channel, (head, epoch) in channels.items():
            if channel not in self.last_seen:
                self.last_seen[channel] = head
                self.epochs[channel] = epoch
            self.epochs.setdefault(channel, epoch)

    def on_message(self, channel: str, seq: int) -> Verdict:
        last = self.last_seen.get(channel, 0)
        self.last_seen[channel] = seq  # "the latest message we got"
        if seq <= last:
            return Verdict(DUPLICATE)
        if seq == last + 1:
            return Verdict(NEW)
        return Verdict(GAP, (last + 1, seq - 1))

    def on_reset(self, channel: str, head: int, epoch: str) -> None:
        self.last_seen[channel] = head
        self.epochs[channel] = epoch

    def on_joined(self, channel: str, head: int, epoch: str) -> None:
        if channel not in self.last_seen:
            self.on_reset(channel, head, epoch)

    def on_left(self, channel: str) -> None:
        self.last_seen.pop(channel, None)
        self.epochs.pop(channel, None)
