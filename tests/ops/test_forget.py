"""`forget` (app/ops/forget.py): the byte scan, the tables, the triggers, dry runs.

Also: staying forgotten, while `serve` takes deliveries (both as real processes), and
after a later `sync` pass brings the person back (the sweep).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from app import cli
from app.eventlog.schema import open_log
from app.eventlog.store import EventStore, Outcome
from app.ops import forget
from app.ops.forget import sweep_once
from app.ops.status import collect
from app.projection.projector import Projector, connect
from app.settings import Settings
from app.sync import runner
from app.sync.passes import KINDS
from app.webhooks.signature import sign
from projections import discover
from tests._helpers import (
    ALICE,
    BOB,
    DEADLINE_SECONDS,
    FORGOTTEN,
    KEPT,
    ROOT,
    SECRET,
    SHARED_NAME,
    T0,
    Harness,
    ServeProcess,
    app_env,
    budi_customer,
    delivery,
    dump_tables,
    eventually,
    forms,
    iso,
    log_count,
    log_rows,
    populate_people,
    wait_until,
)
from tests.fake_api import Account, customer, order

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests._helpers import Dump, MakeClient


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "data"
    populate_people(directory)
    return directory


def _forget(data_dir: Path, *args: str) -> int:
    return cli.main(["forget", "--data-dir", str(data_dir), *args], environ={})


def _all_bytes(data_dir: Path) -> bytes:
    return b"".join(path.read_bytes() for path in sorted(data_dir.rglob("*")) if path.is_file())


def _files(data_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(data_dir.rglob("*")) if p.is_file()}


def _rebuilt(data_dir: Path, tmp_path: Path) -> Dump:
    """The tables a projector makes from the log from nothing."""
    log = open_log(data_dir / "events.db")
    from app.eventlog.reads import LogReader  # noqa: PLC0415

    tmp_path.mkdir(parents=True, exist_ok=True)
    conn = connect(tmp_path / "fresh.db")
    runner = Projector(conn, LogReader(log), discover())
    runner.install_all()
    runner.catch_up()
    try:
        return dump_tables(conn, discover())
    finally:
        conn.close()
        log.close()


def _live(data_dir: Path) -> Dump:
    conn = sqlite3.connect(data_dir / "projections.db")
    try:
        return dump_tables(conn, discover())
    finally:
        conn.close()


def _rows(path: Path, query: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()


def test_no_byte_of_the_person_is_left_and_tables_equal_a_rebuild(
    data_dir: Path, tmp_path: Path
) -> None:
    before = _all_bytes(data_dir)
    distinctive = [v for k, v in ALICE.items() if k != "later_email"]
    assert all(any(form in before for form in forms(v)) for v in distinctive)

    assert _forget(data_dir, "--customer", FORGOTTEN, "--yes", "--reason", "ticket 42") == 0

    after = _all_bytes(data_dir)
    left = [v for v in distinctive for form in forms(v) if form in after]
    assert left == []
    for value in [*BOB.values(), SHARED_NAME]:
        assert any(form in after for form in forms(value)), value
    assert _live(data_dir) == _rebuilt(data_dir, tmp_path)


def test_orders_keep_totals_statuses_and_items_and_the_customer_row_stays(
    data_dir: Path,
) -> None:
    projections = data_dir / "projections.db"
    query = "SELECT id, status, total, financial_status, customer_id FROM orders ORDER BY id"
    orders_before = _rows(projections, query)
    items_before = _rows(projections, "SELECT * FROM order_line_items ORDER BY 1, 2")

    assert _forget(data_dir, "--customer", FORGOTTEN, "--yes") == 0

    assert _rows(projections, query) == orders_before
    assert _rows(projections, "SELECT * FROM order_line_items ORDER BY 1, 2") == items_before
    personal = "email, phone_number, first_name, last_name, image_url"
    query = f"SELECT id, {personal}, tags FROM customers WHERE id = 'cust_alice'"
    assert _rows(projections, query) == [(FORGOTTEN, None, None, None, None, None, '["vip"]')]
    assert _rows(projections, "SELECT first_name, email FROM customers WHERE id = 'cust_bob'") == [
        (SHARED_NAME, BOB["email"])
    ]
    shipping = "customer_email, shipping_address1, shipping_phone"
    query = f"SELECT {shipping} FROM orders WHERE id = 'order_a1'"
    assert _rows(projections, query) == [(None, None, None)]
    assert _rows(
        projections, "SELECT sender, body FROM messages WHERE message_id = 'msg_a_in'"
    ) == [(None, None)]
    assert _rows(
        projections, "SELECT status, recipient FROM messages WHERE message_id = 'msg_a_out'"
    ) == [("sent", None)]


def test_the_forget_record_holds_counts_and_no_personal_value(data_dir: Path) -> None:
    assert _forget(data_dir, "--customer", FORGOTTEN, "--yes", "--reason", "ticket 42") == 0

    [(customer_id, kind, events, reason)] = _rows(
        data_dir / "events.db", "SELECT customer_id, kind, events, reason FROM forget_records"
    )
    assert (customer_id, kind, reason) == (FORGOTTEN, "forget", "ticket 42")
    assert json.loads(str(events)) == {
        "customer.created": 1,
        "customer.snapshot": 1,
        "customer.updated": 1,
        "message.received": 1,
        "message.status.updated": 1,
        "order.created": 1,
        "order.snapshot": 1,
        "order.updated": 1,
    }
    redacted = _rows(data_dir / "events.db", "SELECT COUNT(*) FROM redactions")
    assert redacted == [(8,)]
    # Snapshots are redacted like webhooks, and stay unsigned.
    [(signature, payload)] = _rows(
        data_dir / "events.db",
        "SELECT signature, payload FROM events WHERE webhook_id = 'snap-cust-alice'",
    )
    body = json.loads(payload)  # type: ignore[arg-type]
    assert signature == ""
    assert body["addresses"][0] == {"id": body["addresses"][0]["id"]} | {
        k: None for k in body["addresses"][0] if k != "id"
    }
    assert (body["id"], body["tags"], body["email"]) == (FORGOTTEN, ["vip"], None)


def test_the_triggers_still_refuse_every_other_change(data_dir: Path) -> None:
    assert _forget(data_dir, "--customer", FORGOTTEN, "--yes") == 0
    conn = sqlite3.connect(data_dir / "events.db", isolation_level=None)
    try:
        redacted = conn.execute("SELECT MIN(position) FROM redactions").fetchone()[0]
        other = conn.execute(
            "SELECT MIN(position) FROM events WHERE position NOT IN "
            "(SELECT position FROM redactions)"
        ).fetchone()[0]
        for statement, params in (
            ("UPDATE events SET payload = CAST('{}' AS BLOB) WHERE position = ?", (other,)),
            ("UPDATE events SET webhook_id = 'x' WHERE position = ?", (redacted,)),
            ("UPDATE events SET signature = '' WHERE position = ?", (redacted,)),
            (
                "UPDATE events SET payload = CAST('not json' AS BLOB) WHERE position = ?",
                (redacted,),
            ),
            ("DELETE FROM events WHERE position = ?", (redacted,)),
            ("DELETE FROM events WHERE position = ?", (other,)),
            ("DELETE FROM redactions WHERE position = ?", (redacted,)),
            ("UPDATE forget_records SET reason = 'x'", ()),
            ("DELETE FROM forgotten_entities", ()),
        ):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute(statement, params)
        conn.execute(
            "UPDATE events SET payload = CAST('{}' AS BLOB) WHERE position = ?", (redacted,)
        )
    finally:
        conn.close()


def test_an_older_log_gets_the_narrow_trigger_in_place_of_the_blanket_one(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    conn = open_log(path)
    conn.execute("DROP TRIGGER events_refuse_update_unless_redacted")
    conn.execute(
        "CREATE TRIGGER events_refuse_update BEFORE UPDATE ON events "
        "BEGIN SELECT RAISE(ABORT, 'old: events cannot be updated'); END"
    )
    conn.close()

    open_log(path).close()

    query = "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'events'"
    triggers = {name for (name,) in _rows(path, query)}
    assert triggers == {"events_refuse_update_unless_redacted", "events_refuse_delete"}


def _forget_then_deliver_a_later_update(data_dir: Path) -> None:
    """Forget the customer, then take (and project) a later update about them."""
    assert _forget(data_dir, "--customer", FORGOTTEN, "--yes") == 0
    later = budi_customer(FORGOTTEN, ALICE | {"email": ALICE["later_email"]})
    h = Harness(data_dir)
    try:
        h.send(
            "customer.updated",
            later | {"updatedAt": iso(T0 + 999)},
            webhook_id="wh-alice-later",
            timestamp=T0 + 999,
        )
    finally:
        h.close()


def test_a_later_update_is_never_shown_and_the_sweep_redacts_it(
    data_dir: Path, tmp_path: Path
) -> None:
    _forget_then_deliver_a_later_update(data_dir)
    projections = data_dir / "projections.db"
    assert _rows(
        projections, "SELECT email, updated_at FROM customers WHERE id = 'cust_alice'"
    ) == [(None, iso(T0 + 999))]
    assert _live(data_dir) == _rebuilt(data_dir, tmp_path / "a")

    reports = forget.sweep(Settings(data_dir=data_dir), discover())

    assert [r.redacted for r in reports] == [1]
    assert not any(form in _all_bytes(data_dir) for form in forms(ALICE["later_email"]))
    assert _rows(data_dir / "events.db", "SELECT kind FROM forget_records ORDER BY id") == [
        ("forget",),
        ("sweep",),
    ]
    assert _live(data_dir) == _rebuilt(data_dir, tmp_path / "b")
    assert forget.sweep(Settings(data_dir=data_dir), discover()) == []


def test_the_sweep_goes_on_while_a_projection_is_stale(data_dir: Path) -> None:
    """A stale projection (awaiting rebuild after an upgrade) does not stop the sweep."""
    _forget_then_deliver_a_later_update(data_dir)
    with sqlite3.connect(data_dir / "projections.db") as conn:
        conn.execute("UPDATE _projections SET version = version - 1 WHERE name = 'orders'")

    reports = forget.sweep(Settings(data_dir=data_dir), discover())

    assert [r.redacted for r in reports] == [1]
    assert not any(form in _all_bytes(data_dir) for form in forms(ALICE["later_email"]))


def test_dry_run_and_unknown_ids_change_no_byte(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = _files(data_dir)

    assert _forget(data_dir, "--customer", FORGOTTEN, "--dry-run") == 0
    assert "order.snapshot" in capsys.readouterr().out
    assert _forget(data_dir, "--customer", "cust_nobody", "--yes") == 2
    assert "cust_nobody" in capsys.readouterr().err
    # Not on a terminal (pytest's stdin): --yes is required.
    assert _forget(data_dir, "--customer", FORGOTTEN) == 2

    assert _files(data_dir) == files


def test_status_counts_forget_records(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _forget(data_dir, "--customer", FORGOTTEN, "--yes") == 0
    capsys.readouterr()

    assert cli.main(["status", "--json", "--data-dir", str(data_dir)], environ={}) == 0

    assert json.loads(capsys.readouterr().out)["log"]["forget_records"] == 1


def test_export_marks_redacted_rows(data_dir: Path, tmp_path: Path) -> None:
    assert _forget(data_dir, "--customer", FORGOTTEN, "--yes") == 0
    exported = tmp_path / "log.jsonl"
    assert cli.main(["export", str(exported), "--data-dir", str(data_dir)], environ={}) == 0
    lines = [json.loads(line) for line in exported.read_text().splitlines()]
    assert sum(line.get("redacted", False) for line in lines) == 8
    assert all(not line.get("redacted") for line in lines if KEPT in line["payload"])


def test_a_retry_of_a_redacted_delivery_is_a_plain_duplicate(data_dir: Path) -> None:
    """BitByBit retrying the original body after forget: answered duplicate, nothing kept aside."""
    assert _forget(data_dir, "--customer", FORGOTTEN, "--yes") == 0
    retry = delivery(
        "customer.created", budi_customer(FORGOTTEN, ALICE), webhook_id="wh-alice-created"
    )
    before = _counts(data_dir)
    store = EventStore.open(data_dir / "events.db")
    try:
        [result] = store.append([retry])
    finally:
        store.close()
    assert result.outcome is Outcome.DUPLICATE
    assert _counts(data_dir) == before


def _counts(data_dir: Path) -> tuple[int, int]:
    with sqlite3.connect(data_dir / "events.db") as conn:
        events, kept_aside = conn.execute(
            "SELECT (SELECT COUNT(*) FROM events), (SELECT COUNT(*) FROM conflicting_duplicates)"
        ).fetchone()
    return int(events), int(kept_aside)


# ---- `forget` while `serve` takes deliveries, both as real processes.


THREADS = 3
PER_THREAD = 60


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[ServeProcess]:
    populate_people(tmp_path / "data")
    server = ServeProcess(tmp_path / "data")
    try:
        yield server
    finally:
        server.stop()


def _send(server: ServeProcess, n: int) -> tuple[int, float]:
    body = json.dumps({"id": f"order_x{n}", "status": "active", "total": n}).encode()
    headers = {
        "Content-Type": "application/json",
        "X-BitByBit-Webhook-Id": f"wh_forget_e2e_{n:05d}",
        "X-BitByBit-Webhook-Event": "order.created",
        "X-BitByBit-Webhook-Timestamp": "1706000000",
        "X-BitByBit-Webhook-Signature": sign(SECRET, int(time.time()), body),
    }
    started = time.monotonic()
    status, _ = server.request("POST", "/webhooks", body, headers)
    return status, time.monotonic() - started


def test_forget_while_serving_fails_no_delivery_and_leaves_no_byte(
    serve: ServeProcess, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    answers: list[tuple[int, float]] = []
    lock = threading.Lock()

    def sender(first: int) -> None:
        for n in range(first, first + PER_THREAD):
            answer = _send(serve, n)
            with lock:
                answers.append(answer)

    threads = [threading.Thread(target=sender, args=(t * PER_THREAD,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(answers) >= 10, "the first deliveries")
    done = subprocess.run(
        [sys.executable, "-m", "app", "forget", "--customer", FORGOTTEN, "--yes",
         "--data-dir", str(data_dir)],
        cwd=ROOT, env=app_env(), capture_output=True, check=False, timeout=DEADLINE_SECONDS,
    )  # fmt: skip
    for thread in threads:
        thread.join(DEADLINE_SECONDS)

    assert done.returncode == 0, done.stderr.decode()
    assert [status for status, _ in answers] == [200] * THREADS * PER_THREAD
    logged = log_rows(data_dir, "SELECT COUNT(*) FROM events WHERE webhook_id LIKE 'wh_forget%'")
    assert logged == [(THREADS * PER_THREAD,)]
    wait_until(serve.caught_up, "the live projector to catch up")
    everything = b"".join(p.read_bytes() for p in data_dir.rglob("*") if p.is_file())
    assert [v for v in (ALICE["email"], ALICE["street"], ALICE["message_in"]) if
            any(form in everything for form in forms(v))] == []  # fmt: skip
    assert BOB["email"].encode() in everything


# ---- What `sync` brought in: snapshots are forgotten, and so is a later pass about the
# same person.


SYNCED = 3  # the customer of the fake account who is forgotten
# Distinct to the forgotten customer: no other customer's value contains them.
PERSONAL = (b"person3@example.com", b"+628120000003", b'Jl. Sudirman 3"', b'First3"')


def _cli(settings: Settings, *argv: str) -> int:
    return cli.main([*argv, "--data-dir", str(settings.data_dir)], environ={})


async def test_snapshots_are_forgotten_and_stay_forgotten_after_the_next_pass(
    sync_settings: Settings, account: Account
) -> None:
    """No byte of the person is left after forget, nor after a later pass and the sweep."""
    for n in range(12):
        account.customers[f"cust_{n:06d}"] = customer(n)
        account.orders[f"order_{n:06d}"] = order(n)
    kinds = [KINDS["customers"], KINDS["orders"]]
    assert (await runner.run_pass(sync_settings, kinds, stream=io.StringIO())).ok
    assert _cli(sync_settings, "rebuild") == 0
    everything = _all_bytes(sync_settings.data_dir)
    assert all(value in everything for value in PERSONAL)

    assert _cli(sync_settings, "forget", "--customer", f"cust_{SYNCED:06d}", "--yes") == 0
    after = _all_bytes(sync_settings.data_dir)
    assert [v for v in PERSONAL if v in after] == []
    assert b"person4@example.com" in after  # the others are untouched

    # The account still holds the person: the next pass reads them again.
    rows = log_count(sync_settings.data_dir)
    report = await runner.run_pass(sync_settings, kinds, stream=io.StringIO())
    assert report.ok, [(k, v.problems_seen) for k, v in report.entities.items()]
    sweep_once(sync_settings, discover())
    again = _all_bytes(sync_settings.data_dir)
    assert [v for v in PERSONAL if v in again] == []
    assert log_count(sync_settings.data_dir) >= rows


# --- a forget killed between its commits ------------------------------------------------------

KILLED_FORGET = """
import os, signal, sys
from app import cli
from app.ops import forget
from app.ops.status import collect
from app.projection import projector

