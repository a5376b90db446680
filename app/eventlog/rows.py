"""The shapes of the log's rows: one Struct names the columns, every statement derives them."""

from __future__ import annotations

import msgspec


class StoredEvent(msgspec.Struct, frozen=True):
    """One row of the log (a Struct: a rebuild makes millions, and its init is C)."""

    position: int
    webhook_id: str
    event_type: str
    event_timestamp: int | None
    signed_at: int
    received_at: str
    signature: str
    payload: bytes


class Delivery(msgspec.Struct, frozen=True):
    """One authentic delivery, as it will be kept (a Struct: one per request, C init).

    Its fields are a row's, but for the position (given at append) and `digests`, the
    signature's digests the signature memory binds to its event type.
    """

    webhook_id: str
    event_type: str
    event_timestamp: int | None
    signed_at: int
    received_at: str
    signature: str
    payload: bytes
    digests: tuple[str, ...]

    def row(self) -> tuple[object, ...]:
        """The values of `ROW_COLUMNS`, in order (the fields before `digests`)."""
        return msgspec.structs.astuple(self)[:-1]


# Every column of a row but its position, in `StoredEvent`'s order.
ROW_COLUMNS: tuple[str, ...] = StoredEvent.__struct_fields__[1:]
# The same, as a SELECT or INSERT column list.
ROW_COLUMN_LIST = ", ".join(ROW_COLUMNS)
EVENT_COLUMN_LIST = ", ".join(StoredEvent.__struct_fields__)
