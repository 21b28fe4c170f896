"""Tests for labkit.core.auth: the token format, expiry, forgery and garbage (always TokenError)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labkit.core.auth import (
    DEFAULT_TTL_S,
    USER_NAME,
    TokenError,
    is_valid_user_name,
    make_token,
    verify_token,
)

SECRET = "s3cret"
NOW = 1_764_331_200.0


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def signed(payload: bytes, secret: str = SECRET) -> str:
    """A correctly signed token around any payload bytes, built from the documented format."""
    payload_b64 = b64(payload)
    sig = hmac.new(secret.encode(), payload_b64.encode(), hashlib.sha256).digest()
    return payload_b64 + "." + b64(sig)


def reason_of(token: str, *, secret: str = SECRET, now: float = NOW) -> str:
    with pytest.raises(TokenError) as info:
        verify_token(token, secret, now=now)
    return info.value.reason


# --------------------------------------------------------------------------- the happy path


def test_round_trip() -> None:
    token = make_token("alice", SECRET, now=NOW)
    assert verify_token(token, SECRET, now=NOW) == "alice"
    assert verify_token(token, SECRET, now=NOW + DEFAULT_TTL_S - 1) == "alice"


def test_wire_format() -> None:
    token = make_token("alice", SECRET, now=NOW, ttl_s=60)
    payload_b64, sig_b64 = token.split(".")
    assert "=" not in token
    assert json.loads(unb64(payload_b64)) == {"u": "alice", "exp": 1_764_331_260}
    assert unb64(payload_b64) == b'{"u":"alice","exp":1764331260}'  # whole expiry as an integer
    expected = hmac.new(SECRET.encode(), payload_b64.encode(), hashlib.sha256).digest()
    assert unb64(sig_b64) == expected
    assert signed(unb64(payload_b64)) == token


def test_fractional_expiry_is_kept() -> None:
    token = make_token("bob", SECRET, now=100.25, ttl_s=0.5)
    assert json.loads(unb64(token.split(".")[0]))["exp"] == 100.75
    assert verify_token(token, SECRET, now=100.7) == "bob"
    assert reason_of(token, now=100.75) == "expired"


def test_a_token_signed_by_hand_verifies() -> None:
    token = signed(b'{"u": "carol", "exp": 2e9}')
    assert verify_token(token, SECRET, now=NOW) == "carol"


# --------------------------------------------------------------------------- expiry


def test_expiry_boundary() -> None:
    token = make_token("alice", SECRET, now=NOW, ttl_s=10)
    assert verify_token(token, SECRET, now=NOW + 9.999) == "alice"
    assert reason_of(token, now=NOW + 10) == "expired"  # now == exp is expired
    assert reason_of(token, now=NOW + 10.001) == "expired"


def test_default_ttl_is_a_day() -> None:
    assert DEFAULT_TTL_S == 86_400
    token = make_token("alice", SECRET, now=NOW)
    assert reason_of(token, now=NOW + 86_400) == "expired"


def test_expired_forgery_reports_the_signature() -> None:
    # The signature is checked first: a wrong secret never learns whether the token expired.
    token = make_token("alice", "other", now=NOW, ttl_s=1)
    assert reason_of(token, now=NOW + 100) == "bad_signature"


# --------------------------------------------------------------------------- forgery


def test_wrong_secret() -> None:
    token = make_token("alice", "other secret", now=NOW)
    assert reason_of(token) == "bad_signature"


def test_tampered_user() -> None:
    token = make_token("alice", SECRET, now=NOW)
    payload_b64, sig_b64 = token.split(".")
    payload = json.loads(unb64(payload_b64))
    payload["u"] = "mallory"
    forged = b64(json.dumps(payload, separators=(",", ":")).encode()) + "." + sig_b64
    assert reason_of(forged) == "bad_signature"


def test_tampered_expiry() -> None:
    token = make_token("alice", SECRET, now=NOW, ttl_s=1)
    sig_b64 = token.split(".")[1]
    forged = b64(b'{"u":"alice","exp":9999999999}') + "." + sig_b64
    assert reason_of(forged, now=NOW + 100) == "bad_signature"


def test_tampered_signature() -> None:
    token = make_token("alice", SECRET, now=NOW)
    payload_b64, sig_b64 = token.split(".")
    flipped = ("B" if sig_b64[0] == "A" else "A") + sig_b64[1:]
    assert reason_of(payload_b64 + "." + flipped) == "bad_signature"
    assert reason_of(payload_b64 + "." + sig_b64[:-3]) == "bad_signature"  # 30 bytes
    assert reason_of(payload_b64 + ".") == "bad_signature"  # no digest at all


def test_non_canonical_base64_is_malformed() -> None:
    # A 32-byte digest is 43 base64 characters; the last one carries 2 unused bits. Setting them
    # spells the same bytes differently, which must not give a second valid token.
    token = make_token("alice", SECRET, now=NOW)
    payload_b64, sig_b64 = token.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(sig_b64[-1])
    respelled = sig_b64[:-1] + alphabet[last ^ 1]
    assert unb64(respelled) == unb64(sig_b64)
    assert reason_of(payload_b64 + "." + respelled) == "malformed"


def test_signature_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)  # labkit.core.auth looks it up per call
    token = make_token("alice", SECRET, now=NOW)
    assert verify_token(token, SECRET, now=NOW) == "alice"
    assert reason_of(make_token("alice", "other", now=NOW)) == "bad_signature"
    assert len(calls) == 2


# --------------------------------------------------------------------------- garbage

GARBAGE = [
    "",
    ".",
    "..",
    "abc",
    "a.b.c",
    "é.é",
    "héllo.wörld",
    "\x00.\x00",
    "😀",
    "\ud800.x",
    "a" * 5000,
    "===.===",
    "abc=.def",
    "a+b/.c+d/",
    " abc.def",
    "abc.def\n",
    "A.B",  # a single base64 character is never valid
    "null",
    '{"u":"alice","exp":9999999999}',
]


@pytest.mark.parametrize("token", GARBAGE)
def test_garbage_is_a_token_error(token: str) -> None:
    assert reason_of(token) in ("malformed", "bad_signature")


def test_truncated_tokens() -> None:
    token = make_token("alice", SECRET, now=NOW)
    for cut in range(len(token)):
        assert reason_of(token[:cut]) in ("malformed", "bad_signature")
    assert reason_of(token + "=") == "malformed"
    assert reason_of(token + "A") in ("malformed", "bad_signature")
    assert reason_of(" " + token) == "malformed"


def test_non_string_token() -> None:
    assert reason_of(None) == "malformed"  # type: ignore[arg-type]
    assert reason_of(b"abc.def") == "malformed"  # type: ignore[arg-type]


SIGNED_BUT_BAD = [
    b"",
    b"not json",
    b"\xff\xfe",
    b"[]",
    b"null",
    b'"alice"',
    b"[" * 100_000,
    b'{"exp": 9999999999}',
    b'{"u": "alice"}',
    b'{"u": "Alice", "exp": 9999999999}',
    b'{"u": "", "exp": 9999999999}',
    b'{"u": 5, "exp": 9999999999}',
    b'{"u": "alice", "exp": "9999999999"}',
    b'{"u": "alice", "exp": true}',
    b'{"u": "alice", "exp": null}',
    b'{"u": "alice", "exp": NaN}',
    b'{"u": "alice", "exp": Infinity}',
]


@pytest.mark.parametrize("payload", SIGNED_BUT_BAD)
def test_signed_but_malformed_payload(payload: bytes) -> None:
    assert reason_of(signed(payload)) == "malformed"


def test_huge_expiry_values() -> None:
    assert verify_token(signed(b'{"u":"alice","exp":' + b"9" * 400 + b"}"), SECRET, now=NOW)
    assert reason_of(signed(b'{"u":"alice","exp":-' + b"9" * 400 + b"}")) == "expired"
    assert reason_of(signed(b'{"u":"alice","exp":1e999}')) == "malformed"  # json gives inf
    assert reason_of(signed(b'{"u":"alice","exp":' + b"9" * 5000 + b"}")) == "malformed"


@given(st.text())
def test_verify_never_raises_other_errors(token: str) -> None:
    try:
        verify_token(token, SECRET, now=NOW)
    except TokenError as err:
        assert err.reason in ("malformed", "bad_signature", "expired")


@given(st.binary(max_size=200))
def test_verify_never_raises_other_errors_on_signed_bytes(payload: bytes) -> None:
    try:
        verify_token(signed(payload), SECRET, now=NOW)
    except TokenError as err:
        assert err.reason in ("malformed", "expired")


@given(
    user=st.from_regex(USER_NAME, fullmatch=True),
    now=st.floats(min_value=0, max_value=4e9),
    ttl_s=st.floats(min_value=0.001, max_value=1e7),
)
def test_round_trip_property(user: str, now: float, ttl_s: float) -> None:
    token = make_token(user, SECRET, now=now, ttl_s=ttl_s)
    exp = now + ttl_s
    if exp > now:  # float addition can round a tiny ttl away
        assert verify_token(token, SECRET, now=now) == user
    assert reason_of(token, now=exp) == "expired"


# --------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize("secret", ["", None])
def test_empty_secret_is_a_value_error(secret: str) -> None:
    with pytest.raises(ValueError):
        make_token("alice", secret, now=NOW)
    with pytest.raises(ValueError):
        verify_token(make_token("alice", SECRET, now=NOW), secret, now=NOW)


@pytest.mark.parametrize("ttl_s", [0, -1, float("nan"), float("inf")])
def test_bad_ttl_is_a_value_error(ttl_s: float) -> None:
    with pytest.raises(ValueError):
        make_token("alice", SECRET, now=NOW, ttl_s=ttl_s)


USER_NAMES = [
    ("alice", True),
    ("a", True),
    ("0", True),
    ("bob.smith", True),
    ("bob_smith-2", True),
    ("a" * 64, True),
    ("a" * 65, False),
    ("", False),
    ("Alice", False),
    (".alice", False),
    ("-alice", False),
    ("_alice", False),
    ("alice\n", False),
    ("al ice", False),
    ("al@ice", False),
    ("ålice", False),
]


@pytest.mark.parametrize(("name", "valid"), USER_NAMES)
def test_is_valid_user_name(name: str, valid: bool) -> None:
    assert is_valid_user_name(name) is valid


@pytest.mark.parametrize("name", [name for name, valid in USER_NAMES if not valid])
def test_make_token_refuses_invalid_user_names(name: str) -> None:
    with pytest.raises(ValueError):
        make_token(name, SECRET, now=NOW)


def test_token_error_repr_and_message() -> None:
    err = TokenError("expired", "the token has expired")
    assert err.reason == "expired"
    assert str(err) == "the token has expired"
    assert "expired" in repr(err)
