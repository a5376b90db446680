"""What the log already knows of an entity type: the ids it holds, and which are deleted.

A pass needs both: "new to the mirror" in its report, the ids a complete walk must have
seen (or else fetch one by one, which is how deletions are found), and the product ids
to fetch where the API has no product list. Read from the log itself, so the answer does
not depend on whether the projections are current.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from app.sqlite import connect_read_only

if TYPE_CHECKING:
    from pathlib import Path

    from app.sync.snapshots import Kind


@dataclasses.dataclass(frozen=True, slots=True)
class Known:
    """Ids of one entity type in the log; `deleted` is a subset of `ids`."""

    ids: frozenset[str]
    deleted: frozenset[str]

    @property
    def live(self) -> frozenset[str]:
        """Ids the mirror holds and has not seen deleted."""
        return self.ids - self.deleted


def known(events_path: Path, kind: Kind) -> Known:
    """One scan of the log's events of `kind`, read-only."""
    conn = connect_read_only(events_path)
    types = kind.event_types
    marks = ",".join("?" * len(types))
    deleted_marks = ",".join("?" * len(kind.deleted_types))
    text = "CAST(payload AS TEXT)"
    try:
        rows = conn.execute(
            f"SELECT json_extract({text}, '$.id') AS id, MAX(event_type IN ({deleted_marks})) "
            f"FROM events WHERE event_type IN ({marks}) AND json_valid({text}) GROUP BY id",
            (*kind.deleted_types, *types),
        ).fetchall()
    finally:
        conn.close()
    ids = {key for key, _ in rows if isinstance(key, str) and key}
    deleted = {key for key, gone in rows if gone and key in ids}
    return Known(frozenset(ids), frozenset(deleted))
