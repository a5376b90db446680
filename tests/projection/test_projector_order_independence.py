"""The tables depend on the set of events: not on arrival order, duplication or batch size.

Histories are drawn over a few ids of every entity kind, with random subsets of fields,
`updatedAt` and timestamp headers from small sets so that ties are frequent, explicit
nulls, empty lists in updates, deletes, and message statuses known and unknown.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hypothesis import given, settings
from hypothesis import strategies as st

from app.eventlog.store import Outcome
from tests._helpers import T0, Dump, Harness, delivery, rebuilt, replayed

if TYPE_CHECKING:
    from app.eventlog.rows import Delivery

Payload = dict[str, Any]

UPDATED_AT = st.sampled_from(
    [
        None,
        "2024-01-15T10:30:00.000Z",
        "2024-01-15T17:30:00+07:00",  # the same instant as the one above
        "2024-01-16T08:00:00Z",
        "2024-01-16T08:00:00.000001Z",
        "not a time",
    ]
)
TIMESTAMP = st.sampled_from([None, T0, T0 + 1, T0 + 3600])
SIGNED_AT = st.sampled_from([T0, T0 + 7])
TEXT = st.sampled_from(["a", "b", "c"]) | st.none()
AMOUNT = st.sampled_from([0, 2, 150000, 75000.5]) | st.none()
PLAIN_LIST = st.lists(st.sampled_from(["x", "y", "z"]), max_size=3) | st.none()
STATUS = st.sampled_from(["pending", "queued", "sent", "delivered", "read", "failed", "weird"])


def _object(*fields: str, leaf: st.SearchStrategy[Any] = TEXT) -> st.SearchStrategy[Payload]:
    return st.fixed_dictionaries({}, optional=dict.fromkeys(fields, leaf))


def _objects(item: st.SearchStrategy[Payload]) -> st.SearchStrategy[list[Payload] | None]:
    return st.lists(item, max_size=3) | st.none()


def _entity(
    kind: str, ids: list[str], fields: dict[str, st.SearchStrategy[Any]]
) -> st.SearchStrategy[tuple[str, Payload]]:
    body = st.fixed_dictionaries(
        {"id": st.sampled_from(ids)},
        optional={**fields, "createdAt": UPDATED_AT, "updatedAt": UPDATED_AT},
    )
    changed = st.tuples(st.sampled_from([f"{kind}.created", f"{kind}.updated"]), body)
    deleted = st.tuples(
        st.just(f"{kind}.deleted"), st.fixed_dictionaries({"id": st.sampled_from(ids)})
    )
    return changed | deleted if kind != "order" else changed


CUSTOMER = _entity(
    "customer",
    ["c1", "c2"],
    {
        "email": TEXT,
        "phoneNumber": TEXT,
        "firstName": TEXT,
        "imageUrl": TEXT,
        "tags": PLAIN_LIST,
        "addresses": _objects(_object("id", "city", "address2", "zip")),
    },
)
ORDER = _entity(
    "order",
    ["o1", "o2"],
    {
        "orderNumber": TEXT,
        "status": TEXT,
        "financialStatus": TEXT,
        "total": AMOUNT,
        "currency": TEXT,
        "customer": _object("id", "firstName", "email") | st.none(),
        "shippingAddress": _object("city", "zip", "phone") | st.none(),
        "lineItems": _objects(_object("id", "title") | _object("quantity", "price", leaf=AMOUNT)),
        "tags": PLAIN_LIST,
    },
)
PRODUCT = _entity(
    "product",
    ["p1", "p2"],
    {
        "name": TEXT,
        "status": TEXT,
        "media": _objects(_object("url", "alt")),
        "variants": _objects(_object("id", "key", "inventorySku") | _object("price", leaf=AMOUNT)),
        "options": PLAIN_LIST,
        "tags": PLAIN_LIST,
        "types": PLAIN_LIST,
    },
)
MESSAGE_ID = st.sampled_from(["m1", "m2"])
MESSAGE = st.tuples(
    st.just("message.received"),
    st.fixed_dictionaries(
        {"messageId": MESSAGE_ID},
        optional={"from": TEXT, "body": TEXT, "source": TEXT, "receivedAt": UPDATED_AT},
    ),
) | st.tuples(
    st.just("message.status.updated"),
    st.fixed_dictionaries(
        {"messageId": MESSAGE_ID},
        optional={"status": STATUS | st.none(), "to": TEXT, "templateName": TEXT},
    ),
)
EVENT = st.tuples(CUSTOMER | ORDER | PRODUCT | MESSAGE, TIMESTAMP, SIGNED_AT)


@st.composite
def histories(draw: st.DrawFn, max_size: int = 40) -> list[Delivery]:
    """Distinct events, each with its own webhook id (the log's dedup key)."""
    events = draw(st.lists(EVENT, min_size=1, max_size=max_size))
    return [
        delivery(event_type, payload, webhook_id=f"wh-{n:03d}", timestamp=ts, signed_at=signed)
        for n, ((event_type, payload), ts, signed) in enumerate(events)
    ]


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
