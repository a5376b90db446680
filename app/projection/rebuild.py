"""`rebuild`: recompute projections from the whole log, online, then switch in one step.

The new tables are built in scratch databases beside `projections.db` (`scratch`), one
per projection, each by a process of its own, so the live projector of a running `serve`
keeps writing the old tables meanwhile and the two never write the same tables. Then
`switch` replaces the old tables with the new ones in one transaction.

Memory is bounded per projection: one chunk of about `scratch.BATCH` events and the
state of the entities they touch, `scratch.SCRATCH_CACHE_KIB` of SQLite page cache, and
SQLite's sort of the log, which spills to temporary files as the log grows. Measured on
a log of a million deliveries: at most 148 MiB per process.
"""

from __future__ import annotations

import dataclasses
import gc
import multiprocessing
import sys
import time
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from typing import IO, TYPE_CHECKING

from app.eventlog.reads import LogReader
from app.projection import projector as projector_module
from app.projection import scratch as scratch_module
from app.projection.rebuild_lock import RebuildError, exclusive
from app.projection.switch import switch
from app.terminal import Progress
from projections import discover

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Sequence
    from multiprocessing.sharedctypes import Synchronized
    from pathlib import Path

    from app.settings import Settings
    from projections import Projection

__all__ = ["RebuildError", "Summary", "rebuild", "select"]


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
    with exclusive(settings.data_dir):
        store = LogReader.open(settings.events_path)
        paths = {p.NAME: scratch_module.scratch_path(settings, f"-{p.NAME}") for p in projections}
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
                scratch_module.scratch_path(settings, f"-{projection.NAME}")
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
    idles a core once its share is done. Memory per process is bounded (see `scratch.fold_log`).
    Processes are forked, so they run exactly the projection code of this process.
    """
    context = multiprocessing.get_context("fork")
    done = context.Value("q", 0)
    with ProcessPoolExecutor(
        max_workers=len(projections), mp_context=context, initializer=_count_into, initargs=(done,)
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


def _count_into(done: Synchronized[int]) -> None:
    """In a new worker: the shared counter of events done (it can only be inherited)."""
    _done_in_worker.append(done)


def _build_scratch(events_path: Path, scratch_path: Path, name: str, until: int) -> Summary:
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
    scratch = scratch_module.open_scratch(scratch_path)
    try:
        builder = projector_module.Projector(scratch, store, [projection])
        builder.install_all()
        scratch_module.drop_indexes(scratch)

        def advance(events: int) -> None:
            done = _done_in_worker[0]
            with done.get_lock():
                done.value += events

        scratch_module.fold_log(builder, advance, until)
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
