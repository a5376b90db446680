"""`export` and `import`: the log as JSON Lines, one delivery per line.

A line holds everything a row of `events` holds, so a log can be moved, backed up or
replayed into another installation:

    {"position": 1, "webhook_id": "evt_...", "event_type": "order.created",
     "event_timestamp": 1705314600, "signed_at": 1705314600,
     "received_at": "2024-01-15T10:30:00.123Z", "signature": "t=...,v1=...",
     "payload": "{...}", "payload_encoding": "utf-8"}

The payload is text when it is valid UTF-8 (every JSON body is), base64 otherwise, so
any body the log holds survives byte for byte.

Import appends through `EventStore.append`, the endpoint's own code path: the same
duplicate, conflicting-duplicate and signature-replay rules apply, and importing a file
twice adds nothing. It keeps each line's timestamps and signature and skips the time
window, since exported deliveries are old by nature. Positions are not imported: the
target log numbers deliveries in file order after its own.

The signatures of retries answered `duplicate` are not in the file (only logged
deliveries are). The replay check needs them only within the signature tolerance, so
the README says to wait that long before a moved installation takes deliveries.

The file is read twice: once to validate every line (and, with `--verify`, every
signature), then once to append. A bad line therefore stops the import before anything
is written, and memory stays flat however large the file is.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal

import msgspec

from app.eventlog.reads import LogReader
from app.eventlog.rows import Delivery
from app.eventlog.store import EventStore, Outcome
from app.files import open_private
from app.webhooks.delivery import MAX_HEADER_LENGTH, identifier_problem
from app.webhooks.signature import SignatureError, Verifier, parse_header

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from app.eventlog.rows import StoredEvent

IMPORT_BATCH = 1000
# How the log marks a row it wrote itself rather than received signed (a sync snapshot).
UNSIGNED = ""


class TransferError(Exception):
    """An export or import cannot go ahead; the message says where and why."""


class ExportedDelivery(msgspec.Struct, omit_defaults=True):
    """One line of an export file; unknown keys are ignored, so later exports still import.

    `redacted` (written only when true) marks a row `forget` rewrote: its signature no
    longer matches its body, by design, and `import --verify` reports it as redacted.
    """

    position: int
    webhook_id: str
    event_type: str
    event_timestamp: int | None
    signed_at: int
    received_at: str
    signature: str
    payload: str
    payload_encoding: Literal["utf-8", "base64"]
    redacted: bool = False


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(ExportedDelivery)


def to_line(event: StoredEvent, *, redacted: bool = False) -> ExportedDelivery:
    """One logged event as a line of the export format."""
    try:
        payload = event.payload.decode("utf-8")
        encoding: Literal["utf-8", "base64"] = "utf-8"
    except UnicodeDecodeError:
        payload = base64.b64encode(event.payload).decode("ascii")
        encoding = "base64"
    return ExportedDelivery(
        position=event.position,
        webhook_id=event.webhook_id,
        event_type=event.event_type,
        event_timestamp=event.event_timestamp,
        signed_at=event.signed_at,
        received_at=event.received_at,
        signature=event.signature,
        payload=payload,
        payload_encoding=encoding,
        redacted=redacted,
    )


def export_log(store: LogReader, out: IO[bytes]) -> int:
    """Write every event of the log to `out` as JSON Lines; return how many."""
    buffer = bytearray()
    written = 0
    redacted = store.redacted_positions()
    for event in store.iter_all():
        _encoder.encode_into(to_line(event, redacted=event.position in redacted), buffer, -1)
        buffer.extend(b"\n")
        written += 1
        # Write in chunks of about 1 MiB: few system calls, flat memory.
        if len(buffer) >= 1 << 20:
            out.write(buffer)
            buffer.clear()
    out.write(buffer)
    out.flush()
    return written


def export_to(events_path: Path, target: str | None) -> int:
    """Export the log at `events_path` to the file `target` (stdout for None or '-').

    The file is 0600, as private as the log it copies; a file it replaces was renamed
    over, so it does not keep that file's mode.
    """
    if not events_path.exists():
        raise TransferError(f"there is no event log at {events_path}")
    store = LogReader.open(events_path)
    try:
        if target is None or target == "-":
            return export_log(store, sys.stdout.buffer)
        # Written beside the target and renamed over it, so a failed export never
        # leaves a truncated file under the name of a good one.
        final = Path(target)
        partial = final.with_name(final.name + ".partial")
        with open_private(partial) as out:  # the log's personal data: 0600
            written = export_log(store, out)
            os.fsync(out.fileno())
        partial.replace(final)
        return written
    finally:
        store.close()


def parse_line(line: bytes, number: int, verifier: Verifier | None = None) -> Delivery:
    """The delivery one line describes, or `TransferError` naming the line and the fault.

    With a `verifier`, the signature must also match the payload with a configured
    secret, and only the matching digests are kept, as the endpoint keeps them.
    """
    try:
        item = _decoder.decode(line)
        _check_fields(item)
        payload = _payload(item)
        digests = _digests(item, payload, verifier)
    except TransferError as exc:
        raise TransferError(f"line {number}: {exc}") from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise TransferError(f"line {number}: not a valid delivery: {exc}") from None
    return Delivery(
        webhook_id=item.webhook_id,
        event_type=item.event_type,
        event_timestamp=item.event_timestamp,
        signed_at=item.signed_at,
        received_at=item.received_at,
        signature=item.signature,
        payload=payload,
        digests=digests,
    )


def _check_fields(item: ExportedDelivery) -> None:
    """The endpoint's header rules, and the fields the log cannot do without."""
    for name, value in (("webhook_id", item.webhook_id), ("event_type", item.event_type)):
        match identifier_problem(value):
            case "missing_header":
                raise TransferError(f"{name} is empty")
            case "malformed_header":
                raise TransferError(
                    f"{name} is longer than {MAX_HEADER_LENGTH} characters or not printable ASCII"
                )
    if not item.received_at:
        raise TransferError("received_at is empty")


