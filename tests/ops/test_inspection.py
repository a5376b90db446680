"""`events` and `errors` against a populated log: filters, order, table and JSON Lines."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import msgspec
import pytest

from app import cli
from app.eventlog.store import EventStore
from tests._helpers import append_and_project, delivery

if TYPE_CHECKING:
    from pathlib import Path

    from app.eventlog.rows import Delivery


def _delivery(
    number: int, event_type: str, body: object, *, signature: str | None = None
) -> Delivery:
    return delivery(
        event_type,
        msgspec.json.encode(body),
        webhook_id=f"evt_{number:03d}",
        timestamp=1_705_000_000 + number,
        received_at=f"2024-01-{10 + number:02d}T10:30:00.000Z",
        signature=f"t={1_705_000_000 + number},v1={number:064x}"
        if signature is None
        else signature,
    )


DELIVERIES = [
    _delivery(1, "customer.created", {"id": "cust_a", "email": "a@x.id"}),
    _delivery(
        2, "order.created", {"id": "ord_1", "status": "active", "customer": {"id": "cust_a"}}
    ),
    _delivery(3, "customer.updated", {"id": "cust_a", "firstName": "Ana"}),
    _delivery(4, "order.updated", ["not", "an", "order"]),
    _delivery(5, "message.status.updated", {"messageId": "msg_9", "status": "sent"}),
    _delivery(6, "customer.snapshot", {"id": "cust_a", "email": "a@x.id"}, signature=""),
]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    append_and_project(tmp_path, DELIVERIES)
    return tmp_path


def _run(argv: list[str], data_dir: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main([*argv, "--data-dir", str(data_dir)], environ={})
    return code, capsys.readouterr().out


def _lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


class TestEvents:
    """`events`: newest first, each filter narrowing the list."""

    def test_all_newest_first_as_json_lines_off_a_terminal(
        self, data_dir: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Without a terminal, every line parses; positions descend."""
        code, out = _run(["events"], data_dir, capsys)
        assert code == 0
        assert [line["position"] for line in _lines(out)] == [6, 5, 4, 3, 2, 1]

    @pytest.mark.parametrize(
        ("argv", "positions"),
        [
            (["--type", "customer.updated"], [3]),
            (["--entity", "cust_a"], [6, 3, 1]),
            (["--entity", "msg_9"], [5]),
            (["--since", "2024-01-13"], [6, 5, 4, 3]),
            (["--since", "2024-01-13T10:30:00.001Z"], [6, 5, 4]),
            (["--since", "2024-01-13T17:30:00+07:00"], [6, 5, 4, 3]),
            (["--entity", "cust_a", "--since", "2024-01-12", "--limit", "1"], [6]),
            (["--type", "order.deleted"], []),
        ],
    )
    def test_filters(
        self,
        argv: list[str],
        positions: list[int],
        data_dir: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """Type, entity, since (any zone) and limit combine."""
        code, out = _run(["events", *argv], data_dir, capsys)
        assert code == 0
        assert [line["position"] for line in _lines(out)] == positions

    def test_json_lines_are_export_lines_with_entity_and_marks(
        self, data_dir: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A line carries the body byte for byte as text, the entity, and any marks."""
        _, out = _run(["events", "--json", "--limit", "2"], data_dir, capsys)
        snapshot, message = _lines(out)
        assert snapshot["marks"] == ["snapshot (unsigned: read from the API, not a webhook)"]
        assert message["marks"] == []
        assert message["entity"] == "msg_9"
        assert message["payload"].encode() == DELIVERIES[4].payload
        assert message["payload_encoding"] == "utf-8"

    def test_table_on_a_terminal(
        self, data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """On a terminal: a header row, then one row per delivery."""
        monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
        code, out = _run(["events", "--type", "order.created"], data_dir, capsys)
        assert code == 0
        header, row = out.splitlines()
        assert header.split() == [
            "position",
            "received_at",
            "event_type",
            "entity",
            "webhook_id",
            "marks",
        ]
        assert row.split() == ["2", "2024-01-12T10:30:00.000Z", "order.created", "ord_1", "evt_002"]

    def test_one_delivery_in_full(
        self, data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """--id shows the headers as received and the body pretty-printed."""
        monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
        code, out = _run(["events", "--id", "evt_002"], data_dir, capsys)
        assert code == 0
        assert "X-BitByBit-Webhook-Id: evt_002" in out
        assert "X-BitByBit-Webhook-Event: order.created" in out
        assert "X-BitByBit-Webhook-Timestamp: 1705000002" in out
        assert f"X-BitByBit-Webhook-Signature: t=1705000002,v1={2:064x}" in out
        assert '\n  "status": "active",\n' in out
        assert "marks        -" in out

    def test_a_snapshot_is_marked(
        self, data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An unsigned snapshot says so."""
        monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
        _, out = _run(["events", "--id", "evt_006"], data_dir, capsys)
        assert "marks        snapshot (unsigned" in out

    def test_a_redacted_delivery_is_marked(
        self, data_dir: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """After `forget`, the person's deliveries say they were redacted; others do not."""
        assert (
            cli.main(["forget", "--customer", "cust_a", "--yes", "--data-dir", str(data_dir)], {})
            == 0
        )
        capsys.readouterr()
        _, out = _run(["events", "--json"], data_dir, capsys)
        marks = {line["webhook_id"]: line["marks"] for line in _lines(out)}
        redacted = "redacted (personal values erased by forget)"
        assert redacted in marks["evt_001"]
        assert redacted in marks["evt_006"]
        assert redacted not in marks["evt_005"]

    def test_unknown_id_exits_1(self, data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """An id the log does not hold: exit 1, nothing on stdout, a reason on stderr."""
        code = cli.main(["events", "--id", "evt_nope", "--data-dir", str(data_dir)], environ={})
        captured = capsys.readouterr()
        assert (code, captured.out) == (1, "")
        assert "evt_nope" in captured.err

    @pytest.mark.parametrize(
        "argv", [["--since", "yesterday"], ["--id", "evt_001", "--type", "order.created"]]
    )
    def test_bad_filters_exit_2(
        self, argv: list[str], data_dir: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An unreadable date, or --id with a filter, is refused with a reason."""
        code = cli.main(["events", *argv, "--data-dir", str(data_dir)], environ={})
        assert code == 2
        assert "error:" in capsys.readouterr().err


class TestErrors:
    """`errors`: the recorded projection errors with their deliveries."""

    def test_json_lines_carry_the_delivery(
        self, data_dir: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The unreadable order is an error of the orders projection, with its body."""
        code, out = _run(["errors"], data_dir, capsys)
        assert code == 0
        errors = _lines(out)
        assert [(e["projection"], e["position"], e["webhook_id"]) for e in errors] == [
            ("orders", 4, "evt_004")
        ]
        assert errors[0]["error"]
        assert errors[0]["event"]["payload"] == '["not","an","order"]'

    def test_filter_by_projection(self, data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Another projection has none."""
        code, out = _run(["errors", "--projection", "customers"], data_dir, capsys)
        assert (code, out) == (0, "")

    def test_table_on_a_terminal(
        self, data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A header row and the error's row."""
        monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
        _, out = _run(["errors"], data_dir, capsys)
        header, row = out.splitlines()
        assert header.split()[:3] == ["position", "received_at", "projection"]
        assert row.split()[:5] == [
            "4",
            "2024-01-14T10:30:00.000Z",
            "orders",
            "order.updated",
            "evt_004",
        ]

    def test_a_warning_is_listed_with_its_kind(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A field of an unexpected shape: listed as a `warning`, apart from the errors."""
        body = {"id": "p1", "name": "Shirt", "media": "https://cdn.example.com/p1.jpg"}
        append_and_project(tmp_path, [_delivery(7, "product.snapshot", body), *DELIVERIES[3:4]])
        capsys.readouterr()  # the projector's own log lines
        code, out = _run(["errors"], tmp_path, capsys)
        assert code == 0
        listed = [(e["kind"], e["projection"], e["webhook_id"]) for e in _lines(out)]
        assert listed == [("error", "orders", "evt_004"), ("warning", "products", "evt_007")]
        assert "media" in _lines(out)[1]["error"]

    def test_no_projections_db_yet(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Before serve ever ran the projections: no errors, and no file created."""
        EventStore.open(tmp_path / "events.db").close()
        code, out = _run(["errors"], tmp_path, capsys)
        assert (code, out) == (0, "")
        assert not (tmp_path / "projections.db").exists()
