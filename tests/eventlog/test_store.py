"""The event log: append-only, one row per webhook id, bytes kept exactly, failures atomic."""

from __future__ import annotations

import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import msgspec
import pytest

from app.eventlog.schema import open_log
from app.eventlog.store import (
    AppendResult,
    EventStore,
    Outcome,
    SignatureMemory,
    StoreUnavailableError,
)
from tests._helpers import SECRET, conflict_rows, event_rows, log_rows
from tests._helpers import delivery as shared_delivery

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from app.eventlog.rows import Delivery

SIGNED_AT = 1_705_314_600


def delivery(
    webhook_id: str,
    payload: bytes = b'{"id": 1}',
    event_type: str = "order.created",
    signed_at: int = SIGNED_AT,
) -> Delivery:
    """A delivery as ingest builds it, really signed, with this module's defaults."""
    return shared_delivery(
        event_type,
        payload,
        webhook_id=webhook_id,
        timestamp=SIGNED_AT,
        signed_at=signed_at,
        secret=SECRET,
        received_at="2024-01-15T10:30:00.000Z",
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    s = EventStore.open(tmp_path / "events.db")
    yield s
    s.close()


class TestImmutability:
    """The log cannot be changed, whoever tries."""

    def test_update_is_refused(self, store: EventStore, tmp_path: Path) -> None:
        """An UPDATE of a logged event fails in SQLite itself, from any connection."""
        store.append([delivery("a")])
        conn = sqlite3.connect(tmp_path / "events.db")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE events SET payload = x'00' WHERE webhook_id = 'a'")
        conn.close()
        assert event_rows(tmp_path)[0][3] == b'{"id": 1}'

    @pytest.mark.parametrize("table", ["events", "accepted_digests"])
    def test_delete_is_refused(self, store: EventStore, tmp_path: Path, table: str) -> None:
        """A DELETE of a logged event, or of the signature memory, fails in SQLite itself."""
        store.append([delivery("a")])
        conn = sqlite3.connect(tmp_path / "events.db")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute(f"DELETE FROM {table}")
        conn.close()
        assert log_rows(tmp_path, f"SELECT COUNT(*) FROM {table}") == [(1,)]


class TestAppend:
    """Appending batches: positions, bytes, duplicates, replays."""

    def test_positions_strictly_increase(self, store: EventStore) -> None:
        """Positions follow acceptance order across batches, with no reuse."""
        first = store.append([delivery("a", b"1"), delivery("b", b"2")])
        second = store.append([delivery("c", b"3")])
        positions = [r.position for r in [*first, *second]]
        assert positions == [1, 2, 3]
        assert [e.position for e in store.read(0, 10)] == [1, 2, 3]
        assert store.head() == 3
        assert store.count() == 3

    @pytest.mark.parametrize(
        "payload",
        [
            pytest.param('{"name": "Zoë 😀 日本", "x": "\\u00e9"}'.encode(), id="unicode"),
            pytest.param(b'  {\n\t"a" :  1 ,\r\n "b":[ ]}\n\n', id="whitespace"),
            pytest.param(
                b'{\n    "id": "c_1",\n    "tags": [\n        "vip"\n    ]\n}', id="pretty"
            ),
            pytest.param(b"\x00\xff not even utf-8", id="binary"),
            pytest.param(b"", id="empty"),
        ],
    )
    def test_payload_round_trips_byte_for_byte(
        self, store: EventStore, tmp_path: Path, payload: bytes
    ) -> None:
        """The body read back (through the store and through plain sqlite3) is the body sent."""
        store.append([delivery("a", payload)])
        [event] = store.read(0, 10)
        assert event.payload == payload
        assert type(event.payload) is bytes
        assert event_rows(tmp_path)[0][3] == payload

    def test_stored_columns(self, store: EventStore) -> None:
        """Every column of the delivery is stored as given."""
        d = delivery("a")
        store.append([d])
        [event] = store.read(0, 1)
        assert (event.webhook_id, event.event_type, event.event_timestamp) == (
            "a",
            "order.created",
            SIGNED_AT,
        )
        assert (event.signed_at, event.received_at, event.signature) == (
            SIGNED_AT,
            d.received_at,
            d.signature,
        )

    def test_duplicate_inside_a_batch_keeps_its_neighbours(
        self, store: EventStore, tmp_path: Path
    ) -> None:
        """[a, a again, b] in one batch: accepted, duplicate of a, accepted; a and b stored."""
        a, b = delivery("a", b'{"a": 1}'), delivery("b", b'{"b": 2}')
        results = store.append([a, a, b])
        assert results == [
            AppendResult(Outcome.ACCEPTED, 1),
            AppendResult(Outcome.DUPLICATE, 1),
            AppendResult(Outcome.ACCEPTED, 2),
        ]
        assert [(p, w) for p, w, _, _ in event_rows(tmp_path)] == [(1, "a"), (2, "b")]

    def test_duplicate_of_an_earlier_batch(self, store: EventStore) -> None:
        """A webhook id already logged is a duplicate that reports the original position."""
        store.append([delivery("a"), delivery("b", b"2")])
        assert store.append([delivery("b", b"2")]) == [AppendResult(Outcome.DUPLICATE, 2)]
        assert store.count() == 2

    def test_conflicting_duplicate_is_kept_aside(self, store: EventStore, tmp_path: Path) -> None:
        """Same id, different body: the log row is unchanged, the new body kept aside."""
        store.append([delivery("a", b'{"v": 1}')])
        results = store.append([delivery("a", b'{"v": 2}')])
        assert results == [AppendResult(Outcome.CONFLICTING_DUPLICATE, 1)]
        assert event_rows(tmp_path) == [(1, "a", "order.created", b'{"v": 1}')]
        assert conflict_rows(tmp_path) == [("a", 1, b'{"v": 2}')]

    def test_same_digest_with_another_event_type_is_replayed(
        self, store: EventStore, tmp_path: Path
    ) -> None:
        """A digest first seen with one event type, now under another, is SIGNATURE_REPLAYED."""
        store.append([delivery("a", event_type="order.updated")])
        results = store.append([delivery("b", event_type="order.deleted")])
        assert results == [AppendResult(Outcome.SIGNATURE_REPLAYED, None)]
        assert [w for _, w, _, _ in event_rows(tmp_path)] == ["a"]

    def test_replay_inside_one_batch(self, store: EventStore) -> None:
        """The replay rule also holds between two deliveries of the same batch."""
        results = store.append(
            [delivery("a", event_type="order.updated"), delivery("b", event_type="order.deleted")]
        )
        assert [r.outcome for r in results] == [Outcome.ACCEPTED, Outcome.SIGNATURE_REPLAYED]

    def test_same_digest_same_type_new_id_is_accepted(self, store: EventStore) -> None:
        """Two genuine deliveries with identical bodies signed in the same second are both kept."""
        results = store.append([delivery("a")])
        results += store.append([delivery("b")])
        assert [r.outcome for r in results] == [Outcome.ACCEPTED, Outcome.ACCEPTED]
        assert store.count() == 2

    def test_resigned_retry_binds_its_signature_to_the_logged_type(
        self, store: EventStore, tmp_path: Path
    ) -> None:
        """A duplicate's new signature keeps the logged type, whatever header it came with.

        Remembered across a restart, like every other signature.
        """
        retry_at = SIGNED_AT + 30
        store.append([delivery("a", event_type="order.updated")])
        relabelled_retry = delivery("a", event_type="order.deleted", signed_at=retry_at)
        assert store.append([relabelled_retry]) == [AppendResult(Outcome.DUPLICATE, 1)]
        store.close()
        reopened = EventStore.open(tmp_path / "events.db")
        try:
            forged = delivery("forged", event_type="order.deleted", signed_at=retry_at)
            same_type = delivery("b", event_type="order.updated", signed_at=retry_at)
            assert [r.outcome for r in reopened.append([forged, same_type])] == [
                Outcome.SIGNATURE_REPLAYED,
                Outcome.ACCEPTED,
            ]
        finally:
            reopened.close()

    def test_conflicting_duplicate_binds_its_signature_to_its_own_type(
        self, store: EventStore
    ) -> None:
        """A kept-aside body is another delivery: its signature keeps the type it came with."""
        retry_at = SIGNED_AT + 30
        store.append([delivery("a", b'{"v": 1}', event_type="order.updated")])
        other_body = delivery("a", b'{"v": 2}', event_type="order.updated", signed_at=retry_at)
        forged = delivery("forged", b'{"v": 2}', event_type="order.deleted", signed_at=retry_at)
        results = store.append([other_body, forged])
        assert [r.outcome for r in results] == [
            Outcome.CONFLICTING_DUPLICATE,
            Outcome.SIGNATURE_REPLAYED,
        ]

    def test_iter_all_reads_in_batches(self, store: EventStore) -> None:
        """iter_all yields every event once, in position order, whatever its batch size."""
        store.append([delivery(f"w{i}", str(i).encode()) for i in range(7)])
        assert [e.webhook_id for e in store.iter_all(batch_size=3)] == [f"w{i}" for i in range(7)]
        assert [e.position for e in store.read(2, 2, until=3)] == [3]


class TestReplayMemory:
    """The replay check sees every accepted digest, whoever wrote it and whenever."""

    def test_a_digest_another_writer_accepted_meanwhile(self, tmp_path: Path) -> None:
        """A second held in memory also learns what another process (an import) appended."""
        serving, importing = (EventStore.open(tmp_path / "events.db") for _ in range(2))
        try:
            serving.append([delivery("a", b'{"id": 0}')])  # the second is now in memory
            importing.append([delivery("b", event_type="order.updated")])
            replayed = serving.append([delivery("c", event_type="order.deleted")])
            assert replayed == [AppendResult(Outcome.SIGNATURE_REPLAYED, None)]
        finally:
            serving.close()
            importing.close()

    def test_after_a_restart(self, tmp_path: Path) -> None:
        """A new process reads what the last one accepted."""
        first = EventStore.open(tmp_path / "events.db")
        first.append([delivery("a", event_type="order.updated")])
        first.close()
        second = EventStore.open(tmp_path / "events.db")
        try:
            replayed = second.append([delivery("b", event_type="order.deleted")])
            assert replayed == [AppendResult(Outcome.SIGNATURE_REPLAYED, None)]
        finally:
            second.close()

    def test_a_rolled_back_transaction_leaves_nothing_behind(self, tmp_path: Path) -> None:
        """What a batch took in before its rollback is not remembered as accepted."""
        serving, importing = (EventStore.open(tmp_path / "events.db") for _ in range(2))
        try:
            serving.append([delivery("a", b'{"id": 0}')])  # the second is now in memory
            serving.begin()
            serving.append_in_transaction([delivery("b", event_type="order.deleted")])
            serving.append_in_transaction([delivery("c", b'{"id": 2}')])
            serving.rollback()
            # The rolled-back delete never happened: the same digest as an update is fine.
            accepted = serving.append([delivery("d", event_type="order.updated")])
            assert accepted[0].outcome is Outcome.ACCEPTED
            # Another writer's row, which may take a rolled-back rowid, is still seen.
            importing.append([delivery("e", b'{"id": 5}', event_type="order.updated")])
            replayed = serving.append([delivery("f", b'{"id": 5}', event_type="order.deleted")])
            assert replayed == [AppendResult(Outcome.SIGNATURE_REPLAYED, None)]
        finally:
            serving.close()
            importing.close()

    def test_a_second_dropped_from_memory_is_read_again(
        self, store: EventStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Memory holds a few seconds; an older one is looked up in the table."""
        monkeypatch.setattr(SignatureMemory, "MAX_SECONDS", 2)
        store.append([delivery("a", event_type="order.updated")])
        for offset in range(1, 4):
            later = delivery(f"later{offset}", f'{{"n": {offset}}}'.encode())
            store.append([msgspec.structs.replace(later, signed_at=SIGNED_AT + offset)])
        replayed = store.append([delivery("b", event_type="order.deleted")])
        assert replayed == [AppendResult(Outcome.SIGNATURE_REPLAYED, None)]

    def test_a_large_append_elsewhere_is_read_again(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Too many rows appended meanwhile to take in one by one: memory starts afresh."""
        monkeypatch.setattr(SignatureMemory, "MAX_CATCH_UP_ROWS", 2)
        serving, importing = (EventStore.open(tmp_path / "events.db") for _ in range(2))
        try:
            serving.append([delivery("a", b'{"id": 0}')])
            importing.append(
                [delivery(f"i{n}", f'{{"n": {n}}}'.encode()) for n in range(3)]
                + [delivery("b", event_type="order.updated")]
            )
            replayed = serving.append([delivery("c", event_type="order.deleted")])
            assert replayed == [AppendResult(Outcome.SIGNATURE_REPLAYED, None)]
        finally:
            serving.close()
            importing.close()


# Each earlier release's table, and how it held the first event's digest.
OLD_DIGEST_TABLES = {
    "keyed by digest": (
        """CREATE TABLE signature_digests (
            digest TEXT PRIMARY KEY, event_type TEXT NOT NULL, position INTEGER NOT NULL
        ) STRICT, WITHOUT ROWID""",
        "INSERT INTO signature_digests VALUES (?, 'order.updated', 1)",
    ),
    "keyed by signing time and digest": (
        """CREATE TABLE signature_digests (
            signed_at INTEGER NOT NULL, digest TEXT NOT NULL, event_type TEXT NOT NULL,
            position INTEGER NOT NULL, PRIMARY KEY (signed_at, digest)
        ) STRICT, WITHOUT ROWID""",
        f"INSERT INTO signature_digests VALUES ({SIGNED_AT}, ?, 'order.updated', 1)",
    ),
}


class TestUpgrade:
    """A log written by an earlier release keeps working, its signature memory included."""

    @pytest.mark.parametrize(
        ("old_table", "old_row"), OLD_DIGEST_TABLES.values(), ids=OLD_DIGEST_TABLES
    )
    def test_digests_of_earlier_releases_are_moved(
        self, tmp_path: Path, old_table: str, old_row: str
    ) -> None:
        """The old digest table's rows move to `accepted_digests`, and replays still fail."""
        path = tmp_path / "events.db"
        old = sqlite3.connect(path)
        old.executescript(
            f"""
            CREATE TABLE events (
                position INTEGER PRIMARY KEY, webhook_id TEXT NOT NULL UNIQUE,
                event_type TEXT NOT NULL, event_timestamp INTEGER, signed_at INTEGER NOT NULL,
                received_at TEXT NOT NULL, signature TEXT NOT NULL, payload BLOB NOT NULL
            ) STRICT;
            {old_table};
            """
        )
        logged = delivery("a", event_type="order.updated")
        old.execute(
            "INSERT INTO events VALUES (1, 'a', 'order.updated', NULL, ?, 'x', ?, ?)",
            (SIGNED_AT, logged.signature, logged.payload),
        )
        old.execute(old_row, (logged.digests[0],))
        old.commit()
        old.close()

        store = EventStore.open(path)
        try:
            replayed = store.append([delivery("b", event_type="order.deleted")])
            assert replayed == [AppendResult(Outcome.SIGNATURE_REPLAYED, None)]
            assert store.append([delivery("c", b'{"v": 3}')])[0].outcome is Outcome.ACCEPTED
        finally:
            store.close()
        assert [w for _, w, _, _ in event_rows(tmp_path)] == ["a", "c"]
        tables = log_rows(tmp_path, "SELECT name FROM sqlite_master WHERE type = 'table'")
        assert ("signature_digests",) not in tables


class TestConcurrency:
    """Racing writers never store a webhook id twice."""

    def test_two_connections_append_the_same_id_once(self, tmp_path: Path) -> None:
        """Two stores (as two processes would) racing on one webhook id store one row."""
        stores = [EventStore.open(tmp_path / "events.db") for _ in range(2)]
        barrier = threading.Barrier(2)

        def race(s: EventStore) -> list[AppendResult]:
            barrier.wait()
            return s.append([delivery("same")])

        with ThreadPoolExecutor(2) as pool:
            results = [r for rs in pool.map(race, stores) for r in rs]
        for s in stores:
            s.close()
        assert sorted(r.outcome.value for r in results) == ["accepted", "duplicate"]
        assert {r.position for r in results} == {1}
        assert len(event_rows(tmp_path)) == 1


class TestUnavailable:
    """A log that cannot be written stores nothing and says so."""

    def test_full_disk_raises_and_stores_nothing(self, tmp_path: Path) -> None:
        """When SQLite cannot grow the file, append raises StoreUnavailableError atomically."""
        conn = open_log(tmp_path / "events.db")
        # The limit cannot go below the current size, so this freezes the file as it is.
        conn.execute("PRAGMA max_page_count = 1")
        store = EventStore(conn)
        big = delivery("big", b'{"blob": "' + b"x" * 20_000 + b'"}')
        with pytest.raises(StoreUnavailableError, match="full"):
            store.append([delivery("small"), big])
        assert store.count() == 0
        assert conn.in_transaction is False
        store.close()
        assert event_rows(tmp_path) == []

    def test_store_usable_again_after_space_frees(self, tmp_path: Path) -> None:
        """A failed append leaves no transaction open: once space frees, appends work."""
        conn = open_log(tmp_path / "events.db")
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute("PRAGMA max_page_count = 1")
        store = EventStore(conn)
        with pytest.raises(StoreUnavailableError):
            store.append([delivery("big", b"y" * 20_000)])
        conn.execute(f"PRAGMA max_page_count = {pages + 1000}")
        assert store.append([delivery("big", b"y" * 20_000)]) == [AppendResult(Outcome.ACCEPTED, 1)]
        store.close()
