"""Bus topics and the typed payloads gateways exchange on them (no I/O).

Three kinds of topic (docs/architecture.md, "The bus"):

* ``labkit:bus:ch:<channel>``: the channel's ``message`` frames (exactly as stored, so a
  gateway writes them to clients without re-encoding) and ``typing`` frames;
* :data:`CONTROL_TOPIC`: membership changes, so a user's other connections on every gateway
  hear ``joined``/``left`` (PROTOCOL.md, "join / leave");
* :data:`PRESENCE_TOPIC`: presence transitions, announced once by the gateway that saw them.

Past :func:`decode` nothing is a loose dict: a payload becomes a :class:`ChannelMessage`,
:class:`ChannelTyping`, :class:`MembershipChange` or :class:`~labkit.core.presence.Transition`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from labkit.core.presence import OFFLINE, ONLINE, Transition

CHANNEL_PREFIX = "labkit:bus:ch:"
CONTROL_TOPIC = "labkit:bus:ctl"
PRESENCE_TOPIC = "labkit:bus:presence"


def channel_topic(channel: str) -> str:
    """The bus topic that carries a channel's ``message`` and ``typing`` frames."""
    return f"{CHANNEL_PREFIX}{channel}"


def topic_channel(topic: str) -> str | None:
    """The inverse of :func:`channel_topic`; None for other topics."""
    return topic[len(CHANNEL_PREFIX) :] if topic.startswith(CHANNEL_PREFIX) else None


@dataclass(frozen=True, slots=True)
class ChannelMessage:
    """A stored ``message`` frame published on its channel's topic; ``raw`` is sent as is."""

    channel: str
    seq: int
    raw: str


@dataclass(frozen=True, slots=True)
class ChannelTyping:
    """A ``typing`` frame for the channel's other members; ``raw`` is sent as is."""

    channel: str
    user: str
    raw: str


@dataclass(frozen=True, slots=True)
class MembershipChange:
    """``user`` joined or left ``channel`` through connection ``origin`` (which was answered
    directly); every other connection of the user hears it."""

    kind: str
    """``joined`` or ``left``."""
    user: str
    channel: str
    origin: str
    head: int = 0
    epoch: str = ""

    def encode(self) -> str:
        payload: dict[str, object] = {
            "type": self.kind,
            "user": self.user,
            "channel": self.channel,
            "origin": self.origin,
        }
        if self.kind == "joined":
            payload.update(head=self.head, epoch=self.epoch)
        return json.dumps(payload, separators=(",", ":"))


BusPayload = ChannelMessage | ChannelTyping | MembershipChange | Transition


def encode_transition(t: Transition) -> str:
    """The payload published on :data:`PRESENCE_TOPIC` for ``t`` (compact JSON)."""
    return json.dumps(
        {"user": t.user, "status": t.status, "last_active": t.last_active, "at": t.at},
        separators=(",", ":"),
    )


def decode_transition(payload: str) -> Transition:
    """Parse a :data:`PRESENCE_TOPIC` payload; ``ValueError`` if it is not one."""
    t = decode(PRESENCE_TOPIC, payload)
    if not isinstance(t, Transition):
        raise ValueError(f"bad presence payload: {payload[:80]!r}")
    return t


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _transition(obj: dict[str, object]) -> Transition | None:
    user, status, at = obj.get("user"), obj.get("status"), _number(obj.get("at"))
    last = obj.get("last_active")
    if not isinstance(user, str) or status not in (ONLINE, OFFLINE) or at is None:
        return None
    if last is not None and _number(last) is None:
        return None
    return Transition(user, str(status), _number(last), at)


def _membership(obj: dict[str, object]) -> MembershipChange | None:
    kind, user = obj.get("type"), obj.get("user")
    channel, origin = obj.get("channel"), obj.get("origin")
    if kind not in ("joined", "left") or not isinstance(user, str):
        return None
    if not isinstance(channel, str) or not isinstance(origin, str):
        return None
    head, epoch = obj.get("head", 0), obj.get("epoch", "")
    if not isinstance(head, int) or not isinstance(epoch, str):
        return None
    return MembershipChange(str(kind), user, channel, origin, head, epoch)


def _message_fast(channel: str, payload: str) -> ChannelMessage | None:
    """A stored message frame as labkit encodes it (``encode_message_parts``) has its seq at a
    known place: read it without parsing the whole frame, once per gateway and message, on
    the fanout's hot path. Anything else goes through the full parse."""
    prefix = f'{{"type":"message","channel":{json.dumps(channel)},"seq":'
    if not payload.startswith(prefix) or not payload.endswith("}"):
        return None
    end = payload.find(",", len(prefix))
    digits = payload[len(prefix) : end]
    return ChannelMessage(channel, int(digits), payload) if digits.isdigit() else None


def decode(topic: str, payload: str) -> BusPayload | None:
    """Parse one bus payload; None for anything malformed (logged by the caller, never fatal:
    a bad payload on a shared bus must not take a gateway down)."""
    channel = topic_channel(topic)
    if channel is not None:
        fast = _message_fast(channel, payload)
        if fast is not None:
            return fast
    try:
        obj = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    if topic == PRESENCE_TOPIC:
        return _transition(obj)
    if topic == CONTROL_TOPIC:
        return _membership(obj)
    if channel is None:
        return None
    kind = obj.get("type")
    if kind == "message" and isinstance(obj.get("seq"), int):
        return ChannelMessage(channel, int(obj["seq"]), payload)
    if kind == "typing" and isinstance(obj.get("user"), str):
        return ChannelTyping(channel, str(obj["user"]), payload)
    return None