def _payload(item: ExportedDelivery) -> bytes:
    if item.payload_encoding == "utf-8":
        return item.payload.encode("utf-8")
    try:
        return base64.b64decode(item.payload, validate=True)
    except (binascii.Error, ValueError):
        raise TransferError("payload is not valid base64") from None


def _digests(item: ExportedDelivery, payload: bytes, verifier: Verifier | None) -> tuple[str, ...]:
    """The digests that guard against this signature being replayed under another type.

    A row the service wrote itself (a `sync` snapshot) has no signature: it has nothing
    to verify and no digest, and is reported as unsigned, never as forged.
    """
    if item.signature == UNSIGNED:
        return ()
    try:
        parsed = parse_header(item.signature)
    except SignatureError as exc:
        raise TransferError(f"signature: {exc.detail}") from None
    if parsed.timestamp != item.signed_at:
        raise TransferError("signed_at is not the signature's t")
    if verifier is None or item.redacted:
        # A redacted body cannot match its signature any more: the export says why.
        return parsed.digests
    try:
        # Checked at the moment it was signed: old deliveries are old, only the digest
        # has to match.
        return verifier.verify(item.signature, payload, now=parsed.timestamp).digests
    except SignatureError as exc:
        raise TransferError(f"the signature does not verify ({exc.code}): {exc.detail}") from None


def _numbered_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            # Blank lines (a trailing newline, a hand-edited file) carry nothing.
            if line.strip():
                yield number, line


@dataclasses.dataclass(slots=True)
class ImportReport:
    """What an import did, by the store's outcome of each line."""

    lines: int = 0
    added: int = 0
    present: int = 0
    conflicting: int = 0
    redacted: int = 0
    unsigned: int = 0  # rows without a signature (sync snapshots): carried, not verified
    refused: list[tuple[int, str]] = dataclasses.field(default_factory=list)


def validate(path: Path, verifier: Verifier | None = None) -> int:
    """Check every line of the file; return how many deliveries it holds."""
    count = 0
    for number, line in _numbered_lines(path):
        parse_line(line, number, verifier)
        count += 1
    return count


def import_file(
    events_path: Path,
    path: Path,
    secrets: Sequence[bytes] | None = None,
    batch_size: int = IMPORT_BATCH,
) -> ImportReport:
    """Validate the whole file, then append its deliveries not yet in the log, in order.

    With `secrets`, every signature must verify against one of them, or nothing is
    imported.
    """
    if not path.is_file():
        raise TransferError(f"there is no file {path}")
    verifier = None if secrets is None else Verifier(tuple(secrets), tolerance_seconds=0)
    report = ImportReport(lines=validate(path, verifier))
    store = EventStore.open(events_path)
    redacted_ids: list[str] = []
    try:
        batch: list[tuple[int, Delivery]] = []
        for number, line in _numbered_lines(path):
            batch.append((number, parse_line(line, number, verifier)))
            if _decoder.decode(line).redacted:
                redacted_ids.append(batch[-1][1].webhook_id)
            if len(batch) >= batch_size:
                _append(store, batch, report)
                batch = []
        if batch:
            _append(store, batch, report)
        report.redacted = store.mark_redacted(redacted_ids)
    finally:
        store.close()
    return report


def _append(store: EventStore, batch: list[tuple[int, Delivery]], report: ImportReport) -> None:
    results = store.append([delivery for _, delivery in batch])
    for (number, delivery), result in zip(batch, results, strict=True):
        report.unsigned += delivery.signature == UNSIGNED
        match result.outcome:
            case Outcome.ACCEPTED:
                report.added += 1
            case Outcome.DUPLICATE:
                report.present += 1
            case Outcome.CONFLICTING_DUPLICATE:
                report.conflicting += 1
            case Outcome.SIGNATURE_REPLAYED:
                report.refused.append((number, "signature_replayed"))
