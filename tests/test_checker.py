"""The invariant checker, on recordings built by hand: one per violation kind, and a clean one."""

from __future__ import annotations

from typing import Any

import pytest

from labkit.core.records import FrameRecord, Recording
from labkit.lab.checker import KINDS, LostEpoch, Report, Violation, check


class Script:
    """Builds a recording the way a client would write it, one line per frame."""

    def __init__(self) -> None:
        self.recording = Recording()
        self.t = 0.0

    def at(self, t: float) -> Script:
        self.t = t
        return self

    def _add(self, client: str, session: int, kind: Any, frame: dict[str, Any]) -> Script:
        user = client.split("#")[0]
        self.recording.add(FrameRecord(self.t, client, user, session, kind, frame))
        return self

    def hello(
        self,
        client: str,
        session: int,
        last_seen: dict[str, int] | None = None,
        epochs: dict[str, str] | None = None,
    ) -> Script:
        frame: dict[str, Any] = {"type": "hello", "token": "t"}
        if last_seen is not None:
            frame["last_seen"] = last_seen
        if epochs is not None:
            frame["epochs"] = epochs
        return self._add(client, session, "out", frame)

    def welcome(self, client: str, session: int, epoch: str = "e1", **heads: int) -> Script:
        channels = {name: {"head": head, "epoch": epoch} for name, head in heads.items()}
        self._add(
            client,
            session,
            "in",
            {
                "type": "welcome",
                "user": client.split("#")[0],
                "gateway": "gw-1",
                "heartbeat_s": 10,
                "channels": channels,
                "protocol": 1,
            },
        )
        return self._add(client, session, "open", {})

    def msg(
        self,
        client: str,
        session: int,
        channel: str,
        seq: int,
        user: str = "alice",
        text: str | None = None,
    ) -> Script:
        frame = {
            "type": "message",
            "channel": channel,
            "seq": seq,
            "user": user,
            "text": text if text is not None else f"m{seq}",
            "ts": self.t - 0.01,
        }
        return self._add(client, session, "in", frame)

    def post(self, client: str, session: int, pid: str, channel: str, text: str) -> Script:
        return self._add(
            client, session, "out", {"type": "post", "id": pid, "channel": channel, "text": text}
        )

    def ack(self, client: str, session: int, pid: str, channel: str, seq: int) -> Script:
        return self._add(
            client,
            session,
            "in",
            {"type": "ack", "id": pid, "channel": channel, "seq": seq, "ts": self.t},
        )

    def frame(self, client: str, session: int, frame: dict[str, Any]) -> Script:
        return self._add(client, session, "in", frame)

    def reset(self, client: str, session: int, channel: str, head: int, epoch: str) -> Script:
        frame = {"type": "reset", "channel": channel, "head": head, "epoch": epoch}
        return self._add(client, session, "in", dict(frame, reason="epoch_changed"))

    def close(self, client: str, session: int) -> Script:
        return self._add(client, session, "close", {"code": 1006, "reason": "cut"})


def stored(channel: str, *seqs: int, user: str = "alice", ts: float = 0.0) -> dict[str, Any]:
    return {
        channel: [
            {
                "type": "message",
                "channel": channel,
                "seq": s,
                "user": user,
                "text": f"m{s}",
                "ts": ts,
            }
            for s in seqs
        ]
    }


def only(report: Report, kind: str) -> Violation:
    found = [v for v in report.violations if v.kind == kind]
    assert len(found) == 1, report.render()
    return found[0]


def assert_violation(
    v: Violation, kind: str, user: str | None, channel: str, seq: int | None
) -> None:
    assert (v.kind, v.user, v.channel, v.seq) == (kind, user, channel, seq), v
    assert channel in v.detail and (seq is None or str(seq) in v.detail)
    if user is not None:
        assert user in v.detail


