"""Frame records: JSON lines that round-trip exactly, and the queries readers need."""

from __future__ import annotations

import json

from labkit.core.records import FrameRecord, Recording

T0 = 1_764_331_200.123


def sample() -> Recording:
    recording = Recording()
    recording.add(FrameRecord(T0, "alice#1", "alice", 1, "open", {"type": "welcome"}))
    recording.add(
        FrameRecord(T0 + 0.1, "alice#1", "alice", 1, "out", {"type": "post", "text": "héllo ✓"})
    )
    recording.extend(
        [
            FrameRecord(
                T0 + 0.2,
                "alice#1",
                "alice",
                1,
                "in",
                {"type": "ack", "id": "c-1", "seq": 1, "ts": T0 + 0.15},
            ),
            FrameRecord(
                T0 + 0.3,
                "bob#1",
                "bob",
                2,
                "in",
                {"type": "message", "seq": 1, "text": "héllo ✓", "nested": {"a": [1, None]}},
            ),
            FrameRecord(T0 + 0.4, "alice#1", "alice", 1, "in", {"type": "message", "seq": 1}),
            FrameRecord(T0 + 0.5, "bob#1", "bob", 2, "close", {"code": 4008, "reason": "slow"}),
        ]
    )
    return recording


def test_jsonl_round_trip_is_exact() -> None:
    recording = sample()
    text = recording.to_jsonl()
    assert text.count("\n") == len(recording) == 6
    assert all(json.loads(line)["client"] for line in text.splitlines())
    again = Recording.from_jsonl(text)
    assert again.records == recording.records
    assert again.to_jsonl() == text


def test_from_jsonl_skips_blank_lines() -> None:
    text = sample().to_jsonl()
    again = Recording.from_jsonl("\n" + text.replace("\n", "\n  \n"))
    assert again.records == sample().records


def test_an_empty_recording_is_an_empty_file() -> None:
    assert Recording().to_jsonl() == ""
    assert len(Recording.from_jsonl("")) == 0


def test_a_record_without_a_frame_gets_an_empty_one() -> None:
    record = FrameRecord(1.0, "carol#1", "carol", 1, "close")
    assert record.frame == {}
    assert Recording.from_jsonl(Recording([record]).to_jsonl()).records == [record]


def test_received_keeps_only_incoming_frames_filtered_by_client_and_type() -> None:
    recording = sample()
    assert [(r.client, r.frame["type"]) for r in recording.received()] == [
        ("alice#1", "ack"),
        ("bob#1", "message"),
        ("alice#1", "message"),
    ]
    assert [r.t for r in recording.received("alice#1")] == [T0 + 0.2, T0 + 0.4]
    assert [r.client for r in recording.received(type="message")] == ["bob#1", "alice#1"]
    assert [r.t for r in recording.received("alice#1", "message")] == [T0 + 0.4]
    assert recording.received("alice#1", "welcome") == [], "open is not 'in'"
    assert recording.received("nobody") == []


def test_clients_are_listed_once_sorted_and_iteration_is_in_order() -> None:
    recording = sample()
    assert recording.clients() == ["alice#1", "bob#1"]
    assert [r.kind for r in recording] == ["open", "out", "in", "in", "in", "close"]
