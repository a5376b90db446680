"""`rebuild`: recompute projections from the whole log, online, then switch in one step.

The new tables are built in scratch databases beside `projections.db`, one per
projection, each by a process of its own, so the live projector of a running `serve`
keeps writing the old tables meanwhile and the two never write the same tables. Then
`switch` replaces the old tables with the new ones in one transaction: it takes
`projections.db`'s write lock, applies the last events that arrived during the build,
and replaces the old tables and checkpoint with the new ones, so readers see the old
complete tables until the new complete ones, and the live projector carries on from the
new checkpoint. `check` (`rebuild --check`) builds the same scratch and compares it with
the live tables instead.

A scratch is rebuilt from nothing after any crash, so it is written without durability,
and it is never trusted across runs, only replaced. One rebuild (or check, or forget,
whose erasure the scratch copies would miss) runs at a time: the data directory's
rebuild lock.

Memory is bounded per projection: one chunk of about `BATCH` events and the state of
the entities they touch, `SCRATCH_CACHE_KIB` of SQLite page cache, and SQLite's sort of
the log, which spills to temporary files as the log grows. Measured on a log of a
million deliveries: at most 148 MiB per process.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import gc
import multiprocessing
import os
import signal
import sqlite3
import sys
import time
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from typing import IO, TYPE_CHECKING

import msgspec

from app.eventlog.reads import LogReader
from app.files import holding
from app.projection import feed
from app.projection import projector as projector_module
from app.projection.recovery import recover
from app.sqlite import rollback_if_open
from app.terminal import Progress
from projections import Fresh, discover

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from multiprocessing.sharedctypes import Synchronized
    from pathlib import Path

    from app.eventlog.rows import StoredEvent
    from app.settings import Settings
    from projections import Projection

BATCH = 20_000
SCRATCH_CACHE_KIB = 65_536
MAX_SHOWN_DIFFERENCES = 20


class RebuildError(Exception):
    """A rebuild cannot start: unknown projection names, or another rebuild running."""


@contextlib.contextmanager
def exclusive(settings: Settings) -> Iterator[None]:
    """Hold the data directory's rebuild lock; a second rebuild refuses at once."""
    # `forget` and serve's forget sweep hold it too: the scratch copies would hold what
    # they erase.
    busy = RebuildError(
        f"another rebuild, or a forget, is running on {settings.data_dir}; wait for it to finish"
    )
    with holding(settings.rebuild_lock_path, busy):
        yield


@dataclasses.dataclass(slots=True)
class Summary:
    """What a rebuild did for one projection."""

    name: str
    events: int = 0
    rows: int = 0
    errors: int = 0
    seconds: float = 0.0


def select(projections: Sequence[Projection], names: Sequence[str]) -> list[Projection]:
    """The named projections (all when none are named); unknown names are an error."""
    known = {p.NAME: p for p in projections}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise RebuildError(
            f"unknown projection {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return [known[name] for name in dict.fromkeys(names)] if names else list(projections)


def rebuild(
    settings: Settings,
    projections: Sequence[Projection],
    stream: IO[str] = sys.stderr,
) -> list[Summary]:
    """Rebuild `projections` from the whole log and switch them in atomically."""
    with exclusive(settings):
        remove_scratch_leftovers(settings)
        recover(settings)
        store = LogReader.open(settings.events_path)
        paths = {p.NAME: scratch_path(settings, f"-{p.NAME}") for p in projections}
        main = projector_module.connect(settings.projections_path)
        try:
            head = store.head()
            progress = Progress(stream, event="rebuild_progress")
            progress.begin(total=head)
            built = _build_in_parallel(settings, projections, paths, head, progress)
            progress.finish()
            switch(main, store, projections, paths, built)
            summaries = _with_errors([built[p.NAME] for p in projections], main)
        finally:
            main.close()
            store.close()
            for projection in projections:
                scratch_path(settings, f"-{projection.NAME}")
    return summaries


def _build_in_parallel(
    settings: Settings,
    projections: Sequence[Projection],
    paths: dict[str, Path],
    until: int,
    progress: Progress,
) -> dict[str, Summary]:
    """Build each projection's scratch in a process of its own, all at once.

    The fold is pure Python, so one process would use one core; projections share
    nothing but the (read-only) log, so they build side by side. One process each, not
    one per core: their sizes differ a lot (messages and orders dwarf products), and the
    OS shares the cores among them until the last one ends, where a pool of one per core
    idles a core once its share is done. Memory per process is bounded (see `fold_log`).
    Processes are forked, so they run exactly the projection code of this process.
    """
    context = multiprocessing.get_context("fork")
    done = context.Value("q", 0)
    with ProcessPoolExecutor(
        max_workers=len(projections),
        mp_context=context,
        initializer=_start_worker,
        initargs=(done, os.getpid()),
    ) as pool:
        futures = {
            p.NAME: pool.submit(_build_scratch, settings.events_path, paths[p.NAME], p.NAME, until)
            for p in projections
        }
        pending = set(futures.values())
        while pending:
            _, pending = wait(pending, timeout=0.5, return_when=FIRST_EXCEPTION)
            progress.advance(done.value - progress.done)
        return {name: future.result() for name, future in futures.items()}


_done_in_worker: list[Synchronized[int]] = []


def _start_worker(done: Synchronized[int], parent: int) -> None:
    """In a new worker: die with the rebuild, and keep the shared counter of events done.

    A worker waits on a pipe whose writing end it inherited itself, so it would never
    see its parent go: killed (`kill -9`, the OOM killer), the rebuild would leave its
    workers blocked for good, holding their scratch files. The kernel kills each worker
    when its parent dies instead; a parent that died before this ran is seen by
    `getppid` and the worker leaves at once. (The rebuild lock is a record lock, which
    a fork does not inherit: a worker never holds it.) The counter can only be inherited.
    """
    _die_with_parent()
    if os.getppid() != parent:
        os._exit(1)
    _done_in_worker.append(done)


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent ends (`prctl(PR_SET_PDEATHSIG)`)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))


