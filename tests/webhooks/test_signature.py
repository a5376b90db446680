"""The signature parser and verifier, without HTTP."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.webhooks.signature import SignatureError, Verifier, compute_digest, parse_header, sign
from tests._helpers import OTHER_SECRET, SECRET

NOW = 1_705_314_600
TOLERANCE = 300
BODY = b'{"id": "ord_1", "status": "paid"}'


def _verifier(*secrets: bytes) -> Verifier:
    return Verifier(secrets or (SECRET,), TOLERANCE)


def _digest(secret: bytes = SECRET, t: int = NOW, body: bytes = BODY) -> str:
    return compute_digest(secret, str(t), body)


def _code(header: str | None, *, now: float = NOW, verifier: Verifier | None = None) -> str:
    with pytest.raises(SignatureError) as caught:
        (verifier or _verifier()).verify(header, BODY, now)
    return caught.value.code


class TestValidSignatures:
    """Authentic signatures pass."""

    def test_sender_signature_verifies(self) -> None:
        """A header built the way the sender builds it verifies, reporting t and its digest."""
        verified = _verifier().verify(sign(SECRET, NOW, BODY), BODY, NOW)
        assert verified.signed_at == NOW
        assert verified.digests == (_digest(),)

    @pytest.mark.parametrize("secret", [SECRET, OTHER_SECRET])
    def test_either_secret_of_a_rotation_verifies(self, secret: bytes) -> None:
        """During key rotation a body signed with the old or the new secret passes."""
        verifier = _verifier(SECRET, OTHER_SECRET)
        assert verifier.verify(sign(secret, NOW, BODY), BODY, NOW).signed_at == NOW

    def test_wrong_and_right_v1_in_one_header(self) -> None:
        """One matching v1 among several passes, and only the matching one is reported."""
        wrong = _digest(secret=OTHER_SECRET)
        header = f"t={NOW},v1={wrong},v1={_digest()}"
        assert _verifier().verify(header, BODY, NOW).digests == (_digest(),)

    @pytest.mark.parametrize(
        "template",
        [
            "t={t},v1={d},v1=bad_signature",
            "t={t},v1=bad_signature,v1={d}",
            "t={t},v1=,v1={d}",
            "t={t},v1={D},v1={d}",
        ],
    )
    def test_a_malformed_v1_beside_a_matching_one_verifies(self, template: str) -> None:
        """Stripe's own test case: an entry that is no digest does not spoil a good one."""
        header = template.format(d=_digest(), D=_digest().upper(), t=NOW)
        assert _verifier().verify(header, BODY, NOW).digests == (_digest(),)

    def test_a_malformed_v1_beside_a_wrong_one_is_invalid(self) -> None:
        """With one well-formed v1 that does not match, the header is merely inauthentic."""
        header = f"t={NOW},v1={_digest(secret=OTHER_SECRET)},v1=bad_signature"
        assert _code(header) == "invalid_signature"

    @pytest.mark.parametrize(
        "template",
        [
            "v1={d},t={t}",
            " v1={d} , t={t} ",
            "v0=legacy,v1={d},t={t}",
            "t={t},v2=future-scheme,v1={d}",
        ],
    )
    def test_parts_in_any_order_and_unknown_schemes_ignored(self, template: str) -> None:
        """Reordered parts, spaces around them and other schemes' entries still verify."""
        header = template.format(d=_digest(), t=NOW)
        assert _verifier().verify(header, BODY, NOW).signed_at == NOW

    def test_body_is_compared_byte_for_byte(self) -> None:
        """Re-serialising the same JSON (one space less) breaks the signature."""
        header = sign(SECRET, NOW, BODY)
        with pytest.raises(SignatureError) as caught:
            _verifier().verify(header, BODY.replace(b": ", b":"), NOW)
        assert caught.value.code == "invalid_signature"


class TestTolerance:
    """The time window around the server clock, inclusive, both ways."""

    @pytest.mark.parametrize("offset", [-TOLERANCE, TOLERANCE])
    def test_exactly_at_the_tolerance_passes(self, offset: int) -> None:
        """A t exactly `tolerance` seconds in the past or the future is accepted."""
        t = NOW + offset
        assert _verifier().verify(sign(SECRET, t, BODY), BODY, NOW).signed_at == t

    @pytest.mark.parametrize("offset", [-TOLERANCE - 1, TOLERANCE + 1])
    def test_one_second_past_the_tolerance_fails(self, offset: int) -> None:
        """A t one second beyond the tolerance, either way, is out of tolerance."""
        assert _code(sign(SECRET, NOW + offset, BODY)) == "timestamp_out_of_tolerance"

    def test_stale_signature_with_wrong_digest_reports_the_time(self) -> None:
        """The time window is checked before the digest, as the SPEC orders the checks."""
        header = f"t={NOW - 3600},v1={_digest(secret=OTHER_SECRET)}"
        assert _code(header) == "timestamp_out_of_tolerance"

    def test_wrong_secret_is_invalid(self) -> None:
        """A fresh signature made with a secret we do not hold is invalid."""
        assert _code(sign(OTHER_SECRET, NOW, BODY)) == "invalid_signature"


