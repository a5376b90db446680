"""`explore`: the dashboard's numbers, data first, named queries valid in both dialects.

And a Datasette that stops with `explore` and leaves nothing behind.

Every test that starts `explore` runs the real `python -m app explore` and ends it on
every path (`_Explore.stop`), so the suite leaves no process behind either.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import urllib.parse
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from app.eventlog import schema
from app.ops import explore as explore_module
from app.ops.explore import CHARTS, EVENT_QUERIES, PROJECTION_QUERIES, metadata
from tests import _account, _postgres
from tests._helpers import ROOT, app_env, append_and_project, free_port, wait_until

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

# An email and a phone number (written unlike the stored one) of the account's Ana.
ANA = ("ana@example.id", "+62 812-1111-2222")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("account")
    directory.chmod(0o700)
    append_and_project(directory, _account.deliveries())
    return directory


def _get(
    port: int, path: str, headers: Mapping[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request("GET", path, headers=dict(headers or {}))
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def _json(port: int, path: str) -> Any:
    status, _, body = _get(port, path)
    assert status == 200, (path, body[:500])
    return json.loads(body)


class _Explore:
    """One `python -m app explore` process, in a session of its own, with its own TMPDIR."""

    def __init__(
        self, data_dir: Path, tmp: Path, *args: str, env: Mapping[str, str] | None = None
    ) -> None:
        self.port = free_port()
        self.tmpdir = tmp / f"tmp-{self.port}"
        self.tmpdir.mkdir()
        self.log_path = tmp / f"explore-{self.port}.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "app", "explore"),
                    *("--port", str(self.port), "--data-dir", str(data_dir), *args),
                ],
                cwd=ROOT,
                env={**app_env(), "TMPDIR": str(self.tmpdir), **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self) -> None:
        """Until Datasette answers; fails the test, with its output, if it exits instead."""
        wait_until(lambda: self.proc.poll() is not None or self.answers(), "Datasette")
        assert self.proc.poll() is None, self.output()

    def answers(self) -> bool:
        """Whether anything answers HTTP on the port."""
        try:
            _get(self.port, "/-/versions.json")
        except OSError:
            return False
        return True

    def output(self) -> str:
        """What the process wrote."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        """End it whatever state it is in: SIGTERM, then SIGKILL of its whole session."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(20)


@pytest.fixture
def start(tmp_path: Path, data_dir: Path) -> Iterator[Any]:
    """Starts `explore` processes for a test and ends each one however the test ends."""
    started: list[_Explore] = []

    def make(*args: str, env: Mapping[str, str] | None = None) -> _Explore:
        started.append(_Explore(data_dir, tmp_path, *args, env=env))
        return started[-1]

    yield make
    for process in started:
        process.stop()


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[int]:
    """One `explore` on the account for the tests that only read from it."""
    process = _Explore(data_dir, tmp_path_factory.mktemp("explore"))
    try:
        process.wait_ready()
        yield process.port
    finally:
        process.stop()


# --- The dashboard ------------------------------------------------------------------


