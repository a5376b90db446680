"""One delivery: BitByBit's headers and their rules, then verify it and append it to the log.

Knows nothing of HTTP: the view reads the headers through `DeliveryHeaders.read`, hands
them and the raw body over, and maps the errors (`RejectedError`'s code,
`StoreUnavailableError`) to answers. Senders (`send-test`, `replay`) build their
headers here too, so what is sent is what is read.
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING

from app.eventlog.rows import Delivery
from app.eventlog.store import AppendResult, Outcome
from app.instants import format_instant
from app.webhooks.signature import SignatureError, Verifier

if TYPE_CHECKING:
    from collections.abc import Mapping

    from app.eventlog.group_commit import GroupCommitWriter

ID_HEADER = "X-BitByBit-Webhook-Id"
EVENT_HEADER = "X-BitByBit-Webhook-Event"
TIMESTAMP_HEADER = "X-BitByBit-Webhook-Timestamp"
SIGNATURE_HEADER = "X-BitByBit-Webhook-Signature"
MAX_HEADER_LENGTH = 255

MAX_TIMESTAMP_DIGITS = 18
_INTEGER = re.compile(rf"-?[0-9]{{1,{MAX_TIMESTAMP_DIGITS}}}")


USER_AGENT = "BitByBit-Webhooks/1.0"


class RejectedError(Exception):
    """A delivery refused before anything was stored: the SPEC's error code, and why."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def is_printable_ascii(value: str) -> bool:
    """The header-byte rule: bytes 0x20-0x7E only, which is all BitByBit ever sends.

    HTTP lets a header carry any byte but CR, LF and NUL; aiohttp hands other bytes over
    as surrogates or control characters, which no log line, metric label or SQLite text
    column can take at face value. Refusing them as malformed is the one safe answer.
    """
    return value.isascii() and value.isprintable()


@dataclasses.dataclass(frozen=True, slots=True)
class DeliveryHeaders:
    """BitByBit's four headers, read once, with the names of those breaking the byte rule.

    Reading them here, before anything else does, puts the rule in one place; which
    answer a broken header gets is still decided in the SPEC's order of checks.
    """

    webhook_id: str | None
    event_type: str | None
    timestamp: str | None
    signature: str | None
    unprintable: frozenset[str]

    @classmethod
    def read(cls, headers: Mapping[str, str]) -> DeliveryHeaders:
        """The four headers as received; any value breaking the rule is named in `unprintable`."""
        values = [headers.get(name) for name in _DELIVERY_HEADERS]
        unprintable = frozenset(
            name
            for name, value in zip(_DELIVERY_HEADERS, values, strict=True)
            if value is not None and not is_printable_ascii(value)
        )
        webhook_id, event_type, timestamp, signature = values
        return cls(webhook_id, event_type, timestamp, signature, unprintable)

    def required(self, name: str) -> str:
        """The id or event header: present, non-empty, printable and at most 255 characters."""
        value = self.webhook_id if name == ID_HEADER else self.event_type
        if name in self.unprintable:
            raise _unprintable(name)
        return _required_header(name, value)

    def event_timestamp(self) -> int | None:
        """The event's Unix seconds (None when absent or not an integer)."""
        if TIMESTAMP_HEADER in self.unprintable:
            raise _unprintable(TIMESTAMP_HEADER)
        return parse_event_timestamp(self.timestamp)


_DELIVERY_HEADERS = (ID_HEADER, EVENT_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER)


def _unprintable(name: str) -> RejectedError:
    detail = f"the {name} header holds bytes that are not printable ASCII"
    if name == SIGNATURE_HEADER:
        return RejectedError("malformed_signature", detail)
    return RejectedError("malformed_header", detail)


@dataclasses.dataclass(frozen=True, slots=True)
class Ingest:
    """The checks of SPEC §3 after the body is read, then the durable append."""

    verifier: Verifier
    writer: GroupCommitWriter

    async def receive(
        self, headers: DeliveryHeaders, body: bytes, now: float, *, deadline: float | None = None
    ) -> AppendResult:
        """Append an authentic delivery; raise `RejectedError` for anything else.

        `deadline` (the event loop's clock) is when the answer is due; the writer refuses
        a delivery it cannot commit by then (`StoreUnavailableError`), unwritten.
        """
        signature = headers.signature
        if SIGNATURE_HEADER in headers.unprintable:
            raise _unprintable(SIGNATURE_HEADER)
        try:
            verified = self.verifier.verify(signature, body, now)
        except SignatureError as exc:
            raise RejectedError(exc.code, exc.detail) from None
        delivery = Delivery(
            webhook_id=headers.required(ID_HEADER),
            event_type=headers.required(EVENT_HEADER),
            event_timestamp=headers.event_timestamp(),
            signed_at=verified.signed_at,
            received_at=format_instant(now),
            signature=signature or "",
            payload=body,
            digests=verified.digests,
        )
        result = await self.writer.append(delivery, deadline=deadline)
        if result.outcome is Outcome.SIGNATURE_REPLAYED:
            raise RejectedError(
                "signature_replayed",
                "this signature was already accepted with a different event type",
            )
        return result


def identifier_problem(value: str | None) -> str | None:
    """Why a webhook id or event type cannot be logged (the SPEC's error code), or None.

    The endpoint and `import` both apply it, so the log holds the same kind of ids
    whichever way a delivery came in.
    """
    if not value:
        return "missing_header"
    if len(value) > MAX_HEADER_LENGTH or not is_printable_ascii(value):
        return "malformed_header"
    return None


def _required_header(name: str, value: str | None) -> str:
    """A header that must be present, non-empty and at most 255 characters."""
    match identifier_problem(value):
        case "missing_header":
            raise RejectedError("missing_header", f"the {name} header is missing or empty")
        case "malformed_header":
            raise RejectedError(
                "malformed_header", f"the {name} header is longer than {MAX_HEADER_LENGTH}"
            )
    assert value is not None  # noqa: S101 - identifier_problem refused None
    return value


def parse_event_timestamp(value: str | None) -> int | None:
    """The event's Unix seconds, or None when the header is absent or not an integer."""
    if value is None:
        return None
    if value.isascii() and value.isdigit() and len(value) <= MAX_TIMESTAMP_DIGITS:
        return int(value)  # what BitByBit sends, without the regular expression
    if not _INTEGER.fullmatch(value.strip()):
        return None
    return int(value)


def bitbybit_headers(
    webhook_id: str, event_type: str, event_timestamp: int | None, signature: str
) -> dict[str, str]:
    """The four `X-BitByBit-Webhook-*` headers; no timestamp header when there is none."""
    headers = {ID_HEADER: webhook_id, EVENT_HEADER: event_type}
    if event_timestamp is not None:
        headers[TIMESTAMP_HEADER] = str(event_timestamp)
    headers[SIGNATURE_HEADER] = signature
    return headers


def request_headers(
    webhook_id: str, event_type: str, event_timestamp: int | None, signature: str
) -> dict[str, str]:
    """Everything BitByBit puts on a delivery's request: type, agent and its four headers."""
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        **bitbybit_headers(webhook_id, event_type, event_timestamp, signature),
    }
