"""`publish.json`: where the publisher stands, readable without PostgreSQL or its driver.

`status` and `/metrics` read it (with how many feed lines lie after its cursor), so this
module needs neither psycopg, an optional extra, nor a connection.
"""

from __future__ import annotations

import os
import sqlite3
import time
from typing import TYPE_CHECKING

import msgspec

from app.instants import format_instant
from app.projection.feed import Feed
from app.sqlite import connect_read_only
from projections import discover

if TYPE_CHECKING:
    from pathlib import Path

    from app.settings import Settings

STATUS_FILE = "publish.json"


class PublishStatus(msgspec.Struct, kw_only=True):
    """What `status` and `/metrics` know of the publisher, kept in `publish.json`."""

    cursor: str | None = None
    committed_at: str | None = None
    error: str | None = None
    error_at: str | None = None
    errors: int = 0
    target: str | None = None


def read_status(data_dir: Path) -> PublishStatus:
    """The publisher's last recorded state; empty when it never ran."""
    try:
        return msgspec.json.decode((data_dir / STATUS_FILE).read_bytes(), type=PublishStatus)
    except FileNotFoundError:
        return PublishStatus()
    except msgspec.DecodeError:
        return PublishStatus(error="publish.json is unreadable")


def write_status(data_dir: Path, status: PublishStatus) -> None:
    """Replace `publish.json` whole (a reader never sees half of it), private to its owner."""
    path = data_dir / STATUS_FILE
    temporary = path.with_name(f".{STATUS_FILE}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(msgspec.json.encode(status))
    temporary.replace(path)


def now() -> str:
    """The instant `publish.json`'s times are written in: ISO 8601 UTC, milliseconds."""
    return format_instant(time.time())


def unavailable(data_dir: Path, why: str) -> None:
    """Record that publishing cannot start, and why, for `status` and `/metrics`."""
    status = read_status(data_dir)
    status.error, status.error_at = why, now()
    write_status(data_dir, status)


def report(settings: Settings) -> dict[str, object]:
    """`status --json`'s `publish`: the cursor, how many feed lines lie after it, the error.

    All null when nothing was ever published from this data directory.
    """
    recorded = read_status(settings.data_dir)
    lag: int | None = None
    if recorded.cursor is not None and settings.projections_path.exists():
        try:
            conn = connect_read_only(settings.projections_path)
            try:
                lag = Feed(conn, discover()).count_after(recorded.cursor)
            finally:
                conn.close()
        except sqlite3.DatabaseError:
            pass  # damaged: `status` says so of projections.db itself; the lag is unknown
    return {"cursor": recorded.cursor, "lag": lag, "error": recorded.error}