def _chart_rows(data_dir: Path, slug: str) -> list[tuple[Any, ...]]:
    sql = next(sql for name, _, sql, _ in CHARTS if name == slug)
    conn = sqlite3.connect(data_dir / "projections.db")
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def _numbers(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [tuple(Decimal(str(v)) if isinstance(v, float) else v for v in row) for row in rows]


def test_paid_revenue_per_day_is_the_hand_computed_one(data_dir: Path) -> None:
    """One bar per UTC day and currency with its paid revenue; the order without a day is off it."""
    expected = [
        (day, currency or "no currency", revenue)
        for day, currency, _, _, revenue in _account.SALES_BY_DAY
        if day is not None
    ]
    rows = _numbers(_chart_rows(data_dir, "paid-revenue"))
    assert rows == sorted(expected, key=lambda r: (r[0], r[1]))


def test_orders_by_status_is_the_hand_computed_one(data_dir: Path) -> None:
    """Every order counted under its status, the one without a status under its own bar."""
    rows = sorted(_chart_rows(data_dir, "orders-by-status"))
    assert rows == sorted((s or "no status", n) for s, n in _account.ORDERS_BY_STATUS)


def test_new_customers_per_week_is_the_hand_computed_one(data_dir: Path) -> None:
    """Customers counted in the UTC week (from Monday) they were created in."""
    assert _chart_rows(data_dir, "new-customers") == _account.NEW_CUSTOMERS_PER_WEEK


def test_whatsapp_funnel_is_the_hand_computed_one(data_dir: Path) -> None:
    """Each template's messages at each stage, as the message_funnel view counts them."""
    expected = [
        (template or "no template", stage, count)
        for template, _, sent, delivered, read, failed, _ in _account.MESSAGE_FUNNEL
        for stage, count in (
            ("sent", sent),
            ("delivered", delivered),
            ("read", read),
            ("failed", failed),
        )
    ]
    assert sorted(_chart_rows(data_dir, "whatsapp-funnel")) == sorted(expected)


def test_the_home_page_is_the_dashboard_with_its_four_charts(running: int) -> None:
    """`/` leads to the dashboard, whose page draws each chart from the bundled Vega-Lite."""
    status, headers, _ = _get(running, "/")
    assert status == 302
    assert headers["Location"].endswith(explore_module.DASHBOARD_PATH)
    status, _, body = _get(running, explore_module.DASHBOARD_PATH)
    assert status == 200
    page = body.decode()
    for slug, _, _, _ in CHARTS:
        assert f"renderChart('{slug}'" in page
    assert "vega-lite.min.js" in page


def test_the_charts_answer_through_datasette(running: int, data_dir: Path) -> None:
    """The dashboard fetches each chart's rows from Datasette: the same rows as SQLite's."""
    for slug, _, sql, _ in CHARTS:
        query = urllib.parse.urlencode({"sql": sql, "_shape": "array"})
        rows = _json(running, f"/projections.json?{query}")
        assert [tuple(r.values()) for r in rows] == _chart_rows(data_dir, slug), slug


def test_no_page_loads_anything_from_elsewhere(running: int) -> None:
    """Every script and stylesheet the pages name is served by this machine."""
    pages = [
        explore_module.DASHBOARD_PATH,
        "/projections",
        "/projections/orders",
        "/projections/sales_by_day",
        "/projections/find_a_customer",
        "/events",
    ]
    for path in pages:
        status, _, body = _get(running, path)
        assert status == 200, path
        sources = re.findall(rb'<(?:script|link)[^>]*(?:src|href)="([^"]*)"', body)
        assert sources, path
        here = f"http://127.0.0.1:{running}/".encode()
        elsewhere = [s for s in sources if re.match(rb"(https?:)?//", s)]
        assert [s for s in elsewhere if not s.startswith(here)] == [], path


# --- Data first ---------------------------------------------------------------------


def _database(name: str) -> dict[str, Any]:
    databases: dict[str, Any] = metadata()["databases"]
    return databases[name]  # type: ignore[no-any-return]


def test_every_table_view_and_column_is_described(data_dir: Path) -> None:
    """The metadata describes every table and view of both files, and each of their columns."""
    for database in ("events", "projections"):
        conn = sqlite3.connect(data_dir / f"{database}.db")
        try:
            names = [
                row[0]
                for row in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')"
                )
            ]
            described = _database(database)["tables"]
            assert set(described) == set(names), database
            for name in names:
                columns = {row[1] for row in conn.execute(f"PRAGMA table_info({name})")}
                assert described[name]["description"], name
                assert set(described[name]["columns"]) == columns, name
                assert all(described[name]["columns"].values()), name
        finally:
            conn.close()


def test_bookkeeping_is_hidden_and_data_is_not() -> None:
    """The bookkeeping tables are hidden; the entities, their children and the log are not."""
    hidden = {
        (db, name)
        for db in ("events", "projections")
        for name, table in _database(db)["tables"].items()
        if table["hidden"]
    }
    assert hidden == {
        ("projections", "_projections"),
        ("projections", "_changes"),
        ("projections", "_projection_warnings"),
        ("projections", "_changes_sequence"),
        ("projections", "_projection_errors"),
        ("projections", "_state_customers"),
        ("projections", "_state_orders"),
        ("projections", "_state_products"),
        ("projections", "_state_messages"),
        *(("events", name) for name in schema.BOOKKEEPING),
    }