data_dir, step = sys.argv[1], sys.argv[2]

def kill():
    os.kill(os.getpid(), signal.SIGKILL)

if step == "refolded partly":
    # The first projection's re-fold has committed; the second is about to start.
    original, calls = projector._delete, []
    def delete(*args):
        calls.append(1)
        if len(calls) > 1:
            kill()
        original(*args)
    projector._delete = delete
else:
    forget.reached = lambda name: kill() if name == step else None
cli.main(["forget", "--data-dir", data_dir, "--customer", "cust_alice", "--yes"], environ={})
"""
KILL_STEPS = ["recorded", "refolded partly", "refolded", "scrubbed"]


def _killed_forget(data_dir: Path, step: str) -> None:
    """Run a forget in a process of its own and SIGKILL it right after `step` committed."""
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_FORGET, str(data_dir), step],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()


def _pending(data_dir: Path) -> int:
    """How many forget records `status` reports pending."""
    log: dict[str, int] = collect(Settings(data_dir=data_dir))["log"]  # type: ignore[assignment]
    return log["forget_pending"]


def _alice_left(data_dir: Path) -> list[str]:
    everything = _all_bytes(data_dir)
    return [v for k, v in ALICE.items() if k != "later_email" for f in forms(v) if f in everything]


@pytest.mark.parametrize("step", KILL_STEPS)
def test_a_forget_killed_after_any_commit_is_completed_by_the_next_forget(
    data_dir: Path, tmp_path: Path, step: str
) -> None:
    """The record is pending (and status says so) until the next forget completes it."""
    _killed_forget(data_dir, step)
    assert _rows(data_dir / "events.db", "SELECT customer_id FROM forget_records") == [(FORGOTTEN,)]
    assert _pending(data_dir) == 1
    if step == "recorded":
        # The tables still show them: exactly what pending means.
        assert _alice_left(data_dir)
    assert _forget(data_dir, "--customer", KEPT, "--yes") == 0
    assert _pending(data_dir) == 0
    assert _alice_left(data_dir) == []
    assert _live(data_dir) == _rebuilt(data_dir, tmp_path)


@pytest.mark.parametrize("step", ["recorded", "refolded partly"])
async def test_a_forget_killed_after_its_first_commit_is_completed_by_serve(
    data_dir: Path, make_client: MakeClient, step: str
) -> None:
    """Started on a pending forget, serve completes it: no value of theirs in the tables."""
    _killed_forget(data_dir, step)
    assert _alice_left(data_dir)
    await make_client(Settings(secrets=(SECRET,), data_dir=data_dir))

    async def pending() -> int:
        return _pending(data_dir)

    await eventually(pending, lambda count: count == 0, "serve to complete the forget")
    conn = sqlite3.connect(f"file:{data_dir / 'projections.db'}?mode=ro", uri=True)
    try:
        tables = "\n".join(conn.iterdump()).encode()
    finally:
        conn.close()
    assert [v for k, v in ALICE.items() if k != "later_email" if v.encode() in tables] == []
    assert _alice_left(data_dir) == []


# --- forget near a full disk -------------------------------------------------------------------

DISK_BYTES = 32 * 1024 * 1024
MiB = 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path | None]:
    """A tmpfs of `DISK_BYTES` of the test's own; None where mounting is not allowed."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mount, umount = shutil.which("mount"), shutil.which("umount")
    options = f"size={DISK_BYTES},mode=0700"
    mounted = (
        mount is not None
        and umount is not None
        and subprocess.run(
            [mount, "-t", "tmpfs", "-o", options, "tmpfs", str(mount_point)],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )
    if not mounted or umount is None:
        yield None
        return
    try:
        yield mount_point
    finally:
        subprocess.run([umount, str(mount_point)], check=True)


def _big_log(directory: Path) -> None:
    """The two people, and enough other orders to make the log a few MiB."""
    populate_people(directory)
    store = EventStore.open(directory / "events.db")
    try:
        store.append(
            [
                delivery(
                    "order.created",
                    {"id": f"order_bulk_{i}", "status": "active", "note": "x" * 2000},
                    webhook_id=f"wh-bulk-{i}",
                )
                for i in range(1500)
            ]
        )
    finally:
        store.close()


def _fill_to(disk: Path, free: int) -> None:
    """Take the disk's space until `free` bytes are left."""
    (disk / "filler").write_bytes(b"\0" * (shutil.disk_usage(disk).free - free))


def _wal_bytes(data_dir: Path) -> int:
    return sum(path.stat().st_size for path in data_dir.glob("*-wal"))


def test_forget_refuses_to_start_without_room_for_its_rewrite(
    small_disk: Path | None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """One sentence naming what it needs; not a byte written, the free space as it was."""
    data_dir = (small_disk or tmp_path) / "data"
    _big_log(data_dir)
    if small_disk is not None:
        _fill_to(small_disk, 4 * MiB)
    else:  # no mounting here: the disk is said to have 4 MiB free
        monkeypatch.setattr(forget, "free_bytes", lambda _directory: 4 * MiB)
    files = _files(data_dir)
    free = shutil.disk_usage(data_dir).free
    assert _forget(data_dir, "--customer", FORGOTTEN, "--yes") == 1
    err = capsys.readouterr().err
    assert "forget needs about" in err
    assert "MiB free on the disk of" in err
    assert "Traceback" not in err
    # Only the (empty) lock file is new: it was taken before looking.
    assert _files(data_dir) == files | {"rebuild.lock": b""}
    assert shutil.disk_usage(data_dir).free == free


def test_a_disk_that_fills_during_forget_gets_its_space_back(
    small_disk: Path | None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Something else took the room after the check: the WALs are emptied, one sentence.

    The forget stays recorded and pending, and completes once there is room again.
    """
    data_dir = (small_disk or tmp_path) / "data"
    _big_log(data_dir)
    monkeypatch.setattr(forget, "require_space", lambda _settings: None)
    if small_disk is not None:
        _fill_to(small_disk, 2 * MiB)
    else:  # no mounting here: SQLite's own limit on the file's pages stands for the disk
        original = open_log

        def limited(path: Path) -> sqlite3.Connection:
            conn = original(path)
            (pages,) = conn.execute("PRAGMA page_count").fetchone()
            conn.execute(f"PRAGMA max_page_count = {pages + 64}")
            return conn

        monkeypatch.setattr(forget, "open_log", limited)
    # A `serve` beside it keeps the log open: closing forget's connection does not
    # remove the WAL then, only truncating it gives the space back.
    beside = sqlite3.connect(data_dir / "events.db")
    try:
        beside.execute("SELECT COUNT(*) FROM events").fetchone()
        free = shutil.disk_usage(data_dir).free
        assert _forget(data_dir, "--customer", FORGOTTEN, "--yes") == 1
        assert _wal_bytes(data_dir) == 0
    finally:
        beside.close()
    err = capsys.readouterr().err
    assert "filled up during forget" in err
    assert "Traceback" not in err
    # The log keeps its few new rows (the record and the redactions), nothing more.
    assert shutil.disk_usage(data_dir).free >= free - 256 * 1024
    assert _pending(data_dir) == 1
    monkeypatch.undo()
    if small_disk is not None:
        (small_disk / "filler").unlink()
    assert _forget(data_dir, "--customer", KEPT, "--yes") == 0
    assert _pending(data_dir) == 0
    assert _alice_left(data_dir) == []


def test_forget_refuses_while_a_moved_aside_projections_db_holds_values(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A copy serve or rebuild moved aside is named, with the `rm`; nothing is changed."""
    aside = data_dir / "projections.db.damaged-20261205T000000Z"
    shutil.copyfile(data_dir / "projections.db", aside)
    aside.chmod(0o600)  # as the rename that moved it aside left it
    files = _files(data_dir)
    assert _forget(data_dir, "--customer", FORGOTTEN, "--yes") == 1
    err = capsys.readouterr().err
    assert f"rm {aside}" in err
    assert "Traceback" not in err
    after = _files(data_dir)
    assert [after[name] for name in files if not name.endswith(("-wal", "-shm"))] == [
        content for name, content in files.items() if not name.endswith(("-wal", "-shm"))
    ]
    aside.unlink()
    assert _forget(data_dir, "--customer", FORGOTTEN, "--yes") == 0
    assert _alice_left(data_dir) == []


async def test_serve_removes_what_a_killed_rebuild_left(
    data_dir: Path, make_client: MakeClient
) -> None:
    """Scratch files hold personal data: serve's sweep removes them when no rebuild runs."""
    settings = Settings(secrets=(SECRET,), data_dir=data_dir)
    leftover = settings.scratch_path("-customers")
    leftover.write_bytes(ALICE["email"].encode())
    await make_client(settings)

    async def left() -> bool:
        return leftover.exists()

    await eventually(left, lambda exists: not exists, "the leftover to be removed")
