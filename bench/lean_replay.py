"""The rebuild benchmark's baseline: the leanest one-table replay of a log, as a command.

`python bench/lean_replay.py EVENTS_DB OUT_DB`

Reads every event in position order, decodes its body and upserts ten short columns
(id, event type, position, webhook id, event timestamp, updatedAt, status, name, email,
tags as text; no body) into one table, 1,000 events per `executemany`. It stands for the
dumbest replay a user could write: a rebuild of every projection should be no slower.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path
from typing import Any

import msgspec

BATCH = 1_000

DDL = """
CREATE TABLE replay (
    id TEXT PRIMARY KEY,
    event_type TEXT,
    position INTEGER,
    webhook_id TEXT,
    event_timestamp INTEGER,
    updated_at TEXT,
    status TEXT,
    name TEXT,
    email TEXT,
    tags TEXT
)
"""
UPSERT = (
    "INSERT INTO replay VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
    "event_type = excluded.event_type, position = excluded.position, "
    "webhook_id = excluded.webhook_id, event_timestamp = excluded.event_timestamp, "
    "updated_at = excluded.updated_at, status = excluded.status, name = excluded.name, "
    "email = excluded.email, tags = excluded.tags"
)
SELECT = (
    "SELECT position, webhook_id, event_type, event_timestamp, payload FROM events "
    "WHERE position > ? ORDER BY position LIMIT ?"
)


_encode = msgspec.json.Encoder().encode


def _text(value: object) -> object:
    """A scalar as it is, a list or object as JSON text (as the projections store lists)."""
    return (
        value if value is None or isinstance(value, str | int | float) else _encode(value).decode()
    )


def replay(log_path: Path, out_path: Path) -> int:
    """Replay the log at `log_path` into a fresh table at `out_path`; return its rows."""
    log = sqlite3.connect(f"file:{log_path}?mode=ro", uri=True)
    # The same connection settings as a rebuild's scratch database.
    out = sqlite3.connect(out_path, isolation_level=None)
    out.execute("PRAGMA journal_mode=WAL")
    out.execute("PRAGMA synchronous=OFF")
    out.execute("PRAGMA cache_size=-65536")
    out.execute(DDL)
    decode = msgspec.json.decode
    after = 0
    while batch := log.execute(SELECT, (after, BATCH)).fetchall():
        rows = []
        for position, webhook_id, event_type, event_timestamp, payload in batch:
            body: dict[str, Any] = decode(payload)
            rows.append(
                (
                    body.get("id") or body.get("messageId"),
                    event_type,
                    position,
                    webhook_id,
                    event_timestamp,
                    _text(body.get("updatedAt")),
                    _text(body.get("status")),
                    _text(body.get("name") or body.get("firstName")),
                    _text(body.get("email")),
                    _text(body.get("tags")),
                )
            )
        out.execute("BEGIN")
        out.executemany(UPSERT, rows)
        out.execute("COMMIT")
        after = batch[-1][0]
    count: int = out.execute("SELECT COUNT(*) FROM replay").fetchone()[0]
    out.close()
    log.close()
    return count


if __name__ == "__main__":
    print(f"{replay(Path(sys.argv[1]), Path(sys.argv[2]))} rows")