def clean_script() -> Script:
    s = Script()
    s.at(0.0).hello("alice#1", 1).welcome("alice#1", 1, general=0)
    s.at(0.0).hello("bob#1", 1).welcome("bob#1", 1, general=0)
    s.at(1.0).post("alice#1", 1, "a1", "general", "m1")
    s.at(1.01).ack("alice#1", 1, "a1", "general", 1).msg("alice#1", 1, "general", 1)
    s.msg("bob#1", 1, "general", 1)
    s.at(1.5).post("alice#1", 1, "a2", "general", "m2")
    s.at(1.51).ack("alice#1", 1, "a2", "general", 2).msg("alice#1", 1, "general", 2)
    s.msg("bob#1", 1, "general", 2)
    # bob reconnects, resumes from last_seen 2 and is gap-filled 3
    s.at(2.0).close("bob#1", 1)
    s.at(2.2).post("alice#1", 1, "a3", "general", "m3")
    s.at(2.21).ack("alice#1", 1, "a3", "general", 3).msg("alice#1", 1, "general", 3)
    s.at(2.5).hello("bob#1", 2, {"general": 2}).welcome("bob#1", 2, general=3)
    s.msg("bob#1", 2, "general", 3)
    s.at(9.0)
    return s


def test_clean_recording_is_ok() -> None:
    s = clean_script()
    report = check(
        s.recording, stored("general", 1, 2, 3), end_t=9.0, bus_messages=6, faults={"cut": 1}
    )
    assert report.ok, report.render()
    assert report.messages_checked == 3
    assert report.posts_acked == 3
    assert report.deliveries == 6
    assert report.bus_messages_per_post == 2.0
    assert set(report.latency) == {"p50", "p95", "p99", "max"}
    assert report.render().startswith(":valid? true")
    assert report.to_dict()["valid"] is True


def test_store_gap_and_duplicate() -> None:
    store = stored("general", 1, 2, 4)
    store["general"].append(
        {
            "type": "message",
            "channel": "general",
            "seq": 2,
            "user": "bob",
            "text": "other",
            "ts": 0.0,
        }
    )
    report = check(Recording(), store)
    assert_violation(only(report, "store_gap"), "store_gap", None, "general", 3)
    assert_violation(only(report, "store_duplicate"), "store_duplicate", "bob", "general", 2)


def test_duplicate() -> None:
    s = Script().hello("bob#1", 1).welcome("bob#1", 1, general=0)
    s.at(1.0).msg("bob#1", 1, "general", 1).at(1.2).msg("bob#1", 1, "general", 1)
    report = check(s.recording, stored("general", 1))
    assert_violation(only(report, "duplicate"), "duplicate", "bob", "general", 1)


def test_same_seq_in_two_sessions_is_not_a_duplicate() -> None:
    s = Script().hello("bob#1", 1).welcome("bob#1", 1, general=0)
    s.at(1.0).msg("bob#1", 1, "general", 1).close("bob#1", 1)
    s.at(1.5).hello("bob#1", 2).welcome("bob#1", 2, general=0).msg("bob#1", 2, "general", 1)
    assert check(s.recording, stored("general", 1)).ok


def test_out_of_order() -> None:
    s = Script().hello("bob#1", 1).welcome("bob#1", 1, general=0)
    s.at(1.0).msg("bob#1", 1, "general", 2).msg("bob#1", 1, "general", 1)
    report = check(s.recording, stored("general", 1, 2))
    assert_violation(only(report, "out_of_order"), "out_of_order", "bob", "general", 1)
    # receiving 2 before 1 is also a gap at 1
    assert_violation(only(report, "gap"), "gap", "bob", "general", 1)


def test_gap_after_resume_point() -> None:
    s = Script().hello("bob#2", 2, {"general": 16}).welcome("bob#2", 2, general=18)
    s.at(3.0).msg("bob#2", 2, "general", 19)
    report = check(s.recording, stored("general", *range(1, 20)), end_t=3.0)
    v = only(report, "gap")
    assert_violation(v, "gap", "bob", "general", 17)
    assert "17-18" in v.detail