def _build_scratch(events_path: Path, path: Path, name: str, until: int) -> Summary:
    """In a worker: fold the log up to `until` into one projection's scratch database."""
    started = time.monotonic()
    projection = next(p for p in discover() if name == p.NAME)
    # A chunk's changes are a million small containers, none in a reference cycle: the
    # cyclic collector, triggered by their allocation, rescanned them over and over and
    # took half of the fold's time. It runs once per chunk instead (`_apply_chunk`), over
    # the chunk's own objects only: what the fork inherited is frozen out of its way.
    gc.disable()
    gc.freeze()
    store = LogReader.open(events_path)
    scratch = open_scratch(path)
    try:
        builder = projector_module.Projector(scratch, store, [projection], record=False)
        builder.install_all()
        drop_indexes(scratch)

        def advance(events: int) -> None:
            done = _done_in_worker[0]
            with done.get_lock():
                done.value += events

        fold_log(builder, advance, until)
        # Indexed here, in parallel, rather than in the switch: the switch's copy then
        # takes each index as it is (SQLite's transfer of identical tables) instead of
        # sorting it again while every other rebuild step waits.
        for statement in projection.TABLE.ddl():
            if statement.startswith("CREATE INDEX"):
                scratch.execute(statement)
        stats = builder.stats[name]
        return Summary(name, stats.events, stats.rows, seconds=time.monotonic() - started)
    finally:
        scratch.close()
        store.close()


def _with_errors(summaries: list[Summary], main: sqlite3.Connection) -> list[Summary]:
    """The summaries with each projection's error count as the switch left it."""
    errors = dict(main.execute(projector_module.COUNT_ERRORS).fetchall())
    for summary in summaries:
        summary.errors = errors.get(summary.name, 0)
        summary.seconds = round(summary.seconds, 3)
    return summaries


def check(
    settings: Settings,
    projections: Sequence[Projection],
    stream: IO[str] = sys.stdout,
) -> int:
    """Rebuild into scratch tables and compare them with the live ones; change nothing.

    Each projection is rebuilt up to the live checkpoint it is compared with, read in the
    same snapshot, so a running `serve` does not make the comparison drift. Returns the
    number of differing rows.
    """
    with exclusive(settings):
        remove_scratch_leftovers(settings)
        store = LogReader.open(settings.events_path)
        path = scratch_path(settings)
        scratch = open_scratch(path)
        main = projector_module.connect(settings.projections_path)
        try:
            main.execute("ATTACH DATABASE ? AS scratch", (str(path),))
            main.execute("BEGIN")
            checkpoints = {
                name: position
                for name, _, position in main.execute(projector_module.SELECT_CHECKPOINTS)
            }
            for projection in projections:
                builder = projector_module.Projector(scratch, store, [projection], record=False)
                builder.install_all()
                drop_indexes(scratch)
                fold_log(builder, lambda _events: None, checkpoints.get(projection.NAME, 0))
            # Compare only once every scratch table exists: the snapshot this connection
            # takes of the scratch at its first read fixes the schema it can see.
            differences = sum(_compare(main, projection, stream) for projection in projections)
            main.execute("ROLLBACK")
            main.execute("DETACH DATABASE scratch")
        finally:
            main.close()
            scratch.close()
            store.close()
            scratch_path(settings)
    return differences


def _compare(main: sqlite3.Connection, projection: Projection, stream: IO[str]) -> int:
    differences = 0
    for table in projection.TABLE.table_names:
        for label, first, second in (
            ("only live", "main", "scratch"),
            ("only rebuilt", "scratch", "main"),
        ):
            try:
                rows = main.execute(
                    f"SELECT * FROM {first}.{table} EXCEPT SELECT * FROM {second}.{table}"
                ).fetchall()
            except sqlite3.OperationalError as exc:
                # A live table that is missing, or has other columns (a stale projection
                # whose schema changed), differs as a whole.
                stream.write(f"{table}: cannot compare: {exc}\n")
                differences += 1
                break
            differences += len(rows)
            for row in rows[:MAX_SHOWN_DIFFERENCES]:
                stream.write(f"{table}: {label}: {row!r}\n")
    return differences


