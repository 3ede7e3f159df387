"""Stripe webhook signatures: verify ``Stripe-Signature`` before a webhook is forwarded.

Pure: no I/O, no clock (the caller passes ``now``), no logging, no state. The
transport buffers the body (bounded by the body limit) and calls
:func:`verify_stripe_signature`; a :class:`StripeSignatureError` becomes a bare
400 counted by its ``reason``, and the request is never forwarded.

The header, per Stripe's docs::

    Stripe-Signature: t=1492774577,v1=5257a869...,v1=...,v0=6ffbb59b...

Elements are split on ``,`` and each on its first ``=``. ``t`` is the Unix time
Stripe signed at; each ``v1`` is ``hex(HMAC-SHA256(secret, f"{t}.".encode() + body))``;
``v0`` and unknown schemes are ignored. The secret is the ``whsec_...`` string's
bytes, used as the key as-is (stripe-python does ``secret.encode("utf-8")``; it
is not base64-decoded). During a rotation Stripe sends one ``v1`` per active
secret and Wardent holds one or two secrets: any ``v1`` matching any secret passes.

Parsing matches stripe-python's ``WebhookSignature.verify_header`` on every header
Stripe can send, and is deliberately stricter elsewhere (each difference is pinned
by a test against the official package in tests/unit/test_stripe_signature.py):

- keys are compared exactly, as stripe-python does: ``t=1, v1=...`` (a space
  before the key) has no ``v1`` element. Spaces and tabs around ``t``'s digits
  are allowed, as ``int()`` allows them there;
- ``t`` must be ASCII digits (stripe-python's ``int()`` also takes ``+1``, ``1_0``
  and non-ASCII digits), and at most one ``t`` (stripe-python uses the first);
- a ``v1`` value must be hex (stripe-python cuts ``v1=abc=def`` at the second ``=``);
- at most 4 KiB of header and 16 ``v1`` values, so the work per request is bounded;
- a timestamp more than ``tolerance`` in the future is rejected (stripe-python
  accepts any future timestamp), and ``tolerance`` must be positive (stripe-python
  treats 0 as "no check");
- the HMAC is over the body's raw bytes, so a non-UTF-8 body with a valid
  signature passes (stripe-python decodes the body first and raises
  ``UnicodeDecodeError``); a non-ASCII header is malformed (stripe-python raises
  ``TypeError`` from ``hmac.compare_digest``).

The signature is checked before the timestamp, as stripe-python does, so
``stale`` and ``future`` always mean an authentic delivery outside the window
(a replay, or clock skew worth an alert), never an attacker's junk, which is
``forged``. The timestamp the signature covers is the canonical integer
(``t=0017`` signs ``"17."``), again as stripe-python does.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from collections.abc import Sequence
from typing import Final, Literal

Reason = Literal["missing", "malformed", "stale", "future", "forged"]

REASONS: Final[tuple[Reason, ...]] = ("missing", "malformed", "stale", "future", "forged")
"""Every reason a verification can fail with: a bounded metric label set."""


MAX_HEADER_BYTES: Final = 4096
MAX_SIGNATURES: Final = 16

_HEX: Final = re.compile(rb"[0-9a-fA-F]+")
_OWS: Final = b" \t"


class StripeSignatureError(Exception):
    """The webhook is not verified; ``reason`` is one of :data:`REASONS`.

    ``detail`` is a fixed phrase for logs. Neither ever contains a secret or
    echoes the header.
    """

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: Reason = reason
        self.detail = detail


def _malformed(detail: str) -> StripeSignatureError:
    return StripeSignatureError("malformed", detail)


def _parse(header: bytes) -> tuple[int, list[bytes]]:
    """The timestamp and the ``v1`` signatures of a non-empty header."""
    if len(header) > MAX_HEADER_BYTES:
        raise _malformed(f"header over {MAX_HEADER_BYTES} bytes")
    if not header.isascii():
        raise _malformed("header is not ASCII")
    timestamp: int | None = None
    signatures: list[bytes] = []
    for element in header.split(b","):
        key, sep, value = element.partition(b"=")
        if key == b"t":
            if timestamp is not None:
                raise _malformed("more than one t=")
            digits = value.strip(_OWS)
            if not sep or not digits.isdigit():  # bytes.isdigit: ASCII digits only
                raise _malformed("t= is not an integer")
            try:
                timestamp = int(digits)
            except ValueError:  # only past sys.get_int_max_str_digits()
                raise _malformed("t= is not an integer") from None
        elif key == b"v1":
            if not sep or _HEX.fullmatch(value) is None:
                raise _malformed("v1= is not hex")
            signatures.append(value)
            if len(signatures) > MAX_SIGNATURES:
                raise _malformed(f"more than {MAX_SIGNATURES} v1= signatures")
    if timestamp is None:
        raise _malformed("no t=")
    if not signatures:
        raise _malformed("no v1=")
    return timestamp, signatures


def _expected(secret: bytes, timestamp: int, body: bytes | bytearray | memoryview) -> bytes:
    mac = hmac.new(secret, b"%d." % timestamp, hashlib.sha256)
    mac.update(body)  # no copy of the body into a concatenated payload
    return mac.hexdigest().encode("ascii")


def verify_stripe_signature(
    header: bytes | None,
    body: bytes | bytearray | memoryview,
    secrets: Sequence[bytes],
    tolerance: float,
    now: float,
) -> int:
    """Return the verified ``t=`` timestamp, or raise :class:`StripeSignatureError`.

    ``header`` is the raw ``Stripe-Signature`` value (None if absent), ``body``
    the complete raw request body, ``secrets`` the one or two ``whsec_...``
    secrets as bytes, ``tolerance`` the allowed distance in seconds between
    ``t`` and ``now`` in either direction (exactly ``tolerance`` passes).

    Raises ValueError for a caller's mistake (no secrets, an empty secret, a
    tolerance that is not a positive finite number): config validation should
    have refused those, and failing closed is the only safe answer.
    """
    if not secrets or not all(secrets):
        raise ValueError("at least one non-empty Stripe webhook secret is required")
    if not (tolerance > 0 and math.isfinite(tolerance)):
        raise ValueError("the Stripe signature tolerance must be a positive number of seconds")
    if not header:
        raise StripeSignatureError("missing", "no Stripe-Signature header")
    timestamp, signatures = _parse(header)

    # Every pair is compared, without short-circuit: the time taken depends
    # only on the counts of secrets and signatures, never on their contents.
    matched = False
    for secret in secrets:
        expected = _expected(secret, timestamp, body)
        for candidate in signatures:
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise StripeSignatureError("forged", "no v1= signature matches a configured secret")

    if timestamp < now - tolerance:
        raise StripeSignatureError("stale", "timestamp older than the tolerance")
    if timestamp > now + tolerance:
        raise StripeSignatureError("future", "timestamp further ahead than the tolerance")
    return timestamp


def sign_for_tests(body: bytes, secret: bytes, timestamp: int) -> bytes:
    """A ``Stripe-Signature`` header as Stripe would send it for ``body``.

    For tests and the load test's Stripe journey; equal to stripe-python's
    ``WebhookSignature.generate_signature_header`` for a UTF-8 body.
    """
    return b"t=%d,v1=%s" % (timestamp, _expected(secret, timestamp, body))
