"""The client's half of gap-fill: what it has seen, and what the next ``hello`` asks for."""

from __future__ import annotations

from labkit.core.client_state import DUPLICATE, GAP, NEW, ClientState, Verdict


def state_with(**channels: tuple[int, str]) -> ClientState:
    state = ClientState()
    state.on_welcome(dict(channels))
    return state


def test_a_fresh_client_says_nothing_in_hello() -> None:
    assert ClientState().hello_fields() == ({}, {})


def test_hello_fields_are_copies() -> None:
    state = state_with(general=(4, "e1"))
    last_seen, epochs = state.hello_fields()
    assert (last_seen, epochs) == ({"general": 4}, {"general": "e1"})
    last_seen["general"] = 99
    epochs["general"] = "zz"
    assert state.hello_fields() == ({"general": 4}, {"general": "e1"})


def test_first_welcome_starts_every_channel_at_its_head() -> None:
    state = state_with(general=(45, "e1"), eng=(0, "e2"))
    assert state.last_seen == {"general": 45, "eng": 0}
    assert state.epochs == {"general": "e1", "eng": "e2"}


def test_a_later_welcome_keeps_tracked_channels_and_forgets_left_ones() -> None:
    state = state_with(general=(10, "e1"), eng=(3, "e1"), random=(7, "e1"))
    state.on_message("general", 11)
    state.on_welcome({"general": (20, "e9"), "random": (7, "e1"), "design": (5, "e1")})
    # general: the server gap-fills 12..20 (or resets); the next hello must still say 11 in e1
    assert state.hello_fields() == (
        {"general": 11, "random": 7, "design": 5},
        {"general": "e1", "random": "e1", "design": "e1"},
    )


def test_a_welcome_fills_in_an_epoch_the_client_never_knew() -> None:
    state = ClientState()
    state.last_seen["general"] = 8  # restored from a file that had no epochs, say
    state.on_welcome({"general": (12, "e5")})
    assert state.hello_fields() == ({"general": 8}, {"general": "e5"})


def test_the_next_seq_is_new() -> None:
    state = state_with(general=(4, "e1"))
    assert state.on_message("general", 5) == Verdict(NEW)
    assert state.on_message("general", 6) == Verdict(NEW, None)
    assert state.last_seen["general"] == 6


def test_a_seq_at_or_below_last_seen_is_a_duplicate_and_changes_nothing() -> None:
    state = state_with(general=(4, "e1"))
    assert state.on_message("general", 4) == Verdict(DUPLICATE)
    assert state.on_message("general", 1) == Verdict(DUPLICATE)
    assert state.last_seen["general"] == 4


def test_a_jump_is_a_gap_with_the_exact_missing_range_and_still_advances() -> None:
    state = state_with(general=(4, "e1"))
    assert state.on_message("general", 9) == Verdict(GAP, (5, 8))
    assert state.last_seen["general"] == 9
    assert state.on_message("general", 11) == Verdict(GAP, (10, 10))
    assert state.on_message("general", 12) == Verdict(NEW)
    assert state.on_message("general", 10) == Verdict(DUPLICATE), "the hole is fetched apart"


def test_an_untracked_channel_counts_from_zero() -> None:
    state = ClientState()
    assert state.on_message("eng", 1) == Verdict(NEW)
    assert state.on_message("random", 3) == Verdict(GAP, (1, 2))


def test_reset_moves_to_the_new_head_and_epoch_even_downwards() -> None:
    state = state_with(general=(40, "e1"))
    state.on_reset("general", 2, "e2")
    assert state.hello_fields() == ({"general": 2}, {"general": "e2"})
    assert state.on_message("general", 3) == Verdict(NEW)


def test_joined_starts_at_head_and_a_rejoin_keeps_the_position() -> None:
    state = state_with(general=(4, "e1"))
    state.on_joined("design", 12, "e1")
    assert state.last_seen["design"] == 12 and state.epochs["design"] == "e1"
    state.on_message("design", 13)
    state.on_joined("design", 20, "e7")  # another connection's join, seen late
    assert state.hello_fields() == ({"general": 4, "design": 13}, {"general": "e1", "design": "e1"})


def test_left_forgets_the_channel() -> None:
    state = state_with(general=(4, "e1"), eng=(2, "e1"))
    state.on_left("eng")
    state.on_left("never-joined")
    assert state.hello_fields() == ({"general": 4}, {"general": "e1"})
    state.on_joined("eng", 9, "e3")
    assert state.last_seen["eng"] == 9, "joining again starts at the new head"
