"""`export` and `import`: a log survives the round trip, byte for byte and row for row.

Unsigned rows (`sync`'s snapshots) included: carried both ways, and `--verify` says so.
"""

from __future__ import annotations

import base64
import io
import sqlite3
from typing import TYPE_CHECKING, Any

import msgspec
import pytest

import projections
from app import cli
from app.eventlog.store import EventStore
from app.ops import transfer
from app.projection.rebuild import rebuild
from app.settings import Settings
from app.sync.passes import CUSTOMERS, snapshot
from tests import _helpers
from tests._helpers import OTHER_SECRET, SECRET, T0, event_rows, log_rows, signed_headers

if TYPE_CHECKING:
    from pathlib import Path

    from app.eventlog.rows import Delivery


ENVIRON = {"BITBYBIT_WEBHOOK_SECRET": SECRET.decode()}
NOT_UTF8 = b'{"id": "cust_2", "firstName": "\xff\xfe"}'

Rows = list[tuple[Any, ...]]


def _delivery(
    webhook_id: str,
    event_type: str,
    body: object,
    *,
    offset: int = 0,
    event_timestamp: int | None = T0,
    secret: bytes = SECRET,
) -> Delivery:
    return _helpers.delivery(
        event_type,
        body if isinstance(body, bytes) else msgspec.json.encode(body),
        webhook_id=webhook_id,
        timestamp=None if event_timestamp is None else event_timestamp + offset,
        signed_at=T0 + offset,
        secret=secret,
        received_at=f"2024-01-15T10:30:{offset:02d}.123Z",
    )


SAMPLE = [
    _delivery(
        "evt_1",
        "customer.created",
        {
            "id": "cust_1",
            "email": "jo@example.com",
            "tags": ["new"],
            "addresses": [{"id": "addr_1", "city": "Jakarta"}],
            "createdAt": "2024-01-15T10:30:00.000Z",
            "updatedAt": "2024-01-15T10:30:00.000Z",
        },
    ),
    _delivery(
        "evt_2",
        "order.created",
        {
            "id": "order_1",
            "orderNumber": "1001",
            "status": "active",
            "total": 150000,
            "customer": {"id": "cust_1", "firstName": "Jo"},
            "lineItems": [{"id": "li_1", "quantity": 2, "price": 75000, "title": "Shirt ✓"}],
            "updatedAt": "2024-01-15T10:30:00.000Z",
        },
        offset=1,
    ),
    _delivery(
        "evt_3",
        "order.updated",
        {"id": "order_1", "financialStatus": "paid", "updatedAt": "2024-01-16T14:00:00.000Z"},
        offset=2,
        event_timestamp=None,
    ),
    _delivery("evt_4", "product.deleted", {"id": "prod_1"}, offset=3),
    _delivery(
        "evt_5",
        "message.status.updated",
        {"messageId": "msg_1", "status": "delivered", "to": "+62812"},
        offset=4,
    ),
    _delivery("evt_6", "customer.updated", NOT_UTF8, offset=5),
    _delivery("evt_7", "something.new", {"hello": "world"}, offset=6),
    _delivery("evt_8", "customer.deleted", {"id": "cust_1"}, offset=7),
]


def _populate(data_dir: Path, deliveries: list[Delivery] = SAMPLE) -> None:
    store = EventStore.open(data_dir / "events.db")
    try:
        store.append(deliveries)
    finally:
        store.close()


def _events(data_dir: Path) -> Rows:
    """Every logged row without its position, in log order."""
    return log_rows(
        data_dir,
        "SELECT webhook_id, event_type, event_timestamp, signed_at, received_at, "
        "signature, payload FROM events ORDER BY position",
    )


def _digests(data_dir: Path) -> Rows:
    return log_rows(data_dir, "SELECT digest, event_type FROM accepted_digests ORDER BY digest")


