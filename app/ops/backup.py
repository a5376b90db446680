"""`backup`: a consistent copy of the whole log, made with SQLite's online backup API.

The copy is taken in one step under one read transaction, so it is the log as of one
commit, with every table (events, digests, conflicting duplicates). In WAL mode a
reader never blocks the writer: deliveries go on being accepted meanwhile. The copy is
written beside its destination, checked with `PRAGMA integrity_check`, and only then
linked into place, which fails if anything is there already: a backup never replaces a
file, not even one that appeared while it ran.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sqlite3
from typing import TYPE_CHECKING

from app.sqlite import connect_read_only

if TYPE_CHECKING:
    from pathlib import Path


class BackupError(Exception):
    """The backup could not be made; nothing was left at the destination."""


@dataclasses.dataclass(frozen=True, slots=True)
class BackupReport:
    """What the copy holds."""

    destination: Path
    tables: dict[str, int]
    head: int
    size_bytes: int


def backup(events_path: Path, destination: Path) -> BackupReport:
    """Copy the log at `events_path` to `destination` (mode 0600), which must not exist."""
    if not events_path.is_file():
        raise BackupError(f"there is no event log at {events_path}")
    if destination.exists():
        raise BackupError(f"{destination} already exists; a backup never overwrites a file")
    if not destination.parent.is_dir():
        raise BackupError(f"the directory {destination.parent} does not exist")
    partial = destination.with_name(f".{destination.name}.partial")
    try:
        _create_private(partial)
        report = _copy_and_check(events_path, partial)
        os.link(partial, destination)
    except FileExistsError:
        raise BackupError(
            f"{destination} appeared while the backup ran; it was left alone"
        ) from None
    except sqlite3.Error as exc:
        raise BackupError(f"the copy failed: {exc}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    return dataclasses.replace(report, destination=destination)


def _create_private(path: Path) -> None:
    """An empty file only this user can read: the log holds personal data."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        raise BackupError(
            f"{path} exists: another backup to the same place is running, or one was "
            "killed; remove it if none runs"
        ) from None


def _copy_and_check(events_path: Path, target_path: Path) -> BackupReport:
    source = connect_read_only(events_path)
    target = sqlite3.connect(target_path, isolation_level=None)
    try:
        # All pages in one step: one consistent snapshot, synced as the copy commits.
        source.backup(target)
        # A single self-contained file: no -wal beside the copy to be forgotten.
        target.execute("PRAGMA journal_mode=DELETE")
        problems = [row[0] for row in target.execute("PRAGMA integrity_check")]
        if problems != ["ok"]:
            raise BackupError("the copy fails PRAGMA integrity_check: " + "; ".join(problems[:5]))
        names = [
            row[0]
            for row in target.execute(
                "SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name"
            )
        ]
        tables = {
            name: int(target.execute(f'SELECT COUNT(*) FROM "{name}"').fetchone()[0])
            for name in names
        }
        head = int(target.execute("SELECT COALESCE(MAX(position), 0) FROM events").fetchone()[0])
    finally:
        target.close()
        source.close()
    return BackupReport(target_path, tables, head, target_path.stat().st_size)
