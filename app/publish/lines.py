"""The change feed's lines as the publisher takes them: a row changed, or a reset.

They come either as `changes` prints them (JSON Lines, `read_line`) or, in-process, as
`Feed.lines` gives them (`line_from`), with no JSON in between.
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


@dataclasses.dataclass(frozen=True, slots=True)
class RowChange:
    """One changed row: its whole current value, or None when it no longer exists."""

    cursor: str
    projection: str
    table: str
    key: Mapping[str, Any]
    row: Mapping[str, Any] | None


@dataclasses.dataclass(frozen=True, slots=True)
class Reset:
    """A rebuild replaced the projection's tables; every row of the new ones follows."""

    projection: str
    cursor: str


FeedLine = RowChange | Reset


@dataclasses.dataclass(frozen=True, slots=True)
class Batch:
    """Lines applied in one transaction; `at_head` when no line followed them yet."""

    lines: Sequence[FeedLine]
    at_head: bool


class FeedLineError(ValueError):
    """A line that is not one of the feed's two shapes."""


def read_line(text: str | bytes) -> FeedLine:
    """One JSON line of `changes` as the publisher reads it."""
    try:
        data = json.loads(text)
    except ValueError as error:
        raise FeedLineError("not a JSON line") from error
    if not isinstance(data, dict):
        raise FeedLineError("not a change feed line")
    return line_from(data)


def line_from(data: Mapping[str, Any]) -> FeedLine:
    """A line of the feed as `Feed.lines` gives it (or `changes` prints it), checked.

    The publisher reads the feed in-process: the lines need not go through JSON.
    """
    if "reset" in data and "cursor" in data:
        return Reset(projection=str(data["reset"]), cursor=str(data["cursor"]))
    key, row = data.get("key"), data.get("row", ...)
    if (
        not isinstance(key, dict)
        or (row is not None and not isinstance(row, dict))
        or not {"cursor", "projection", "table"} <= data.keys()
    ):
        raise FeedLineError("not a change feed line")
    return RowChange(
        cursor=str(data["cursor"]),
        projection=str(data["projection"]),
        table=str(data["table"]),
        key=key,
        row=row,
    )