HEX = "ab" * 32


class TestMalformedHeaders:
    """Headers that cannot be parsed, and what the parser keeps."""

    @pytest.mark.parametrize("header", [None, "", "   "])
    def test_absent_or_blank_header_is_missing(self, header: str | None) -> None:
        """No header, or an empty one, is `missing_signature`."""
        assert _code(header) == "missing_signature"

    @pytest.mark.parametrize(
        "header",
        [
            pytest.param(f"v1={HEX}", id="no-t"),
            pytest.param(f"t={NOW},t={NOW},v1={HEX}", id="repeated-t"),
            pytest.param(f"t=now,v1={HEX}", id="non-numeric-t"),
            pytest.param(f"t=-{NOW},v1={HEX}", id="negative-t"),
            pytest.param(f"t={NOW}.5,v1={HEX}", id="fractional-t"),
            pytest.param(f"t=,v1={HEX}", id="empty-t"),
            pytest.param(f"t=1{'0' * 12},v1={HEX}", id="huge-t"),
            pytest.param(f"t=\u0661\u0662\u0663,v1={HEX}", id="arabic-indic-digits-t"),
            pytest.param(f"t={NOW}", id="no-v1"),
            pytest.param(f"t={NOW},v1=", id="empty-v1"),
            pytest.param(f"t={NOW},v1={'zz' * 32}", id="non-hex-v1"),
            pytest.param(f"t={NOW},v1={HEX.upper()}", id="uppercase-v1"),
            pytest.param(f"t={NOW},v1={HEX[:-1]}", id="short-v1"),
            pytest.param(f"t={NOW},v1={HEX}0", id="long-v1"),
            pytest.param(f"t={NOW},v1={HEX[:-1]}\u00e9", id="non-ascii-v1"),
            pytest.param(f"t={NOW},v1=\uff41{HEX[1:]}", id="fullwidth-v1"),
            pytest.param(f"t={NOW},v1=bad_signature,v1={HEX[:-1]}", id="only-malformed-v1s"),
            pytest.param(f"t={NOW},v1={HEX},", id="trailing-comma"),
            pytest.param(f"t={NOW};v1={HEX}", id="wrong-separator"),
            pytest.param("signature", id="no-key-value"),
            pytest.param(f"={NOW},v1={HEX}", id="empty-key"),
        ],
    )
    def test_unparsable_header_is_malformed(self, header: str) -> None:
        """A header that is present but cannot be parsed is `malformed_signature`."""
        assert _code(header) == "malformed_signature"

    def test_malformed_is_reported_before_the_time_window(self) -> None:
        """A stale header that is also unparsable is malformed, not out of tolerance."""
        assert _code(f"t={NOW - 3600},v1={HEX.upper()}") == "malformed_signature"

    def test_parse_keeps_every_v1_in_order(self) -> None:
        """The parser keeps t's exact text and every v1 entry, in header order."""
        other = "cd" * 32
        parsed = parse_header(f"v1={HEX},t={NOW},v1={other}")
        assert parsed.timestamp == NOW
        assert parsed.timestamp_text == str(NOW)
        assert parsed.digests == (HEX, other)


_PARTS = st.one_of(
    st.text(max_size=30),
    st.builds("t={}".format, st.one_of(st.integers(-10, 10**15), st.text(max_size=12))),
    st.builds("v1={}".format, st.one_of(st.just(HEX), st.text(max_size=70))),
    st.just(f"t={NOW}"),
    st.just(f"v1={_digest()}"),
)


CODES = {
    "verified",
    "missing_signature",
    "malformed_signature",
    "timestamp_out_of_tolerance",
    "invalid_signature",
}


def _outcome(header: str) -> str:
    """`verified`, or the code of the SignatureError; any other exception escapes."""
    try:
        verified = _verifier().verify(header, BODY, NOW)
    except SignatureError as exc:
        return exc.code
    return "verified" if verified.digests == (_digest(),) else "wrong digests reported"


class TestProperties:
    """Properties over generated headers and bodies."""

    @given(st.text())
    def test_arbitrary_text_only_raises_signature_error(self, header: str) -> None:
        """Whatever the header says, verify() returns or raises SignatureError, nothing else."""
        assert _outcome(header) in CODES

    @given(st.lists(_PARTS, max_size=6).map(",".join))
    def test_near_miss_headers_only_raise_signature_error(self, header: str) -> None:
        """Headers built from plausible parts never make verify() fail in another way."""
        assert _outcome(header) in CODES

    @given(body=st.binary(max_size=512), t=st.integers(NOW - TOLERANCE, NOW + TOLERANCE))
    def test_any_body_signed_within_tolerance_verifies(self, body: bytes, t: int) -> None:
        """Every body, signed by the sender at any t within the window, verifies."""
        assert _verifier().verify(sign(SECRET, t, body), body, NOW).signed_at == t
