"""Checks for ex02_routing: the gateway's routing table and when it (un)subscribes.

The budget here is bus subscriptions: a gateway must be subscribed to exactly the channels that
have a local member, subscribing once when the first one appears and unsubscribing once when the
last one goes. Each extra subscription is a stream of messages crossing the network for nobody;
each missing one is a member who never hears anything.
"""

from __future__ import annotations

import random
from types import ModuleType
from typing import Any

from labkit.grading.framework import CheckList, expect, need, show

checks = CheckList()


class Conn:
    """A stand-in for a connection: hashable by identity, printed by name."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


def _table(module: ModuleType) -> Any:
    return need(module, "RoutingTable")()


def _call(table: Any, method: str, *args: Any) -> Any:
    return getattr(table, method)(*args)


def _said(value: object) -> str:
    return f"it returned {value!r}"


@checks.add("the first local member of a channel subscribes the gateway, later ones do not")
def check_first_member_subscribes(module: ModuleType, rng: random.Random) -> None:
    t = _table(module)
    a, b, c = Conn("conn-1"), Conn("conn-2"), Conn("conn-3")
    r = t.add(a, "general")
    expect(
        bool(r), "add(conn-1, 'general') on an empty table to return True (subscribe now)", _said(r)
    )
    r = t.add(b, "general")
    expect(
        not r,
        "add(conn-2, 'general') to return False: the gateway is already subscribed",
        f"{_said(r)}: a second subscription to the same channel",
    )
    r = t.add(a, "random")
    expect(
        bool(r), "add(conn-1, 'random') to return True: first local member of 'random'", _said(r)
    )
    r = t.add(c, "random")
    expect(not r, "add(conn-3, 'random') to return False", _said(r))


@checks.add("adding the same connection to a channel twice changes nothing")
def check_same_connection_twice(module: ModuleType, rng: random.Random) -> None:
    t = _table(module)
    a = Conn("conn-1")
    t.add(a, "general")
    r = t.add(a, "general")
    expect(not r, "a repeated add(conn-1, 'general') to return False", _said(r))
    got = t.connections("general")
    expect(list(got) == [a], "connections('general') to be [conn-1], once", f"it is {show(got)}")
    r = t.remove(a, "general")
    expect(
        bool(r),
        "one remove(conn-1, 'general') to empty the channel and return True (unsubscribe)",
        f"{_said(r)}: a ghost member keeps the subscription alive",
    )


@checks.add("the last local member leaving unsubscribes the gateway, and only the last")
def check_last_member_unsubscribes(module: ModuleType, rng: random.Random) -> None:
    t = _table(module)
    a, b, c = Conn("conn-1"), Conn("conn-2"), Conn("conn-3")
    for conn in (a, b, c):
        t.add(conn, "general")
    r = t.remove(a, "general")
    expect(
        not r,
        "remove(conn-1, 'general') to return False: conn-2 and conn-3 remain",
        f"{_said(r)}: the gateway would unsubscribe while two members still listen",
    )
    r = t.remove(c, "general")
    expect(not r, "remove(conn-3, 'general') to return False: conn-2 remains", _said(r))
    r = t.remove(b, "general")
    expect(
        bool(r),
        "remove(conn-2, 'general') to return True: it was the last local member",
        f"{_said(r)}: the gateway stays subscribed to a channel nobody here reads",
    )
    expect(
        list(t.channels()) == [],
        "channels() to be empty once every member left",
        f"it is {show(t.channels())}",
    )
    r = t.add(a, "general")
    expect(
        bool(r), "add(conn-1, 'general') after the channel emptied to return True again", _said(r)
    )


@checks.add("removing a connection that is not there returns False and changes nothing")
def check_remove_unknown(module: ModuleType, rng: random.Random) -> None:
    t = _table(module)
    a, b = Conn("conn-1"), Conn("conn-2")
    r = t.remove(a, "general")
    expect(not r, "remove(conn-1, 'general') on an empty table to return False", _said(r))
    t.add(a, "general")
    r = t.remove(b, "general")
    expect(not r, "remove(conn-2, 'general') to return False: conn-2 never joined", _said(r))
    r = t.remove(a, "random")
    expect(not r, "remove(conn-1, 'random') to return False: conn-1 is not in 'random'", _said(r))
    expect(
        bool(t.has(a, "general")) and list(t.connections("general")) == [a],
        "conn-1 to still be routed 'general'",
        f"has(conn-1, 'general') is {t.has(a, 'general')!r}, connections('general') is"
        f" {show(t.connections('general'))}",
    )
    r = t.remove(a, "general")
    expect(bool(r), "remove(conn-1, 'general') to return True", _said(r))
    r = t.remove(a, "general")
    expect(
        not r,
        "a second remove(conn-1, 'general') to return False: nothing left to unsubscribe",
        f"{_said(r)}: the gateway would unsubscribe twice",
    )


@checks.add("remove_connection returns exactly the channels left without local members")
def check_remove_connection(module: ModuleType, rng: random.Random) -> None:
    t = _table(module)
    a, b = Conn("conn-1"), Conn("conn-2")
    for channel in ("general", "random", "eng"):
        t.add(a, channel)
    t.add(b, "random")
    got = t.remove_connection(a)
    expect(
        sorted(got) == ["eng", "general"] and len(got) == 2,
        "remove_connection(conn-1) to return 'eng' and 'general' (each once); 'random'"
        " still has conn-2",
        f"it returned {show(got)}",
    )
    expect(
        list(t.channels()) == ["random"],
        "channels() to be ['random'] afterwards",
        f"it is {show(t.channels())}",
    )
    expect(
        list(t.channels_of(a)) == [] and not t.has(a, "general"),
        "conn-1 to be forgotten entirely",
        f"channels_of(conn-1) is {show(t.channels_of(a))}",
    )
    expect(len(t) == 1, "len(table) to be 1 (only conn-2 is left)", f"it is {len(t)}")
    got = t.remove_connection(a)
    expect(
        list(got) == [],
        "a second remove_connection(conn-1) to return []",
        f"it returned {show(got)}",
    )
    got = t.remove_connection(b)
    expect(
        list(got) == ["random"],
        "remove_connection(conn-2) to return ['random']",
        f"it returned {show(got)}",
    )
    expect(len(t) == 0, "an empty table to have len 0", f"it is {len(t)}")


@checks.add("connections() lists members oldest first and is a copy; len counts connections")
def check_queries(module: ModuleType, rng: random.Random) -> None:
    t = _table(module)
    c1, c2, c3 = Conn("conn-1"), Conn("conn-2"), Conn("conn-3")
    for conn in (c3, c1, c2):
        t.add(conn, "general")
    t.add(c1, "random")
    got = t.connections("general")
    expect(
        list(got) == [c3, c1, c2],
        "connections('general') to be [conn-3, conn-1, conn-2], in the order they were added",
        f"it is {show(got)}",
    )
    if isinstance(got, list):
        got.clear()
    again = t.connections("general")
    expect(
        list(again) == [c3, c1, c2],
        "changing the list connections() returned to leave the"
        " table alone (return a copy: the gateway iterates it while connections close)",
        f"after clearing the returned list, connections('general') is {show(again)}",
    )
    expect(
        list(t.connections("nowhere")) == [],
        "connections('nowhere') to be []",
        f"it is {show(t.connections('nowhere'))}",
    )
    expect(
        sorted(t.channels_of(c1)) == ["general", "random"],
        "channels_of(conn-1) to be 'general' and 'random'",
        show(t.channels_of(c1)),
    )
    expect(
        sorted(t.channels()) == ["general", "random"],
        "channels() to be 'general' and 'random'",
        show(t.channels()),
    )
    expect(
        len(t) == 3,
        "len(table) to be 3: three connections (conn-1 counts once though it is in two channels)",
        f"it is {len(t)}",
    )


@checks.add("add_all returns each channel to subscribe to once, and only those")
def check_add_all(module: ModuleType, rng: random.Random) -> None:
    t = _table(module)
    a, b = Conn("conn-1"), Conn("conn-2")
    t.add(b, "random")
    got = t.add_all(a, ["general", "random", "eng", "general"])
    expect(
        sorted(got) == ["eng", "general"],
        "add_all(conn-1, ['general', 'random', 'eng', 'general']) to return 'eng' and"
        " 'general' once each ('random' is already subscribed)",
        f"it returned {show(got)}",
    )
    expect(
        sorted(t.channels_of(a)) == ["eng", "general", "random"],
        "conn-1 to be routed all three channels",
        show(t.channels_of(a)),
    )


@checks.add(
    "a random gateway session: subscribed to exactly the channels with local members,"
    " one subscribe per first member (budget)",
    randomized=True,
)
def check_random_session(module: ModuleType, rng: random.Random) -> None:
    t = _table(module)
    conns = [Conn(f"conn-{i}") for i in range(1, 7)]
    channels = [f"ch-{i}" for i in range(1, 9)]
    model: dict[str, set[Conn]] = {c: set() for c in channels}
    subscribed: set[str] = set()
    subscribes = 0
    ideal_subscribes = 0
    history: list[str] = []

    def fail_context() -> str:
        return f"after {len(history)} operations (the last ones: {'; '.join(history[-3:])})"

    def subscribe(channel: str) -> None:
        nonlocal subscribes
        expect(
            channel not in subscribed,
            f"no second subscription to {channel!r} while it is subscribed",
            f"{fail_context()} the table said to subscribe to {channel!r} again",
        )
        subscribes += 1
        subscribed.add(channel)

    def unsubscribe(channel: str) -> None:
        expect(
            not model[channel],
            f"no unsubscribe from {channel!r} while it has local members",
            f"{fail_context()} the table said to unsubscribe from {channel!r} though"
            f" {sorted(model[channel], key=repr)} are still members: they would hear"
            " nothing more",
        )
        expect(
            channel in subscribed,
            f"no unsubscribe from {channel!r}: not subscribed",
            f"{fail_context()} the table said to unsubscribe from it",
        )
        subscribed.discard(channel)

    for _ in range(400):
        op = rng.random()
        conn = rng.choice(conns)
        if op < 0.35:
            channel = rng.choice(channels)
            history.append(f"add({conn!r}, {channel!r})")
            was_empty = not model[channel]
            model[channel].add(conn)
            ideal_subscribes += was_empty
            if t.add(conn, channel):
                subscribe(channel)
        elif op < 0.75:
            channel = rng.choice(channels)
            history.append(f"remove({conn!r}, {channel!r})")
            model[channel].discard(conn)
            if t.remove(conn, channel):
                unsubscribe(channel)
        elif op < 0.85:
            picked = rng.sample(channels, rng.randint(1, 4))
            history.append(f"add_all({conn!r}, {picked!r})")
            for channel in picked:
                ideal_subscribes += not model[channel]
                model[channel].add(conn)
            for channel in t.add_all(conn, picked):
                subscribe(channel)
        else:
            history.append(f"remove_connection({conn!r})")
            for members in model.values():
                members.discard(conn)
            for channel in t.remove_connection(conn):
                unsubscribe(channel)
        wanted = {c for c, members in model.items() if members}
        expect(
            subscribed == wanted,
            f"{fail_context()} the gateway to be subscribed to exactly {sorted(wanted)}",
            f"it is subscribed to {sorted(subscribed)}"
            + (
                f"; {sorted(subscribed - wanted)} have no local member (a subscription leak)"
                if subscribed - wanted
                else ""
            )
            + (
                f"; {sorted(wanted - subscribed)} have members but no subscription"
                if wanted - subscribed
                else ""
            ),
        )
        for channel in channels:
            got = set(t.connections(channel))
            expect(
                got == model[channel],
                f"{fail_context()} connections({channel!r}) to be"
                f" {sorted(model[channel], key=repr)}",
                f"it is {sorted(got, key=repr)}",
            )
    expect(
        subscribes == ideal_subscribes,
        f"{ideal_subscribes} subscriptions in all (one per channel going from no local"
        " member to one)",
        f"{subscribes} subscriptions",
    )


EXERCISE = checks.exercise(
    "ex02_routing",
    "gateway routing table: subscribe on a channel's first local member, unsubscribe on its last",
)
