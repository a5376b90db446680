"""The tables depend on the set of events: not on arrival order, duplication or batch size.

Histories are drawn by `histories` (tests/_helpers.py): a few ids of every entity kind,
random subsets of fields, `updatedAt` and timestamp headers from small sets so that ties
are frequent, explicit nulls, empty lists in updates, deletes, and message statuses known
and unknown.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hypothesis import given, settings
from hypothesis import strategies as st

from app.eventlog.store import Outcome
from tests._helpers import Dump, Harness, histories, rebuilt, replayed

if TYPE_CHECKING:
    from app.eventlog.rows import Delivery


def _harness(directory: Path, **kwargs: Any) -> Harness:
    return Harness(directory, synchronous="OFF", **kwargs)


def _clean_tables(harness: Harness) -> Dump:
    """The tables, after checking that every generated event was usable."""
    assert harness.errors() == []
    return harness.dump()


@settings(max_examples=60, deadline=None)
@given(history=histories(), data=st.data())
def test_arrival_order_and_duplicates_do_not_matter(
    history: list[Delivery], data: st.DataObject
) -> None:
    """Any permutation, projected live, equals the original order projected at once."""
    shuffled = data.draw(st.permutations(history), label="arrival order")
    again = data.draw(st.lists(st.sampled_from(history), max_size=5), label="redelivered")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        at_once = _harness(root / "at_once")
        live = _harness(root / "live")
        try:
            at_once.append(history)
            at_once.project()
            expected = _clean_tables(at_once)

            for event in shuffled:
                live.append([event])
                live.project()
            assert _clean_tables(live) == expected

            # The live tables equal a from-scratch projection of the same log.
            assert rebuilt(root / "rebuild", live.store) == expected

            # A redelivery is a duplicate in the log and changes no table.
            results = live.append(again)
            assert all(r.outcome is Outcome.DUPLICATE for r in results)
            assert live.store.count() == len(history)
            live.project()
            assert _clean_tables(live) == expected

            # Applying every event a second time changes nothing either.
            assert replayed(live) == expected
        finally:
            at_once.close()
            live.close()


@settings(max_examples=40, deadline=None)
@given(history=histories(), data=st.data())
def test_batch_size_does_not_matter(history: list[Delivery], data: st.DataObject) -> None:
    """Batches of any size over one log give the same tables as one event at a time."""
    sizes = data.draw(
        st.lists(st.integers(2, len(history) + 1), min_size=1, max_size=3), label="sizes"
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        first = _harness(root / "one")
        first.append(history)
        others = [_harness(root / f"{n}-{size}", store=first.store) for n, size in enumerate(sizes)]
        try:
            first.project(1)
            expected = _clean_tables(first)
            for size, harness in zip(sizes, others, strict=True):
                harness.project(size)
                assert _clean_tables(harness) == expected, size
        finally:
            for harness in others:
                harness.close()
            first.close()