def switch(
    main: sqlite3.Connection,
    store: LogReader,
    projections: Sequence[Projection],
    paths: dict[str, Path],
    built: dict[str, Summary],
) -> None:
    """Replace the live tables with the scratch ones in one transaction.

    What each projection takes from the log meanwhile, and the time it takes, is added
    to its summary in `built`.
    """
    for projection in projections:
        main.execute(
            f"ATTACH DATABASE ? AS scratch_{projection.NAME}", (str(paths[projection.NAME]),)
        )
    try:
        # Take the write lock of projections.db alone (BEGIN IMMEDIATE would lock the
        # scratches too, which still have to take the last events).
        main.execute("BEGIN")
        try:
            main.execute("UPDATE main._projections SET position = position")
            for projection in projections:
                started = time.monotonic()
                # The live projector is held off by the write lock now: whatever arrived
                # in the log during the build goes into the scratch before it is copied.
                scratch = open_scratch(paths[projection.NAME])
                try:
                    tail = projector_module.Projector(scratch, store, [projection], record=False)
                    tail.catch_up(BATCH)
                finally:
                    scratch.close()
                _replace(main, projection, f"scratch_{projection.NAME}")
                summary = built[projection.NAME]
                summary.events += tail.stats[projection.NAME].events
                summary.rows += tail.stats[projection.NAME].rows
                summary.seconds += time.monotonic() - started
            main.execute("COMMIT")
        except BaseException:
            rollback_if_open(main)
            raise
    finally:
        for projection in projections:
            main.execute(f"DETACH DATABASE scratch_{projection.NAME}")


def _replace(main: sqlite3.Connection, projection: Projection, scratch: str) -> None:
    row = main.execute(
        "SELECT tables FROM main._projections WHERE name = ?", (projection.NAME,)
    ).fetchone()
    old_names = msgspec.json.decode(row[0], type=list[str]) if row else []
    # Views go with their tables (and come back with the DDL below); views of other
    # projections that read these tables survive a DROP TABLE in SQLite, and nothing may
    # use ALTER TABLE ... RENAME, which fails on such a view ("error in view").
    for name in dict.fromkeys([*old_names, *projector_module.owned_names(projection)]):
        kind = main.execute(
            "SELECT type FROM main.sqlite_master WHERE name = ? AND type IN ('table', 'view')",
            (name,),
        ).fetchone()
        if kind:
            main.execute(f"DROP {kind[0].upper()} main.{name}")
    # Empty tables with the scratch's very indexes: SQLite then copies each table and
    # its indexes page by page in order (its transfer optimisation), sorting nothing.
    # The projection's views are created with them.
    for statement in projection.TABLE.ddl():
        main.execute(statement)
    for table in projection.TABLE.table_names:
        main.execute(f"INSERT INTO main.{table} SELECT * FROM {scratch}.{table}")
    main.execute(
        f"INSERT OR REPLACE INTO main._projections SELECT * FROM {scratch}._projections "
        "WHERE name = ?",
        (projection.NAME,),
    )
    feed.reset(main, projection)
    main.execute("DELETE FROM main._projection_errors WHERE projection = ?", (projection.NAME,))
    main.execute(
        f"INSERT INTO main._projection_errors SELECT * FROM {scratch}._projection_errors "
        "WHERE projection = ?",
        (projection.NAME,),
    )
    main.execute("DELETE FROM main._projection_warnings WHERE projection = ?", (projection.NAME,))
    main.execute(
        f"INSERT INTO main._projection_warnings SELECT * FROM {scratch}._projection_warnings "
        "WHERE projection = ?",
        (projection.NAME,),
    )


def remove_scratch_leftovers(settings: Settings) -> int:
    """Remove what killed rebuilds left; call it holding the rebuild lock. How many files.

    Under the lock no rebuild is running, so every scratch file is a leftover, and it
    holds personal data (a forget since would have missed it).
    """
    leftovers = settings.scratch_leftovers()
    for leftover in leftovers:
        leftover.unlink(missing_ok=True)
    return len(leftovers)


def remove_scratch_leftovers_unless_busy(settings: Settings) -> int:
    """`remove_scratch_leftovers`, unless a rebuild (or forget) is running: then none."""
    try:
        with exclusive(settings):
            return remove_scratch_leftovers(settings)
    except RebuildError:
        return 0


def scratch_path(settings: Settings, suffix: str = "") -> Path:
    """The scratch file for `suffix`, with whatever a killed rebuild left there removed."""
    path = settings.scratch_path(suffix)
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
