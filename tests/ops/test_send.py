"""app/ops/send.py: `send-test` and `replay`.

`send-test` against a running service: every sample accepted, and projected. `replay`:
stored deliveries, re-signed, make a second installation's tables equal the first's.
"""

from __future__ import annotations

import asyncio
import io
import sqlite3
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import msgspec

from app import cli
from app.eventlog.store import EventStore
from app.http.main import create_app
from app.ops import send
from app.webhooks.samples import EVENT_TYPES, sample_body
from app.webhooks.signature import Verifier
from projections import discover
from tests._helpers import (
    OTHER_SECRET,
    ROOT,
    SECRET,
    ServeProcess,
    app_env,
    event_rows,
    eventually,
    free_port,
    populate_examples,
    wait_until,
)

if TYPE_CHECKING:
    from pathlib import Path

    import pytest
    from pytest_aiohttp import AiohttpServer

    from app.settings import Settings


ENVIRON = {"BITBYBIT_WEBHOOK_SECRET": SECRET.decode()}


async def _url(aiohttp_server: AiohttpServer, settings: Settings) -> str:
    server = await aiohttp_server(create_app(settings))
    return str(server.make_url("/webhooks"))


def _query(path: Path, sql: str) -> list[tuple[object, ...]]:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.OperationalError:
        return []  # the projector has not created its database yet
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []  # nor its tables
    finally:
        conn.close()


async def _until(check: str, path: Path, expected: list[tuple[object, ...]]) -> None:
    """Poll `check` until it returns `expected`, failing at the deadline."""

    async def rows() -> list[tuple[object, ...]]:
        return _query(path, check)

    await eventually(rows, lambda found: found == expected, f"{check!r} to give {expected!r}")


def test_every_sample_decodes_as_json_of_its_entity() -> None:
    """Each catalogue type has a JSON object body that names its entity."""
    assert len(EVENT_TYPES) == 10
    for event_type in EVENT_TYPES:
        body = msgspec.json.decode(sample_body(event_type, 1_705_314_600))
        assert isinstance(body, dict)
        assert "id" in body or "messageId" in body


def test_signed_request_is_what_bitbybit_sends() -> None:
    """Headers carry a fresh evt_ id, the type, now, and a signature that verifies."""
    now = 1_705_314_600.5
    headers, body = send.signed_request("order.updated", SECRET, now)
    other, _ = send.signed_request("order.updated", SECRET, now)
    assert headers["X-BitByBit-Webhook-Id"].startswith("evt_")
    assert headers["X-BitByBit-Webhook-Id"] != other["X-BitByBit-Webhook-Id"]
    assert headers["X-BitByBit-Webhook-Event"] == "order.updated"
    assert headers["X-BitByBit-Webhook-Timestamp"] == "1705314600"
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == "BitByBit-Webhooks/1.0"
    verified = Verifier((SECRET,), 300).verify(headers["X-BitByBit-Webhook-Signature"], body, now)
    assert verified.signed_at == 1_705_314_600


async def test_all_types_accepted_and_projected(
    aiohttp_server: AiohttpServer, settings: Settings, tmp_path: Path
) -> None:
    """All ten samples are accepted, and the tables show one of each entity."""
    url = await _url(aiohttp_server, settings)
    out = io.StringIO()
    results = await send.send(url, SECRET, stream=out)
    assert [r.event_type for r in results] == list(EVENT_TYPES)
    assert all(r.accepted for r in results), out.getvalue()
    lines = out.getvalue().splitlines()
    assert len(lines) == 10
    for line, result in zip(lines, results, strict=True):
        assert result.event_type in line
        assert result.webhook_id in line
        assert " 200 " in line
        assert '"accepted"' in line
    assert [row[2] for row in event_rows(tmp_path)] == list(EVENT_TYPES)

    projections = tmp_path / "projections.db"
    await _until(
        "SELECT id, email, deleted_at IS NOT NULL FROM customers",
        projections,
        [("cust_sendtest01", "john.updated@example.com", 1)],
    )
    await _until(
        "SELECT id, order_number, financial_status, customer_id FROM orders",
        projections,
        [("order_sendtest01", "1001", "paid", "cust_sendtest01")],
    )
    await _until(
        "SELECT id, name, deleted_at IS NOT NULL FROM products",
        projections,
        [("prod_sendtest01", "Premium T-Shirt (Updated)", 1)],
    )
    await _until(
        "SELECT message_id, direction, status FROM messages ORDER BY message_id",
        projections,
        [("msg_sendtest_in01", "inbound", None), ("msg_sendtest_out01", "outbound", "sent")],
    )