def test_welcome_head_is_the_resume_point_without_last_seen() -> None:
    s = Script().hello("bob#1", 1).welcome("bob#1", 1, general=18)
    s.at(1.0).msg("bob#1", 1, "general", 19)
    assert check(s.recording, stored("general", *range(1, 20)), end_t=1.0).ok


def test_reset_moves_the_resume_point() -> None:
    s = Script().hello("bob#1", 1, {"general": 2}).welcome("bob#1", 1, general=2000)
    s.frame(
        "bob#1",
        1,
        {
            "type": "reset",
            "channel": "general",
            "head": 2000,
            "epoch": "e1",
            "reason": "too_far_behind",
        },
    )
    s.at(1.0).msg("bob#1", 1, "general", 2001)
    assert check(s.recording, stored("general", *range(1, 2002)), end_t=1.0).ok


def test_joined_and_left_bound_tracking() -> None:
    s = Script().hello("bob#1", 1).welcome("bob#1", 1, general=0)
    s.at(1.0).frame(
        "bob#1", 1, {"type": "joined", "id": "j1", "channel": "eng", "head": 5, "epoch": "e1"}
    )
    s.at(1.5).msg("bob#1", 1, "eng", 7)
    report = check(s.recording, stored("eng", *range(1, 8)), end_t=1.5)
    assert_violation(only(report, "gap"), "gap", "bob", "eng", 6)

    s = Script().hello("bob#1", 1).welcome("bob#1", 1, eng=0)
    s.at(1.0).msg("bob#1", 1, "eng", 1)
    s.at(2.0).frame("bob#1", 1, {"type": "left", "id": "l1", "channel": "eng"})
    # seq 2 was stored after bob left: not owed
    report = check(
        s.recording,
        {"eng": stored("eng", 1, ts=0.5)["eng"] + stored("eng", 2, ts=2.5)["eng"]},
        end_t=10.0,
    )
    assert report.ok, report.render()


def test_acked_missing() -> None:
    s = Script().hello("alice#1", 1).welcome("alice#1", 1, general=0)
    s.at(1.0).post("alice#1", 1, "a1", "general", "m1").ack("alice#1", 1, "a1", "general", 1)
    s.post("alice#1", 1, "a2", "general", "hello").ack("alice#1", 1, "a2", "general", 2)
    s.msg("alice#1", 1, "general", 1)
    report = check(s.recording, {"general": []}, end_t=1.0)
    missing = [v for v in report.violations if v.kind == "acked_missing"]
    assert len(missing) == 2
    assert_violation(missing[0], "acked_missing", "alice", "general", 1)

    # stored, but with another text than the post
    report = check(s.recording, stored("general", 1, 2), end_t=1.0)
    v = only(report, "acked_missing")
    assert_violation(v, "acked_missing", "alice", "general", 2)
    assert "'hello'" in v.detail


def test_not_delivered() -> None:
    s = Script().at(3.1).hello("bob#2", 2, {"general": 16}).welcome("bob#2", 2, general=16)
    s.at(4.0).msg("bob#2", 2, "general", 17)
    s.at(9.8).close("bob#2", 2)
    # seq 18 stored at 5.0 s (owed: 5.0 <= 9.8 - 2), seq 19 at 8.5 s (not owed yet)
    store = {
        "general": stored("general", *range(1, 18), ts=1.0)["general"]
        + stored("general", 18, ts=5.0)["general"]
        + stored("general", 19, ts=8.5)["general"]
    }
    report = check(s.recording, store)
    v = only(report, "not_delivered")
    assert_violation(v, "not_delivered", "bob", "general", 18)
    assert "3.10 s to 9.80 s" in v.detail


