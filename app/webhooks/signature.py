"""BitByBit's webhook signature: `t=<unix s>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.

The scheme is Stripe's: several `v1` entries may appear during key rotation, and any of
them matching any configured secret passes. Only `t` and the raw body are signed, which is
why the store also guards against a signature replayed under another event header.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

_DIGEST = re.compile(r"[0-9a-f]{64}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
# What BitByBit sends: one `t`, then one `v1`. Matched in one step; anything else takes
# the general parser below, which decides the same way.
_CANONICAL = re.compile(r"t=([0-9]{1,12}),v1=([0-9a-f]{64})")


class SignatureError(Exception):
    """A delivery's signature cannot be trusted; `code` is the SPEC's error code."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclasses.dataclass(frozen=True, slots=True)
class SignatureHeader:
    """The parts of a signature header that matter: the signing time and the digests."""

    timestamp_text: str
    digests: tuple[str, ...]

    @property
    def timestamp(self) -> int:
        """`t` as Unix seconds."""
        return int(self.timestamp_text)


def parse_header(header: str | None) -> SignatureHeader:
    """Parse strictly: exactly one numeric `t`, at least one 64-hex `v1`, parts in any order.

    A `v1` entry that is not 64 lowercase hex characters is skipped, as Stripe's parser
    does (its `t=...,v1=<good>,v1=bad_signature` test case is authentic); a header with
    no well-formed `v1` at all is still malformed.

    Other `key=value` schemes are ignored, as in Stripe's parser, so a sender adding a
    `v2` later does not break verification.
    """
    if header is None or not header.strip():
        raise SignatureError(
            "missing_signature", "the X-BitByBit-Webhook-Signature header is missing"
        )
    if canonical := _CANONICAL.fullmatch(header):
        return SignatureHeader(canonical[1], (canonical[2],))
    return _parse_general(header)


def _parse_general(header: str) -> SignatureHeader:
    timestamp: str | None = None
    digests: list[str] = []
    malformed_v1 = False
    for key, value in _parts(header):
        if key == "t":
            if timestamp is not None:
                raise SignatureError("malformed_signature", "the signature has more than one t")
            if not _TIMESTAMP.fullmatch(value):
                raise SignatureError("malformed_signature", "the signature's t is not Unix seconds")
            timestamp = value
        elif key == "v1":
            # As in Stripe's own library, an entry that is no digest at all is one that
            # matches nothing; it must not spoil a header where another entry matches.
            if _DIGEST.fullmatch(value):
                digests.append(value)
            else:
                malformed_v1 = True
    if timestamp is None:
        raise SignatureError("malformed_signature", "the signature has no t")
    if not digests:
        detail = (
            "no v1 digest is 64 lowercase hex characters"
            if malformed_v1
            else "the signature has no v1 digest"
        )
        raise SignatureError("malformed_signature", detail)
    return SignatureHeader(timestamp, tuple(digests))


def _parts(header: str) -> Iterator[tuple[str, str]]:
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep or not key:
            raise SignatureError("malformed_signature", "signature parts must be key=value pairs")
        yield key, value


def compute_digest(secret: bytes, timestamp_text: str, body: bytes) -> str:
    """The `v1` digest BitByBit sends for this body signed at `timestamp_text`."""
    return hmac.digest(secret, timestamp_text.encode() + b"." + body, "sha256").hex()


def _hex_digest(keyed: hmac.HMAC, message: bytes) -> str:
    mac = keyed.copy()
    mac.update(message)
    return mac.hexdigest()


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """A complete signature header, as the sender builds it."""
    return f"t={timestamp},v1={compute_digest(secret, str(timestamp), body)}"


@dataclasses.dataclass(frozen=True, slots=True)
class Verified:
    """An authentic signature: when it was made and which of its digests matched."""

    signed_at: int
    digests: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Verifier:
    """Checks signatures against every configured secret within a tolerance window."""

    secrets: Sequence[bytes]
    tolerance_seconds: int
    # Each secret's HMAC with the key already mixed in: copying one is cheaper than keying
    # a new HMAC for every delivery.
    _keyed: tuple[hmac.HMAC, ...] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        keyed = tuple(hmac.new(secret, digestmod=hashlib.sha256) for secret in self.secrets)
        object.__setattr__(self, "_keyed", keyed)

    def verify(self, header: str | None, body: bytes, now: float) -> Verified:
        """Return the matching digests, or raise `SignatureError` with the SPEC's code."""
        parsed = parse_header(header)
        # Whole seconds, as `t` is: exactly `tolerance` seconds away still passes.
        if abs(int(now) - parsed.timestamp) > self.tolerance_seconds:
            raise SignatureError(
                "timestamp_out_of_tolerance",
                f"the signature's t is more than {self.tolerance_seconds} s from the server clock",
            )
        # Every secret against every entry, so the time taken does not depend on which matched.
        message = parsed.timestamp_text.encode() + b"." + body
        matched = [
            digest
            for keyed in self._keyed
            for expected in (_hex_digest(keyed, message),)
            for digest in parsed.digests
            if hmac.compare_digest(expected, digest)
        ]
        if not matched:
            raise SignatureError(
                "invalid_signature", "no v1 digest matches the body with any configured secret"
            )
        return Verified(parsed.timestamp, tuple(sorted(set(matched))))