async def test_cli_repeats_with_fresh_ids(
    aiohttp_server: AiohttpServer,
    settings: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--count 2 --event ...` sends each chosen type twice, each with its own id."""
    url = await _url(aiohttp_server, settings)
    argv = [
        "send-test",
        "--url",
        url,
        "--count",
        "2",
        "--event",
        "order.created",
        "--event",
        "message.status.updated",
    ]
    code = await asyncio.to_thread(cli.main, argv, ENVIRON)
    out = capsys.readouterr().out
    assert code == 0, out
    rows = event_rows(tmp_path)
    assert [row[2] for row in rows] == ["order.created", "message.status.updated"] * 2
    assert len({row[1] for row in rows}) == 4
    assert "4 of 4 deliveries accepted" in out


async def test_refused_deliveries_exit_non_zero(
    aiohttp_server: AiohttpServer,
    settings: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Signed with a secret the service does not know: 401 shown, exit 1, nothing stored."""
    url = await _url(aiohttp_server, settings)
    environ = {"BITBYBIT_WEBHOOK_SECRET": OTHER_SECRET.decode()}
    code = await asyncio.to_thread(cli.main, ["send-test", "--url", url], environ)
    out = capsys.readouterr().out
    assert code == 1
    assert "invalid_signature" in out
    assert " 401 " in out
    assert event_rows(tmp_path) == []


def test_without_a_secret_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """No secret configured: a message that says what to set, exit 2, nothing sent."""
    code = cli.main(["send-test", "--url", "http://127.0.0.1:9/webhooks"], {})
    assert code == 2
    assert "BITBYBIT_WEBHOOK_SECRET" in capsys.readouterr().err


def test_unreachable_url_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing listening at the URL: a clear error, exit 1."""
    # Port 9 (discard) is not served on a test machine's loopback.
    code = cli.main(["send-test", "--url", "http://127.0.0.1:9/webhooks"], ENVIRON)
    assert code == 1
    assert "cannot deliver to http://127.0.0.1:9/webhooks" in capsys.readouterr().err


# ---- `replay`: stored deliveries, re-signed, make a second installation's tables equal
# the first's.


def _replay(data_dir: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", "replay", *argv, "--data-dir", str(data_dir)],
        cwd=ROOT,
        env=app_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def _tables(data_dir: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every user-facing projection table, sorted, read directly."""
    conn = sqlite3.connect(data_dir / "projections.db")
    try:
        names = [
            name for p in discover() for name in p.TABLE.table_names if not name.startswith("_")
        ]
        return {name: sorted(conn.execute(f"SELECT * FROM {name}"), key=repr) for name in names}
    finally:
        conn.close()


def _populate(serve: ServeProcess) -> None:
    url = f"http://127.0.0.1:{serve.port}/webhooks"
    results = asyncio.run(send.send(url, SECRET, EVENT_TYPES, count=2, stream=io.StringIO()))
    assert all(r.accepted for r in results)
    wait_until(serve.caught_up, "the first installation's projections")


def test_replay_into_a_second_serve_makes_equal_tables(tmp_path: Path) -> None:
    """Every delivery arrives with its id, headers and body; the tables come out equal."""
    first, second = ServeProcess(tmp_path / "first"), ServeProcess(tmp_path / "second")
    try:
        _populate(first)
        url = f"http://127.0.0.1:{second.port}/webhooks"
        done = _replay(
            tmp_path / "first", "--to", url, "--secret", SECRET.decode(), "--rate", "500"
        )
        wait_until(second.caught_up, "the second installation's projections")
        again = _replay(
            tmp_path / "first", "--to", url, "--secret", SECRET.decode(), "--rate", "500"
        )
    finally:
        first.stop()
        second.stop()
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2 * len(EVENT_TYPES)
    assert all("  200  " in line and '"accepted"' in line for line in lines)
    assert event_rows(tmp_path / "second") == event_rows(tmp_path / "first")
    assert _tables(tmp_path / "second") == _tables(tmp_path / "first")
    assert _tables(tmp_path / "first")["orders"]
    # Replayed again: the receiver keeps each webhook id once and says so.
    assert again.returncode == 0
    assert all('"duplicate"' in line for line in again.stdout.splitlines())


def test_filters_and_a_wrong_secret(tmp_path: Path) -> None:
    """--type and --id pick deliveries; answers that are not 2xx make the exit code 1."""
    serve = ServeProcess(tmp_path / "data")
    try:
        _populate(serve)
        url = f"http://127.0.0.1:{serve.port}/webhooks"
        wrong = _replay(
            tmp_path / "data",
            "--to",
            url,
            "--secret",
            OTHER_SECRET.decode(),
            "--type",
            "order.created",
        )
        ids = [row[1] for row in event_rows(tmp_path / "data")[:3]]
        picked = _replay(tmp_path / "data", "--to", url, "--secret", SECRET.decode(), "--id", *ids)
    finally:
        serve.stop()
    assert wrong.returncode == 1
    assert [line.split()[1] for line in wrong.stdout.splitlines()] == ["order.created"] * 2
    assert all(
        "  401  " in line and "invalid_signature" in line for line in wrong.stdout.splitlines()
    )
    assert picked.returncode == 0
    assert [line.split()[2] for line in picked.stdout.splitlines()] == ids


def test_unreachable_endpoint_exits_1(tmp_path: Path) -> None:
    """Nothing listening: one error naming the URL, exit 1."""
    populate_examples(tmp_path)
    url = f"http://127.0.0.1:{free_port()}/webhooks"
    done = _replay(tmp_path, "--to", url, "--secret", SECRET.decode())
    assert done.returncode == 1
    assert f"cannot deliver to {url}" in done.stderr


def test_no_secret_is_refused(tmp_path: Path) -> None:
    """Without --secret or BITBYBIT_REPLAY_SECRET nothing is sent: exit 2 naming both."""
    EventStore.open(tmp_path / "events.db").close()
    done = _replay(tmp_path, "--to", "http://127.0.0.1:9/webhooks")
    assert done.returncode == 2
    assert "--secret" in done.stderr
    assert "BITBYBIT_REPLAY_SECRET" in done.stderr