def test_not_delivered_uses_ack_time() -> None:
    s = Script().hello("bob#1", 1).welcome("bob#1", 1, general=0)
    s.hello("alice#1", 1).welcome("alice#1", 1, general=0)
    s.at(1.0).post("alice#1", 1, "a1", "general", "m1")
    s.at(7.5).ack("alice#1", 1, "a1", "general", 1)
    # ts says 1.0 but the ack came at 7.5: not owed to a session that ended at 9.0
    report = check(s.recording, stored("general", 1, ts=1.0), end_t=9.0)
    assert report.ok, report.render()
    report = check(s.recording, stored("general", 1, ts=1.0), end_t=9.6)
    assert {(v.kind, v.user, v.seq) for v in report.violations} == {
        ("not_delivered", "bob", 1),
        ("not_delivered", "alice", 1),
    }


def test_order_mismatch() -> None:
    s = Script().hello("alice#1", 1).welcome("alice#1", 1, general=0)
    s.hello("bob#1", 1).welcome("bob#1", 1, general=0)
    s.at(1.0).msg("alice#1", 1, "general", 1, user="alice", text="first")
    s.msg("bob#1", 1, "general", 1, user="carol", text="second")
    report = check(s.recording, stored("general", 1), end_t=1.0)
    assert_violation(only(report, "order_mismatch"), "order_mismatch", "bob", "general", 1)


def test_render_lists_every_kind_and_truncates() -> None:
    s = Script().hello("bob#1", 1).welcome("bob#1", 1, general=0)
    s.at(1.0).msg("bob#1", 1, "general", 2).msg("bob#1", 1, "general", 1)
    s.msg("bob#1", 1, "general", 1)
    store = stored("general", *range(1, 30), ts=0.5)
    store["general"].pop(10)
    report = check(s.recording, store, end_t=10.0)
    text = report.render()
    kinds = {v.kind for v in report.violations}
    assert {"duplicate", "out_of_order", "gap", "not_delivered", "store_gap"} <= kinds
    for kind in kinds:
        assert f":{kind} " in text
    assert text.startswith(":valid? false")
    assert "... and" in text  # more than 20 not_delivered
    assert set(report.to_dict()["violation_counts"]) == kinds
    assert set(KINDS) >= kinds


@pytest.mark.parametrize("jsonl", [True, False])
def test_recording_round_trip_checks_the_same(jsonl: bool) -> None:
    rec = clean_script().recording
    if jsonl:
        rec = Recording.from_jsonl(rec.to_jsonl())
    assert check(rec, stored("general", 1, 2, 3), end_t=9.0).ok


def test_render_names_all_eight_kinds() -> None:
    s = Script().hello("alice#1", 1).welcome("alice#1", 1, general=0)
    s.hello("bob#1", 1).welcome("bob#1", 1, general=0)
    s.at(1.0).post("alice#1", 1, "a9", "general", "lost").ack("alice#1", 1, "a9", "general", 9)
    s.msg("alice#1", 1, "general", 2, user="alice", text="m2")  # gap at 1
    s.msg("alice#1", 1, "general", 1)  # out of order
    s.msg("alice#1", 1, "general", 1)  # duplicate
    s.msg("bob#1", 1, "general", 2, user="carol", text="other")  # order mismatch (and gap)
    store = stored("general", 1, 2, 4, 4, ts=0.5)  # store gap at 3, duplicate 4
    report = check(s.recording, store, end_t=10.0)
    found = {v.kind for v in report.violations}
    assert found == set(KINDS)
    text = report.render()
    for kind in KINDS:
        assert f"  :{kind} " in text


def test_live_client_numbers_the_session_at_welcome() -> None:
    """The live client records a resuming hello under the previous session number."""
    s = Script().hello("bob#1", 0).welcome("bob#1", 1, general=0)
    s.at(1.0).msg("bob#1", 1, "general", 1).close("bob#1", 1)
    s.at(2.0).hello("bob#1", 1, {"general": 1}).welcome("bob#1", 2, general=3)
    s.at(2.1).msg("bob#1", 2, "general", 3)
    report = check(s.recording, stored("general", 1, 2, 3), end_t=2.1)
    assert_violation(only(report, "gap"), "gap", "bob", "general", 2)