def test_the_orders_page_shows_rows_before_the_column_descriptions(running: int) -> None:
    """The descriptions come after the rows (moved there, folded), and customer_id links."""
    status, _, body = _get(running, "/projections/orders")
    assert status == 200
    page = body.decode()
    assert "What the columns mean" in page
    data = _json(running, "/projections/orders.json?_labels=on&_shape=objects")
    linked = next(row for row in data["rows"] if row["id"] == "order_01")
    assert linked["customer_id"] == {"value": "cust_ana", "label": "ana@example.id"}


def test_views_link_the_customers_the_mirror_has(running: int) -> None:
    """A view's customer_id links to the customer's row, unless the mirror never saw them."""
    _, _, body = _get(running, "/projections/customer_revenue")
    page = body.decode()
    assert '<a href="/projections/customers/cust_ana">cust_ana</a>' in page
    assert '<a href="/projections/customers/cust_ghost">' not in page
    assert "cust_ghost" in page


def test_the_logs_bodies_read_as_text(running: int) -> None:
    """A page of the log shows each body's JSON, not a download link."""
    _, _, body = _get(running, "/events/events")
    page = body.decode()
    assert "Binary:" not in page
    assert "&#34;email&#34;: &#34;ana@example.id&#34;" in page


# --- Named queries ------------------------------------------------------------------


def _parameters(sql: str, value: str) -> dict[str, str]:
    return dict.fromkeys(re.findall(r":(\w+)", sql), value)


def test_the_named_queries_answer_a_merchants_questions(running: int) -> None:
    """Each named query answers with rows; a customer is found by email or phone number."""
    for database, queries in (("projections", PROJECTION_QUERIES), ("events", EVENT_QUERIES)):
        for name, _, sql, _ in queries:
            for value in ANA if ":email_or_phone" in sql else ("cust_ana",):
                query = urllib.parse.urlencode({**_parameters(sql, value), "_shape": "array"})
                rows = _json(running, f"/{database}/{name}.json?{query}")
                assert rows, (name, value)
                if ":email_or_phone" in sql:
                    ids = {r.get("id") or r.get("customer_id") for r in rows}
                    assert ids == {"cust_ana"}, (name, value)


def test_paid_revenue_per_customer_counts_paid_orders_per_currency(data_dir: Path) -> None:
    """Refunded, pending and cancelled orders bring no revenue; currencies stay apart."""
    sql = next(sql for name, _, sql, _ in PROJECTION_QUERIES if name == "revenue_per_customer")
    conn = sqlite3.connect(data_dir / "projections.db")
    try:
        rows = {(r[0], r[4]): (r[5], r[6]) for r in conn.execute(sql)}
    finally:
        conn.close()
    assert {k: (p, Decimal(str(v))) for k, (p, v) in rows.items()} == {
        ("cust_ana", "IDR"): (3, 201000),
        ("cust_budi", "USD"): (1, Decimal("19.99")),
        ("cust_citra", None): (2, 35000),
        ("cust_ghost", "IDR"): (1, 12000),
    }


def _postgresql(sql: str) -> str:
    """A named query with psycopg's placeholders: `%` escaped, `:name` as `%(name)s`."""
    return re.sub(r":(\w+)", r"%(\1)s", sql.replace("%", "%%"))


def test_every_named_query_is_valid_in_postgresql(data_dir: Path, postgres_url: str) -> None:
    """On the published schema, each projections query runs and finds as many rows as in SQLite.

    (The events query reads the log, which is not published.)
    """
    source = sqlite3.connect(data_dir / "projections.db")
    try:
        with _postgres.published(source, postgres_url) as conn:
            for name, _, sql, _ in PROJECTION_QUERIES:
                for value in ANA:
                    parameters = _parameters(sql, value)
                    in_postgresql = conn.execute(_postgresql(sql), parameters).fetchall()
                    assert len(in_postgresql) == len(source.execute(sql, parameters).fetchall())
                    assert in_postgresql, (name, value)
    finally:
        source.close()


