"""Receiving one delivery: verify it, check its headers, append it to the log.

Knows nothing of HTTP: the view hands it the headers and raw body and maps its errors
(`RejectedError`, `StoreUnavailableError`) to answers.
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING

from app.eventlog.rows import Delivery
from app.eventlog.signature import SignatureError, Verifier
from app.eventlog.store import AppendResult, Outcome
from app.instants import format_instant

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


class RejectedError(Exception):
    """A delivery refused before anything was stored; carries the SPEC's status and code."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


@dataclasses.dataclass(frozen=True, slots=True)
class Ingest:
    """The checks of SPEC §3 after the body is read, then the durable append."""

    verifier: Verifier
    writer: GroupCommitWriter

    async def receive(self, headers: Mapping[str, str], body: bytes, now: float) -> AppendResult:
        """Append an authentic delivery; raise `RejectedError` for anything else."""
        signature = headers.get(SIGNATURE_HEADER)
        try:
            verified = self.verifier.verify(signature, body, now)
        except SignatureError as exc:
            raise RejectedError(401, exc.code, exc.detail) from None
        delivery = Delivery(
            webhook_id=required_header(headers, ID_HEADER),
            event_type=required_header(headers, EVENT_HEADER),
            event_timestamp=parse_event_timestamp(headers.get(TIMESTAMP_HEADER)),
            signed_at=verified.signed_at,
            received_at=format_instant(now),
            signature=signature or "",
            payload=body,
            digests=verified.digests,
        )
        result = await self.writer.append(delivery)
        if result.outcome is Outcome.SIGNATURE_REPLAYED:
            raise RejectedError(
                409,
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
    if len(value) > MAX_HEADER_LENGTH:
        return "malformed_header"
    return None


def required_header(headers: Mapping[str, str], name: str) -> str:
    """A header that must be present, non-empty and at most 255 characters."""
    value = headers.get(name)
    match identifier_problem(value):
        case "missing_header":
            raise RejectedError(400, "missing_header", f"the {name} header is missing or empty")
        case "malformed_header":
            raise RejectedError(
                400, "malformed_header", f"the {name} header is longer than {MAX_HEADER_LENGTH}"
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