def test_a_short_session_is_owed_nothing() -> None:
    """Cut a moment after its welcome, a session cannot have been gap-filled yet."""
    s = Script().at(5.0).hello("bob#1", 0, {"general": 0}).welcome("bob#1", 1, general=3)
    s.at(5.01).close("bob#1", 1)
    assert check(s.recording, stored("general", 1, 2, 3, ts=1.0), end_t=20.0).ok


def test_violations_are_listed_store_first_then_in_record_order() -> None:
    """Per-session and cross-member findings interleave by the record that showed them."""
    s = Script().hello("alice#1", 1).welcome("alice#1", 1, general=0)
    s.hello("bob#1", 1).welcome("bob#1", 1, general=0)
    s.at(1.0).msg("alice#1", 1, "general", 2)  # gap at 1
    s.at(1.05).post("alice#1", 1, "a9", "general", "lost").ack("alice#1", 1, "a9", "general", 9)
    s.at(1.1).msg("bob#1", 1, "general", 2, user="carol", text="other")  # gap, then mismatch
    s.at(1.2).msg("alice#1", 1, "general", 2)  # duplicate
    s.at(1.3).msg("alice#1", 1, "general", 1)  # out of order
    report = check(s.recording, stored("general", 1, 2, 4), end_t=10.0)
    assert [(v.kind, v.user, v.seq) for v in report.violations] == [
        ("store_gap", None, 3),
        ("gap", "alice", 1),
        ("gap", "bob", 1),
        ("order_mismatch", "bob", 2),
        ("duplicate", "alice", 2),
        ("out_of_order", "alice", 1),
        ("acked_missing", "alice", 9),
        ("not_delivered", "alice", 4),
        ("not_delivered", "bob", 1),
        ("not_delivered", "bob", 4),
    ]


# -- several clients per user ----------------------------------------------------------------


def test_a_join_on_one_device_is_owed_to_the_others() -> None:
    """bob#2 joins #eng; bob#1 hears ``joined`` (no id) and is owed #eng from then on."""
    s = Script().hello("bob#1", 1).welcome("bob#1", 1, general=0)
    s.hello("bob#2", 1).welcome("bob#2", 1, general=0)
    s.at(1.0).frame(
        "bob#2", 1, {"type": "joined", "id": "j1", "channel": "eng", "head": 5, "epoch": "e1"}
    )
    s.frame("bob#1", 1, {"type": "joined", "channel": "eng", "head": 5, "epoch": "e1"})
    s.at(1.5).post("bob#2", 1, "bob.2-p1", "eng", "m6").ack("bob#2", 1, "bob.2-p1", "eng", 6)
    s.msg("bob#2", 1, "eng", 6, user="bob")
    report = check(s.recording, stored("eng", *range(1, 7), user="bob", ts=1.5), end_t=9.0)
    v = only(report, "not_delivered")
    assert (v.client, v.user, v.channel, v.seq) == ("bob#1", "bob", "eng", 6)
    assert "bob#1 (session 1)" in v.detail


def test_posts_of_two_devices_are_told_apart_by_id() -> None:
    s = Script().hello("bob#1", 1).welcome("bob#1", 1, general=0)
    s.hello("bob#2", 1).welcome("bob#2", 1, general=0)
    s.at(1.0).post("bob#1", 1, "bob-p1", "general", "m1").ack("bob#1", 1, "bob-p1", "general", 1)
    s.post("bob#2", 1, "bob.2-p1", "general", "m2").ack("bob#2", 1, "bob.2-p1", "general", 2)
    for client in ("bob#1", "bob#2"):
        s.msg(client, 1, "general", 1, user="bob").msg(client, 1, "general", 2, user="bob")
    report = check(s.recording, stored("general", 1, 2, user="bob", ts=1.0), end_t=9.0)
    assert report.ok, report.render()
    assert report.posts_acked == 2