def test_the_readme_queries_are_the_named_ones() -> None:
    """The README's examples are the named queries whose SQL is shown, word for word."""
    blocks = re.findall(
        r"```sql\n-- (.*?)\n(.*?)\n```", (ROOT / "README.md").read_text(encoding="utf-8"), re.DOTALL
    )
    shown = {(title, sql) for _, title, sql, show in PROJECTION_QUERIES if show}
    assert set(blocks) == shown


# --- Stopping, and the password -----------------------------------------------------


def _lingering(needle: str) -> list[str]:
    """Command lines of running processes that contain `needle`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            status = (entry / "status").read_text()
        except OSError:
            continue
        if needle in cmdline and "\nState:\tZ" not in status:
            found.append(cmdline)
    return found


@pytest.mark.parametrize("stop_with", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_datasette_and_leaves_nothing(start: Any, stop_with: signal.Signals) -> None:
    """SIGTERM or SIGINT: it exits 0, nothing listens, runs or is left in the temp directory."""
    process: _Explore = start()
    process.wait_ready()
    process.proc.send_signal(stop_with)
    assert process.proc.wait(20) == 0, process.output()
    assert not process.answers()
    assert _lingering(f"--port {process.port} ") == []
    assert list(process.tmpdir.iterdir()) == []
    assert "Traceback" not in process.output()


def test_off_loopback_it_refuses_to_start_without_a_password(data_dir: Path) -> None:
    """One sentence naming the variable, exit 1, no traceback, nothing started."""
    env = app_env()
    env.pop(explore_module.PASSWORD_HASH_VARIABLE, None)
    result = subprocess.run(
        [
            *(sys.executable, "-m", "app", "explore", "--host", "0.0.0.0"),  # noqa: S104
            *("--port", str(free_port()), "--data-dir", str(data_dir)),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert explore_module.PASSWORD_HASH_VARIABLE in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("host", "environ", "needed"),
    [
        ("127.0.0.1", {}, False),
        ("::1", {}, False),
        ("localhost", {}, False),
        ("0.0.0.0", {}, True),  # noqa: S104
        ("192.168.1.10", {}, True),
    ],
)
def test_which_addresses_need_a_password(
    host: str, environ: dict[str, str], *, needed: bool
) -> None:
    """Loopback goes without; anything else is refused without the variable."""
    if needed:
        with pytest.raises(explore_module.ExploreError, match="BITBYBIT_EXPLORE_PASSWORD_HASH"):
            explore_module.password_hash(host, environ)
    else:
        assert explore_module.password_hash(host, environ) is None


def test_a_malformed_hash_is_refused() -> None:
    """A value that is not datasette-auth-passwords' format is named, not silently accepted."""
    with pytest.raises(explore_module.ExploreError, match="hash-password"):
        explore_module.password_hash("0.0.0.0", {"BITBYBIT_EXPLORE_PASSWORD_HASH": "secret"})  # noqa: S104


def test_with_a_password_every_page_asks_for_it(start: Any) -> None:
    """Without the password, 401 on every path; with it, the dashboard."""
    from datasette_auth_passwords.utils import hash_password  # noqa: PLC0415

    password_hash = hash_password("correct horse", iterations=1000)
    process: _Explore = start(env={explore_module.PASSWORD_HASH_VARIABLE: password_hash})
    process.wait_ready()
    for path in ("/", explore_module.DASHBOARD_PATH, "/projections/customers.json"):
        assert _get(process.port, path)[0] == 401, path
    good = base64.b64encode(b"bitbybit:correct horse").decode()
    status, _, _ = _get(
        process.port, explore_module.DASHBOARD_PATH, {"Authorization": f"Basic {good}"}
    )
    assert status == 200


def test_a_busy_port_is_one_sentence(data_dir: Path) -> None:
    """Another program on the port: exit 1 and what to do, not a traceback."""
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        result = subprocess.run(
            [
                *(sys.executable, "-m", "app", "explore"),
                *("--port", str(port), "--data-dir", str(data_dir)),
            ],
            cwd=ROOT,
            env=app_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert "--port" in result.stderr
    assert "Traceback" not in result.stderr
