"""Argument types shared by the ``labkit`` commands: each turns text into a checked value or
raises ``argparse.ArgumentTypeError`` with a sentence saying what was expected."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from labkit.core.auth import is_valid_user_name


def _number(text: str, kind: type[float] | type[int], what: str = "a number") -> float:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None


def positive(kind: type[float] | type[int]) -> Callable[[str], float]:
    """A number greater than 0, of ``kind`` (int or float)."""

    def parse(text: str) -> float:
        value = _number(text, kind)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
        return value

    return parse


def count(text: str) -> int:
    """A whole number, 0 or more."""
    value = int(_number(text, int, "a whole number"))
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
    return value


def port(text: str) -> int:
    value = int(_number(text, int, "a port number"))
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is outside 1..65535")
    return value


def user(text: str) -> str:
    if not is_valid_user_name(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a valid user name (lower-case letters, digits, '.', '_', '-')"
        )
    return text


def probability(text: str) -> float:
    value = _number(text, float)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a probability from 0 to 1")
    return value


def milliseconds(text: str) -> float:
    """A delay from 0 up to (not including) a minute, in milliseconds."""
    value = _number(text, float)
    if not 0.0 <= value < 60_000:
        raise argparse.ArgumentTypeError(f"{text!r} must be from 0 to 60000 ms")
    return value
