"""The ordering rules every projection shares, each in one place.

A change to one applies everywhere, and to history through `rebuild`.

Versions are encoded as strings that sort like the tuples they stand for, so the fold
compares them with one `>` and they can be kept as plain JSON.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Protocol

import msgspec

from app.instants import format_instant

__all__ = [
    "carries_list",
    "event_time",
    "event_version",
    "format_instant",
    "json_text",
    "parse_instant",
    "phone_digits",
    "phone_number_key",
    "status_rank",
    "status_version",
]

if TYPE_CHECKING:
    from collections.abc import Sequence

# Offsets keep every encoded integer non-negative and of fixed width (20 digits).
_INSTANT_OFFSET = 10**17  # microseconds: covers years 1 to 9999
_INTEGER_OFFSET = 10**18  # the timestamp header is read as at most 18 digits
_ABSENT = "0" + "0" * 20
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)

STATUS_RANKS = {"pending": 1, "queued": 1, "sent": 2, "delivered": 3, "read": 4, "failed": 5}


def parse_instant(text: object) -> int | None:
    """Microseconds since the epoch for an ISO 8601 timestamp, None if it is not one.

    A timestamp without an offset is read as UTC, the sender's own convention.
    """
    if not isinstance(text, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return (parsed - _EPOCH) // _MICROSECOND


def _encode(value: int | None, offset: int) -> str:
    return _ABSENT if value is None else f"1{value + offset:020d}"


def event_version(updated_at: object, event_timestamp: int | None, webhook_id: str) -> str:
    """How new an event's fields are: (`updatedAt`, timestamp header, webhook id).

    Compared as an instant, then an integer, then a string; a missing or unparsable
    part ranks below every present one. Webhook ids are unique in the log, so two
    distinct events never tie and the fold does not depend on arrival order.
    """
    return (
        _encode(parse_instant(updated_at), _INSTANT_OFFSET)
        + _encode(event_timestamp, _INTEGER_OFFSET)
        + webhook_id
    )


def status_rank(status: object) -> int:
    """How far a message status has got; a status only moves forward.

    pending/queued < sent < delivered < read, and failed beats them all. An unknown
    status ranks lowest, so a status the sender adds later can never hide a known one.
    """
    return STATUS_RANKS.get(status, 0) if isinstance(status, str) else 0


def status_version(status: object, message_version: str) -> str:
    """Which status delivery wins: the higher rank, then (timestamp header, webhook id).

    `message_version` is the event's `event_version(None, timestamp, webhook id)`,
    which the message projection has already computed for its other fields.
    """
    return f"{status_rank(status)}{message_version}"


def carries_list(event_type: str, value: Sequence[object]) -> bool:
    """Whether a list in a payload says anything.

    The sender's `*.updated` payloads show empty lists for the collections they leave
    out, so an empty list there means "not carried", not "now empty". Everywhere else a
    list, empty or not, replaces the previous one whole: in `*.created`, and in the
    `*.snapshot`s that `sync` reads from the Open API, whose lists are the entity's
    whole lists (an empty `lineItems` there means none).
    """
    return bool(value) or not event_type.endswith(".updated")


def json_text(value: object) -> str:
    """Lists and media are stored as compact JSON text."""
    return msgspec.json.encode(value).decode()


class _Timestamped(Protocol):
    @property
    def event_timestamp(self) -> int | None: ...
    @property
    def signed_at(self) -> int: ...


def event_time(event: _Timestamped) -> str:
    """When an event happened: its timestamp header, or the signature's `t` without one."""
    seconds = event.signed_at if event.event_timestamp is None else event.event_timestamp
    return format_instant(seconds)


# What people write between the digits of a phone number: spaces (a no-break space when
# pasted from a document), dashes, dots, brackets, slashes and the leading plus.
_PHONE_SEPARATORS = (" ", "\u00a0", "-", ".", "(", ")", "/", "+")


def phone_digits(expression: str) -> str:
    """SQL (SQLite and PostgreSQL alike) for a phone number without its separators.

    SPEC section 11 matches a message to a customer "as a number", non-digits removed.
    Neither dialect can remove every non-digit in SQL the other accepts (SQLite has no
    regular expressions by default), so the separators people write in numbers are
    removed; a number holding anything else (letters, an extension) matches no other.
    """
    for separator in _PHONE_SEPARATORS:
        expression = f"REPLACE({expression}, '{separator}', '')"
    return expression


def phone_number_key(digits: str) -> str:
    """SQL for the number that `digits` (a `phone_digits` result) stands for.

    A leading `00` (the international prefix) is dropped and a leading `0` read as
    Indonesia's `62`, so `0812…`, `+62 812…` and `62-812…` are one number. Nothing left
    is NULL, which matches nothing.
    """
    return (
        f"NULLIF(CASE WHEN {digits} LIKE '00%' THEN SUBSTR({digits}, 3) "
        f"WHEN {digits} LIKE '0%' THEN '62' || SUBSTR({digits}, 2) ELSE {digits} END, '')"
    )
