"""Scratch databases: where a rebuild builds new tables, and the fold of the log into one.

A scratch is rebuilt from nothing after any crash, so it is written without durability,
and it is never trusted across runs, only replaced.
"""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING

from app.projection import projector as projector_module
from projections import Fresh

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable
    from pathlib import Path

    from app.eventlog.rows import StoredEvent
    from app.settings import Settings
    from projections import Projection

BATCH = 20_000
SCRATCH_CACHE_KIB = 65_536


def scratch_path(settings: Settings, suffix: str = "") -> Path:
    """The scratch file for `suffix`, with whatever a killed rebuild left there removed."""
    path = settings.data_dir / f"rebuild-scratch{suffix}.db"
    for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        leftover.unlink(missing_ok=True)
    return path


def open_scratch(path: Path) -> sqlite3.Connection:
    """A connection to a scratch: no fsync (it needs no durability), a large page cache.

    It stays in WAL mode so that `check` can hold a read snapshot across it.
    """
    conn = projector_module.connect(path, synchronous="OFF")
    conn.execute(f"PRAGMA cache_size=-{SCRATCH_CACHE_KIB}")
    conn.execute("PRAGMA temp_store=MEMORY")
    return conn


def drop_indexes(scratch: sqlite3.Connection) -> None:
    """Drop the scratch's secondary indexes: nothing queries them there.

    Every row written to the scratch would otherwise update each of them; they are
    built once from the finished rows instead.
    """
    indexes = scratch.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
    ).fetchall()
    for (name,) in indexes:
        scratch.execute(f"DROP INDEX {name}")


def fold_log(
    builder: projector_module.Projector, advance: Callable[[int], None], until: int
) -> None:
    """Fold the log up to `until` into the scratch, one entity at a time.

    The fold does not depend on the order of events, so the log is read grouped by
    entity: each entity's state is built in memory once and written once, instead of
    being loaded and rewritten for every batch its events fall in. Memory holds one
    chunk of about `BATCH` events (never splitting an entity) and its entities, the keys
    that changes named outside their own entity's events (none in a well-formed log), and
    the cursor of events sorted by entity, which SQLite spills to disk as it grows.
    The scratch is fresh and a chunk never splits an entity, so an entity of a chunk has
    no stored state yet and is not looked up (`Fresh`), unless an earlier chunk wrote it.
    """
    store = builder.store
    for projection in builder.projections:
        fresh = Fresh(set())
        chunk: list[StoredEvent] = []
        previous: object = None
        ordered = store.events_by_entity(
            projection.EVENT_TYPES, projection.TABLE.payload_key, until
        )
        for entity, event in ordered:
            if len(chunk) >= BATCH and entity != previous:
                _apply_chunk(builder, projection, chunk, fresh, advance)
                chunk = []
                fresh.entities = set()
            chunk.append(event)
            fresh.entities.add(entity)
            previous = entity
        if chunk:
            _apply_chunk(builder, projection, chunk, fresh, advance)
    builder.set_checkpoints(until)


def _apply_chunk(
    builder: projector_module.Projector,
    projection: Projection,
    events: list[StoredEvent],
    fresh: Fresh,
    advance: Callable[[int], None],
) -> None:
    # Events within an entity are in position order, which is all the fold relies on.
    builder.apply(projection, events, fresh)
    gc.collect()
    advance(len(events))
