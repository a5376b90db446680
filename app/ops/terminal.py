"""Readable tables on a terminal, JSON Lines elsewhere: how the inspection commands print."""

from __future__ import annotations

import sys
from typing import IO, TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

# Wide columns (an error message, a long id) are cut so a row stays one line.
MAX_CELL = 60
_encode = msgspec.json.Encoder().encode


def wants_json(as_json: bool, stream: IO[str]) -> bool:
    """JSON when asked, or when the output is a pipe or a file rather than a person."""
    return as_json or not stream.isatty()


def print_table(
    headers: Sequence[str], rows: Iterable[Sequence[object]], stream: IO[str] | None = None
) -> None:
    """Columns padded to their widest cell; NULL shown as `-`."""
    stream = sys.stdout if stream is None else stream
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max([len(h), *(len(row[i]) for row in cells)]) for i, h in enumerate(headers)]
    for row in [list(headers), *cells]:
        stream.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        stream.write("\n")


def print_json_lines(items: Iterable[object], stream: IO[str] | None = None) -> None:
    """One JSON object per line."""
    stream = sys.stdout if stream is None else stream
    for item in items:
        stream.write(_encode(item).decode())
        stream.write("\n")


def _cell(value: object) -> str:
    text = "-" if value is None else " ".join(str(value).split())
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"