# -- epochs ----------------------------------------------------------------------------------


def epoch_store(old: dict[str, Any], new: dict[str, Any], lost_at: float) -> dict[str, Any]:
    """check() keywords for #general lost at ``lost_at``: ``old`` (e1) then ``new`` (e2)."""
    return {
        "store": new,
        "epochs": {"general": "e2"},
        "lost": [LostEpoch("general", "e1", old["general"], lost_at)],
    }


def data_loss_script() -> Script:
    """alice and bob in #general; the store loses it at 2.0 s; bob's gateway says ``reset``
    at 2.3 s, alice's at 2.4 s; posting continues from seq 1 in epoch e2."""
    s = Script().hello("alice#1", 1).welcome("alice#1", 1, general=0)
    s.hello("bob#1", 1).welcome("bob#1", 1, general=0)
    for seq in (1, 2):
        s.at(seq * 0.5).post("alice#1", 1, f"a{seq}", "general", f"m{seq}")
        s.ack("alice#1", 1, f"a{seq}", "general", seq)
        s.msg("alice#1", 1, "general", seq).msg("bob#1", 1, "general", seq)
    s.at(2.3).reset("bob#1", 1, "general", 0, "e2")
    s.at(2.4).reset("alice#1", 1, "general", 0, "e2")
    for seq in (1, 2):
        s.at(3.0 + seq).post("alice#1", 1, f"b{seq}", "general", f"n{seq}")
        s.ack("alice#1", 1, f"b{seq}", "general", seq)
        s.msg("alice#1", 1, "general", seq, text=f"n{seq}")
        s.msg("bob#1", 1, "general", seq, text=f"n{seq}")
    s.at(9.0)
    return s


def new_epoch(*seqs: int) -> dict[str, Any]:
    frames = stored("general", *seqs, ts=3.5)
    for frame in frames["general"]:
        frame["text"] = f"n{frame['seq']}"
    return frames


def test_epochs_are_judged_apart() -> None:
    """Seqs restart at 1 after a data loss: no duplicate, no order mismatch between the
    epochs, acks of the lost epoch found in what it held."""
    s = data_loss_script()
    report = check(
        s.recording, end_t=9.0, **epoch_store(stored("general", 1, 2), new_epoch(1, 2), 2.0)
    )
    assert report.ok, report.render()
    assert report.messages_checked == 4 and report.posts_acked == 4
    # Read as one numbering (the store alone), the same run looks broken.
    assert not check(s.recording, new_epoch(1, 2), end_t=9.0).ok


def test_each_epoch_is_numbered_on_its_own() -> None:
    s = data_loss_script()
    report = check(
        s.recording, end_t=9.0, **epoch_store(stored("general", 1, 2), new_epoch(2), 2.0)
    )
    v = only(report, "store_gap")
    assert (v.channel, v.seq) == ("general", 1)
    assert "general (epoch e2) seq 1" in v.detail


def test_the_new_epoch_is_owed_from_the_reset() -> None:
    s = data_loss_script()
    s.at(6.0).post("alice#1", 1, "b3", "general", "n3").ack("alice#1", 1, "b3", "general", 3)
    s.msg("alice#1", 1, "general", 3, text="n3")
    s.at(9.0)
    report = check(
        s.recording, end_t=9.0, **epoch_store(stored("general", 1, 2), new_epoch(1, 2, 3), 2.0)
    )
    v = only(report, "not_delivered")
    assert (v.user, v.channel, v.seq) == ("bob", "general", 3)
    assert "general (epoch e2) seq 3" in v.detail


