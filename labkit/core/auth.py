"""Signed session tokens: who the user is, and until when the server should believe it.

Theory of operation
-------------------
A token is two base64url fields (no padding) joined by a dot::

    base64url(payload) "." base64url(HMAC-SHA256(secret, base64url(payload)))

where ``payload`` is compact JSON ``{"u": user, "exp": expiry}`` and ``expiry`` is seconds since
the Unix epoch (an integer when it is whole). Whoever knows the secret can mint tokens; anyone
else can read them (they are signed, not encrypted) but cannot change a byte without breaking
the signature. This is the same idea as a JWT with the header left out, small enough to read in
one sitting.

``verify_token`` checks, in this order, and stops at the first failure:

1. the shape: ASCII, two canonical base64url fields -> else ``TokenError("malformed")``;
2. the signature, compared in constant time (``hmac.compare_digest``) so response times do not
   reveal how many leading bytes of a forgery were right -> else ``"bad_signature"``;
3. the payload: a JSON object with a valid user name and a finite expiry -> else ``"malformed"``;
4. the expiry: ``now < exp`` -> else ``"expired"`` (a token is dead at the instant ``exp``).

The signature is checked before the payload is decoded, so no JSON parser ever sees bytes an
attacker chose. The module is pure: ``now`` is always a parameter, which is what lets the tests
and the notebooks' virtual clock put a token exactly on its expiry boundary.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
from typing import Literal, NoReturn

DEFAULT_TTL_S = 24 * 3600
MAX_TOKEN_CHARS = 1024
"""Longer strings are refused before any decoding: a valid token is about 100 characters."""

USER_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
"""A valid user name, to be used with ``fullmatch``."""

TokenReason = Literal["malformed", "bad_signature", "expired"]

_B64URL = re.compile(r"[A-Za-z0-9_-]*")


class TokenError(Exception):
    """A token the server must refuse; ``reason`` says why, for logs and tests.

    The gateway answers every reason the same way (``unauthorized``): telling a client which
    check failed would help a forger more than an honest user.
    """

    def __init__(self, reason: TokenReason, message: str) -> None:
        super().__init__(message)
        self.reason: TokenReason = reason
        self.message = message

    def __repr__(self) -> str:
        return f"TokenError({self.reason!r}, {self.message!r})"


def is_valid_user_name(name: object) -> bool:
    """Whether ``name`` is a user name: ``[a-z0-9][a-z0-9_.-]{0,63}``, matched as a whole."""
    return isinstance(name, str) and USER_NAME.fullmatch(name) is not None


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    """Decode unpadded base64url, accepting only the one canonical spelling of each value.

    Without the round-trip check, a field could be re-spelled (different trailing bits) and
    still verify, so two distinct strings would be the same token.
    """
    if _B64URL.fullmatch(text) is None:
        raise ValueError("not base64url")
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64encode(raw) != text:
        raise ValueError("not canonical base64url")
    return raw


def _sign(payload_b64: str, secret: str) -> bytes:
    key = secret.encode("utf-8")
    return hmac.new(key, payload_b64.encode("ascii"), hashlib.sha256).digest()


def _check_secret(secret: str) -> None:
    if not isinstance(secret, str) or not secret:
        raise ValueError("the secret must be a non-empty string")


def make_token(user: str, secret: str, *, now: float, ttl_s: float = DEFAULT_TTL_S) -> str:
    """A token for ``user`` that ``verify_token`` accepts while ``now < now + ttl_s``.

    Raises ``ValueError`` for an invalid user name, an empty secret, or a ``now``/``ttl_s`` that
    is not a finite number (with ``ttl_s > 0``).
    """
    if not is_valid_user_name(user):
        raise ValueError(f"invalid user name {user!r}: it must match {USER_NAME.pattern}")
    _check_secret(secret)
    if not math.isfinite(now) or not math.isfinite(ttl_s) or ttl_s <= 0:
        raise ValueError("'now' must be a finite number and 'ttl_s' a finite number > 0")
    exp = now + ttl_s
    payload = {"u": user, "exp": int(exp) if float(exp).is_integer() else exp}
    payload_b64 = _b64encode(json.dumps(payload, separators=(",", ":")).encode("utf-8"))
    return payload_b64 + "." + _b64encode(_sign(payload_b64, secret))


def _malformed(why: str) -> NoReturn:
    raise TokenError("malformed", f"malformed token: {why}")


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def verify_token(token: str, secret: str, *, now: float) -> str:
    """The user the token was made for, or raise ``TokenError`` (never anything else).

    Raises ``ValueError`` only for an empty secret, which is the caller's bug, not the token's.
    """
    _check_secret(secret)
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or not token.isascii():
        _malformed("not a short ASCII string")
    payload_b64, dot, signature_b64 = token.partition(".")
    if not dot or not payload_b64:
        _malformed("expected two base64url fields separated by '.'")
    try:
        payload_raw = _b64decode(payload_b64)
        signature = _b64decode(signature_b64)
    except (ValueError, binascii.Error):
        _malformed("the fields are not canonical base64url")
    if not hmac.compare_digest(_sign(payload_b64, secret), signature):
        raise TokenError("bad_signature", "the token's signature does not match")
    try:
        payload = json.loads(payload_raw.decode("utf-8"), parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        _malformed("the payload is not JSON")
    if not isinstance(payload, dict):
        _malformed("the payload is not a JSON object")
    user, exp = payload.get("u"), payload.get("exp")
    if not isinstance(user, str) or not is_valid_user_name(user):
        _malformed("the payload has no valid user name 'u'")
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        _malformed("the payload has no numeric expiry 'exp'")
    if isinstance(exp, float) and not math.isfinite(exp):  # 1e999 parses as inf
        _malformed("the payload's expiry 'exp' is not finite")
    if not now < exp:  # exact even for huge integers: Python compares int and float exactly
        raise TokenError("expired", "the token has expired")
    return user