def _tables(data_dir: Path) -> dict[str, Rows]:
    """Every projection table, sorted, after a rebuild of `data_dir`."""
    rebuild(Settings(data_dir=data_dir), projections.discover(), stream=io.StringIO())
    conn = sqlite3.connect(data_dir / "projections.db")
    try:
        return {
            table: sorted(conn.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
            for projection in projections.discover()
            for table in projection.TABLE.table_names
        }
    finally:
        conn.close()


def _export(data_dir: Path, target: Path) -> None:
    assert cli.main(["export", str(target), "--data-dir", str(data_dir)], ENVIRON) == 0


def _import(data_dir: Path, source: Path, *flags: str) -> int:
    return cli.main(["import", str(source), "--data-dir", str(data_dir), *flags], ENVIRON)


@pytest.fixture
def exported(tmp_path: Path) -> Path:
    """An export file of `SAMPLE`."""
    source = tmp_path / "source"
    _populate(source)
    target = tmp_path / "log.jsonl"
    _export(source, target)
    return target


def _lines(path: Path) -> list[dict[str, Any]]:
    return [msgspec.json.decode(line) for line in path.read_bytes().splitlines()]


def _write_lines(path: Path, lines: list[dict[str, Any]] | list[bytes]) -> Path:
    path.write_bytes(
        b"".join(
            (line if isinstance(line, bytes) else msgspec.json.encode(line)) + b"\n"
            for line in lines
        )
    )
    return path


class TestExport:
    """The export format."""

    def test_one_line_per_delivery_with_every_field(self, exported: Path) -> None:
        """Each line holds the row's fields; UTF-8 bodies as text, others as base64."""
        lines = _lines(exported)
        assert [line["position"] for line in lines] == list(range(1, len(SAMPLE) + 1))
        for line, delivery in zip(lines, SAMPLE, strict=True):
            assert set(line) == {
                "position",
                "webhook_id",
                "event_type",
                "event_timestamp",
                "signed_at",
                "received_at",
                "signature",
                "payload",
                "payload_encoding",
            }
            assert line["webhook_id"] == delivery.webhook_id
            assert line["signature"] == delivery.signature
            assert line["event_timestamp"] == delivery.event_timestamp
            if delivery.payload == NOT_UTF8:
                assert line["payload_encoding"] == "base64"
                assert base64.b64decode(line["payload"]) == NOT_UTF8
            else:
                assert line["payload_encoding"] == "utf-8"
                assert line["payload"].encode() == delivery.payload

    @pytest.mark.parametrize("argv", [["export"], ["export", "-"]])
    def test_standard_output(
        self, tmp_path: Path, argv: list[str], capsysbinary: pytest.CaptureFixture[bytes]
    ) -> None:
        """Without a FILE, or with '-', the lines go to standard output."""
        _populate(tmp_path)
        assert cli.main([*argv, "--data-dir", str(tmp_path)], ENVIRON) == 0
        out = capsysbinary.readouterr().out
        assert len(out.splitlines()) == len(SAMPLE)
        assert msgspec.json.decode(out.splitlines()[0])["webhook_id"] == "evt_1"

    def test_no_log_is_an_error(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A data dir without a log exits 2 and creates nothing."""
        missing = tmp_path / "nowhere"
        assert cli.main(["export", "--data-dir", str(missing)], ENVIRON) == 2
        assert "no event log" in capsys.readouterr().err
        assert not missing.exists()


class TestImport:
    """Import appends through the store, keeps everything, and is idempotent."""

    def test_round_trip_rows_and_projections_identical(
        self, tmp_path: Path, exported: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An import into an empty dir gives the same rows, digests and rebuilt tables."""
        source, target = tmp_path / "source", tmp_path / "target"
        assert _import(target, exported) == 0
        assert f"{len(SAMPLE)} added, 0 already present" in capsys.readouterr().out
        assert _events(target) == _events(source)
        assert _digests(target) == _digests(source)
        tables = _tables(target)
        assert tables == _tables(source)
        assert tables["customers"]
        assert tables["orders"]
        assert tables["messages"]

    def test_twice_adds_nothing(
        self, tmp_path: Path, exported: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A second import of the same file finds every delivery already present."""
        target = tmp_path / "target"
        assert _import(target, exported) == 0
        before = _events(target)
        capsys.readouterr()
        assert _import(target, exported) == 0
        assert f"0 added, {len(SAMPLE)} already present" in capsys.readouterr().out
        assert _events(target) == before

    def test_appends_after_existing_events_in_file_order(
        self, tmp_path: Path, exported: Path
    ) -> None:
        """Only the missing deliveries are added, after the log's own, in file order."""
        target = tmp_path / "target"
        _populate(target, [SAMPLE[2], _delivery("evt_local", "product.deleted", {"id": "p"})])
        assert _import(target, exported) == 0
        ids = [row[0] for row in _events(target)]
        assert ids == ["evt_3", "evt_local"] + [d.webhook_id for d in SAMPLE if d is not SAMPLE[2]]

    def test_verify_accepts_genuine_signatures(self, tmp_path: Path, exported: Path) -> None:
        """`--verify` imports a file whose every signature matches, however old."""
        target = tmp_path / "target"
        assert _import(target, exported, "--verify") == 0
        assert len(_events(target)) == len(SAMPLE)

    def test_verify_reports_forgotten_rows_as_redacted_not_forged(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """After `forget`, really signed rows no longer match: imported, counted as redacted."""
        source = tmp_path / "source"
        _populate(source)
        assert (
            cli.main(["forget", "--customer", "cust_1", "--yes", "--data-dir", str(source)], {})
            == 0
        )
        exported = tmp_path / "log.jsonl"
        _export(source, exported)
        capsys.readouterr()
        target = tmp_path / "target"
        assert _import(target, exported, "--verify") == 0
        assert "redacted" in capsys.readouterr().out
        assert len(_events(target)) == len(SAMPLE)
        with sqlite3.connect(target / "events.db") as conn:
            marked = conn.execute("SELECT COUNT(*) FROM redactions").fetchone()[0]
        assert marked >= 1
        assert b"jo@example.com" not in exported.read_bytes()

    def test_verify_refuses_a_tampered_line(
        self, tmp_path: Path, exported: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A body changed after signing stops a verified import, naming its line."""
        lines = _lines(exported)
        lines[3]["payload"] = lines[3]["payload"].replace("prod_1", "prod_9")
        tampered = _write_lines(tmp_path / "tampered.jsonl", lines)
        target = tmp_path / "target"
        assert _import(target, tampered, "--verify") == 2
        err = capsys.readouterr().err
        assert "line 4" in err
        assert "invalid_signature" in err
        assert _events(target) == []
        # Without --verify the same file is taken as it is.
        assert _import(target, tampered) == 0
        assert len(_events(target)) == len(SAMPLE)

    def test_verify_needs_a_secret(
        self, tmp_path: Path, exported: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`--verify` without any configured secret exits 2 and says what to set."""
        code = cli.main(["import", str(exported), "--verify", "--data-dir", str(tmp_path)], {})
        assert code == 2
        assert "BITBYBIT_WEBHOOK_SECRET" in capsys.readouterr().err

    def test_verify_with_a_rotated_secret(self, tmp_path: Path) -> None:
        """A signature made with any of the configured secrets verifies."""
        source = tmp_path / "source"
        other = _delivery("evt_other", "order.created", {"id": "o"}, secret=OTHER_SECRET)
        _populate(source, [other])
        file = tmp_path / "log.jsonl"
        _export(source, file)
        environ = {"BITBYBIT_WEBHOOK_SECRET": f"{SECRET.decode()},{OTHER_SECRET.decode()}"}
        argv = ["import", str(file), "--verify", "--data-dir", str(tmp_path / "target")]
        assert cli.main(argv, environ) == 0
        assert cli.main([*argv[:-1], str(tmp_path / "other")], ENVIRON) == 2

    def test_signature_replayed_under_another_type_is_refused(
        self, tmp_path: Path, exported: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The endpoint's replay rule holds: a logged signature under another type is refused."""
        lines = _lines(exported)
        replay = dict(lines[0], webhook_id="evt_replay", event_type="customer.deleted")
        file = _write_lines(tmp_path / "replay.jsonl", [*lines, replay])
        target = tmp_path / "target"
        assert _import(target, file) == 1
        captured = capsys.readouterr()
        assert f"line {len(lines) + 1}: refused: signature_replayed" in captured.err
        assert "1 refused" in captured.out
        assert "evt_replay" not in [row[0] for row in _events(target)]

    def test_conflicting_duplicate_is_kept_aside(
        self, tmp_path: Path, exported: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A known id with another body does not change the log; it is counted."""
        target = tmp_path / "target"
        assert _import(target, exported) == 0
        before = _events(target)
        lines = _lines(exported)
        lines[1]["payload"] = '{"id": "order_1", "status": "other"}'
        file = _write_lines(tmp_path / "conflict.jsonl", lines)
        capsys.readouterr()
        assert _import(target, file) == 0
        assert "1 conflicting" in capsys.readouterr().out
        assert _events(target) == before

    def test_large_file_in_batches(self, tmp_path: Path) -> None:
        """More lines than one batch are all appended, in order."""
        deliveries = [
            _delivery(f"evt_{i:05d}", "order.updated", {"id": f"o{i}"}, offset=i % 60)
            for i in range(transfer.IMPORT_BATCH * 2 + 7)
        ]
        source = tmp_path / "source"
        _populate(source, deliveries)
        file = tmp_path / "log.jsonl"
        _export(source, file)
        report = transfer.import_file(tmp_path / "target" / "events.db", file, batch_size=100)
        assert report.added == len(deliveries)
        assert _events(tmp_path / "target") == _events(source)


def _valid_line(exported: Path) -> dict[str, Any]:
    return _lines(exported)[0]


MALFORMED: dict[str, Any] = {
    "bad JSON": b'{"position": 1, "webhook_id": ',
    "not UTF-8": b'{"webhook_id": "\xff"}',
    "missing field": {"drop": "signature"},
    "bad base64": {"payload": "not base64!", "payload_encoding": "base64"},
    "unknown encoding": {"payload_encoding": "latin-1"},
    "wrong type": {"signed_at": "1705314600"},
    "boolean for integer": {"event_timestamp": True},
    "empty webhook id": {"webhook_id": ""},
    "long event type": {"event_type": "x" * 256},
    "empty received_at": {"received_at": ""},
    "bad signature": {"signature": "t=1705314600,v1=abc"},
    "signed_at not t": {"signed_at": 1},
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_line_stops_the_import_with_its_number(
    case: str, tmp_path: Path, exported: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One bad line (the third) stops the import, named by number, and nothing is added."""
    lines: list[bytes] = exported.read_bytes().splitlines()
    change = MALFORMED[case]
    if isinstance(change, bytes):
        bad = change
    else:
        line = msgspec.json.decode(lines[2])
        if "drop" in change:
            del line[change["drop"]]
        else:
            line.update(change)
        bad = msgspec.json.encode(line)
    file = _write_lines(tmp_path / "bad.jsonl", [*lines[:2], bad, *lines[3:]])
    target = tmp_path / "target"
    _populate(target, [_delivery("evt_local", "product.deleted", {"id": "p"})])
    before = _events(target)
    assert _import(target, file) == 2
    assert "line 3:" in capsys.readouterr().err
    assert _events(target) == before


def test_blank_lines_are_skipped(tmp_path: Path, exported: Path) -> None:
    """Empty lines (a hand-edited file) carry nothing and are not errors."""
    lines = exported.read_bytes().splitlines()
    file = tmp_path / "blank.jsonl"
    file.write_bytes(b"\n".join([lines[0], b"", b"  ", *lines[1:]]) + b"\n\n")
    target = tmp_path / "target"
    assert _import(target, file) == 0
    assert len(_events(target)) == len(SAMPLE)


def test_missing_file_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Importing a file that does not exist exits 2 and names it."""
    assert _import(tmp_path, tmp_path / "absent.jsonl") == 2
    assert "absent.jsonl" in capsys.readouterr().err


# ---- The unsigned rows `sync` writes: export and import carry them; `--verify` calls them
# unsigned.


def test_unsigned_snapshots_survive_export_and_verified_import(tmp_path: Path) -> None:
    """A snapshot and a signed delivery: both imported; the snapshot counted as unsigned."""
    source = tmp_path / "a" / "events.db"
    store = EventStore.open(source)
    body = b'{"id": "order_1", "status": "active"}'
    signature = signed_headers(body, signed_at=1705314600)["X-BitByBit-Webhook-Signature"]
    signed = msgspec.structs.replace(
        _helpers.delivery("order.created", body, webhook_id="wh_1", timestamp=1705314600),
        signature=signature,
    )
    _, snap = snapshot(CUSTOMERS, b'{"id": "cust_1", "email": "a@example.com"}', 1705400000.5)
    store.append([signed, snap])
    store.close()
    exported = tmp_path / "log.jsonl"
    assert transfer.export_to(source, str(exported)) == 2

    target = tmp_path / "b"
    target.mkdir()
    report = transfer.import_file(target / "events.db", exported, secrets=[SECRET])
    assert (report.added, report.unsigned, report.refused) == (2, 1, [])
    rows = event_rows(target)
    assert [(r[1], r[2]) for r in rows] == [
        ("wh_1", "order.created"),
        (snap.webhook_id, "customer.snapshot"),
    ]
    again = transfer.import_file(target / "events.db", exported, secrets=[SECRET])
    assert (again.added, again.present) == (0, 2)