def test_the_old_epoch_is_owed_until_it_was_lost() -> None:
    """bob never got e1 seq 3 (acked at 0.6 s). Lost at 4.0 s, it was owed: the system had
    3.4 s to deliver it. Lost at 2.0 s, it was not: the settle time had not passed."""
    s = Script().hello("alice#1", 1).welcome("alice#1", 1, general=2)
    s.hello("bob#1", 1).welcome("bob#1", 1, general=2)
    s.at(0.5).post("alice#1", 1, "a3", "general", "m3")
    s.at(0.6).ack("alice#1", 1, "a3", "general", 3).msg("alice#1", 1, "general", 3)
    s.at(4.3).reset("alice#1", 1, "general", 0, "e2").reset("bob#1", 1, "general", 0, "e2")
    s.at(9.0)
    old = stored("general", 1, 2, 3, ts=0.1)
    report = check(s.recording, end_t=9.0, **epoch_store(old, {"general": []}, 4.0))
    v = only(report, "not_delivered")
    assert (v.user, v.channel, v.seq) == ("bob", "general", 3)
    assert "general (epoch e1) seq 3" in v.detail
    assert check(s.recording, end_t=9.0, **epoch_store(old, {"general": []}, 2.0)).ok


def test_members_are_compared_within_one_epoch() -> None:
    """Two members told the same epoch must agree on each seq, even around a data loss."""
    s = data_loss_script()
    s.at(7.0).msg("bob#1", 1, "general", 3, user="carol", text="x")
    s.msg("alice#1", 1, "general", 3, user="dave", text="y")
    s.at(9.0)
    report = check(
        s.recording, end_t=9.0, **epoch_store(stored("general", 1, 2), new_epoch(1, 2), 2.0)
    )
    v = only(report, "order_mismatch")
    assert (v.user, v.channel, v.seq) == ("alice", "general", 3)


def test_rejoining_in_a_new_epoch_restarts_the_seqs() -> None:
    s = Script().hello("bob#1", 1).welcome("bob#1", 1, general=0)
    s.at(1.0).msg("bob#1", 1, "general", 1).msg("bob#1", 1, "general", 2)
    s.at(1.5).frame("bob#1", 1, {"type": "left", "id": "l1", "channel": "general"})
    s.at(3.0).frame(
        "bob#1", 1, {"type": "joined", "id": "j1", "channel": "general", "head": 0, "epoch": "e2"}
    )
    s.at(3.5).msg("bob#1", 1, "general", 1, text="n1")
    report = check(
        s.recording, end_t=4.0, **epoch_store(stored("general", 1, 2), new_epoch(1), 2.0)
    )
    assert report.ok, report.render()
    s.at(3.6).msg("bob#1", 1, "general", 1, text="n1")
    report = check(
        s.recording, end_t=4.0, **epoch_store(stored("general", 1, 2), new_epoch(1), 2.0)
    )
    assert only(report, "duplicate").seq == 1


def test_a_resume_into_a_new_epoch_starts_at_the_reset_head() -> None:
    """bob comes back with last_seen 2 of e1; the channel is now e2 at head 4: the gateway
    sends ``reset`` and bob is owed e2 from seq 5."""
    s = Script().at(5.0).hello("bob#1", 1, {"general": 2}, {"general": "e1"})
    s.welcome("bob#1", 2, epoch="e2", general=4).reset("bob#1", 2, "general", 4, "e2")
    s.at(5.5).msg("bob#1", 2, "general", 5, text="n5")
    report = check(
        s.recording,
        end_t=9.0,
        **epoch_store(stored("general", 1, 2), new_epoch(1, 2, 3, 4, 5), 3.0),
    )
    assert report.ok, report.render()


def test_a_lost_epoch_needs_the_epoch_names() -> None:
    with pytest.raises(ValueError, match="epoch names"):
        check(Recording(), {}, lost=[LostEpoch("general", "e1", (), 1.0)])
