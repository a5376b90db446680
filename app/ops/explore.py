"""`explore`: Datasette over events.db and projections.db, read-only, opening on a dashboard.

Datasette runs inside this process rather than as a child of it: stopping `explore`
(SIGTERM from `kill`, `timeout`, systemd or a supervisor; SIGINT from Ctrl-C) stops
Datasette with it, as uvicorn shuts down on either signal, and there is no child that
could outlive it. Its metadata is handed over in memory, so nothing is written to the
temporary directory either, and the password hash never touches a file.

The files are opened as Datasette opens any file it is not told is immutable: each read
connection with `mode=ro`, which can write nothing and sees the WAL's newest commits.
Datasette's `--immutable` would skip the WAL (`immutable=1`), showing a live log as
older than it is, or empty. No plugin that writes is installed with the extra.

What a merchant sees first is data, not documentation: `/` is the dashboard of SPEC
section 11 (datasette-dashboards, which serves its own copy of Vega and Vega-Lite, so it
renders without network access); bookkeeping tables are hidden; each table's and
column's description comes from its projection (`projections/*.py`) or the log's schema
(`app/eventlog/schema.py`) and is shown below the rows, not above them. The named
queries read the views and are written in SQL that PostgreSQL accepts too, so they work
on the published schema (SPEC section 12) as they are.
"""

from __future__ import annotations

import asyncio
import importlib.util
import ipaddress
import re
import signal
import socket
import sys
from typing import TYPE_CHECKING, Any

from app.eventlog import schema
from app.ops.inspection import ENTITY_SQL
from app.projection.projector import BOOKKEEPING_TABLES
from projections import discover, phone_digits, phone_number_key

if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import FrameType

    from datasette.app import Datasette
    from datasette.utils.asgi import Response

    from app.settings import Settings

PASSWORD_HASH_VARIABLE = "BITBYBIT_EXPLORE_PASSWORD_HASH"  # noqa: S105 - its name
# The user name the browser asks for with the password (HTTP basic authentication).
USERNAME = "bitbybit"
DASHBOARD = "mirror"
DASHBOARD_PATH = f"/-/dashboards/{DASHBOARD}"
SETTINGS = {
    # Long enough for a view over a large account (customer_messages reads every message).
    "sql_time_limit_ms": 5000,
    # Facets are chosen per table (`_TABLE_DISPLAY`); Datasette's suggestions of every
    # column were noise above the rows, and extra queries on every page of a large table.
    "suggest_facets": False,
}

# datasette-auth-passwords' format: pbkdf2_sha256$<iterations>$<salt>$<base64 digest>.
_PASSWORD_HASH = re.compile(r"pbkdf2_sha256\$[0-9]+\$[^$]+\$[A-Za-z0-9+/=]+")


class ExploreError(Exception):
    """Datasette cannot be started; the message says what to do."""


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def password_hash(host: str, environ: Mapping[str, str]) -> str | None:
    """The password hash `explore` must ask for, None when it may go without one.

    The tables hold personal data: any address but loopback needs a password. A hash set
    while on loopback is asked for too.
    """
    value = environ.get(PASSWORD_HASH_VARIABLE, "").strip()
    if not value:
        if is_loopback(host):
            return None
        raise ExploreError(
            f"explore on {host} needs a password: set {PASSWORD_HASH_VARIABLE} to a hash "
            "from `datasette hash-password` (the tables hold personal data)"
        )
    if not _PASSWORD_HASH.fullmatch(value):
        raise ExploreError(
            f"{PASSWORD_HASH_VARIABLE} is not a datasette-auth-passwords hash "
            "(pbkdf2_sha256$...): make one with `datasette hash-password`"
        )
    return value


# --- What Datasette shows ------------------------------------------------------------

# How a table is shown, beyond its projection's description: the facets a merchant
# filters by, and the newest rows first.
_TABLE_DISPLAY: dict[str, dict[str, Any]] = {
    "orders": {"facets": ["status", "financial_status", "currency"], "sort_desc": "created_at"},
    "customers": {"sort_desc": "created_at"},
    "messages": {"facets": ["direction", "status", "template_name"]},
    "products": {"facets": ["status"]},
}

# A customer named by what a merchant knows of them: their email, or their phone number
# as a number (the rule of the `customer_messages` view).
_CUSTOMER_IS = (
    "(LOWER(c.email) = LOWER(TRIM(:email_or_phone))\n"
    f"    OR {phone_number_key(phone_digits('c.phone_number'))}\n"
    f"    = {phone_number_key(phone_digits(':email_or_phone'))})"
)

# (name, title, SQL, shown): every one valid in SQLite and PostgreSQL alike. The
# README's "Querying" examples are the ones shown; the customer finders hide their SQL,
# whose phone-number rule is long.
PROJECTION_QUERIES: tuple[tuple[str, str, str, bool], ...] = (
    (
        "sales_per_day",
        "Sales per day and currency, newest first",
        """SELECT day, currency, orders, paid_orders, paid_revenue
FROM sales_by_day
ORDER BY day DESC, currency;""",
        True,
    ),
    (
        "revenue_per_customer",
        "Paid revenue per customer and currency",
        """SELECT customer_id, first_name, last_name, email, currency, paid_orders, paid_revenue
FROM customer_revenue
WHERE paid_orders > 0
ORDER BY currency, paid_revenue DESC;""",
        True,
    ),
    (
        "whatsapp_funnel",
        "WhatsApp funnel per template",
        """SELECT template_name, messages, sent, delivered, read, failed, read_rate
FROM message_funnel
ORDER BY messages DESC;""",
        True,
    ),
    (
        "orders_per_status",
        "Orders per status",
        "SELECT status, COUNT(*) AS orders FROM orders GROUP BY status ORDER BY orders DESC;",
        True,
    ),
    (
        "vip_customers",
        "Customers tagged vip (and not deleted)",
        """SELECT id, email, first_name, last_name
FROM customers
WHERE CAST(tags AS TEXT) LIKE '%"vip"%' AND deleted_at IS NULL
ORDER BY id;""",
        True,
    ),
    (
        "find_a_customer",
        "A customer, by email or phone number",
        f"""SELECT c.id, c.first_name, c.last_name, c.email, c.phone_number, c.tags,
    c.created_at, c.deleted_at
FROM customers AS c
WHERE {_CUSTOMER_IS}
ORDER BY c.id;""",
        False,
    ),
    (
        "orders_of_a_customer",
        "A customer's orders and what was in them, by email or phone number",
        f"""SELECT c.id AS customer_id, o.id AS order_id, o.order_number, o.created_at,
    o.status, o.financial_status, o.currency, o.total, i.title, i.quantity, i.price
FROM customers AS c
JOIN orders AS o ON o.customer_id = c.id
LEFT JOIN order_line_items AS i ON i.order_id = o.id
WHERE {_CUSTOMER_IS}
ORDER BY o.created_at, o.id, i.position;""",
        False,
    ),
    (
        "messages_of_a_customer",
        "A customer's WhatsApp messages, by email or phone number",
        f"""SELECT m.customer_id, m.message_id, m.direction, m.template_name, m.status,
    m.received_at, m.status_updated_at, m.body
FROM customer_messages AS m
JOIN customers AS c ON c.id = m.customer_id
WHERE {_CUSTOMER_IS}
ORDER BY m.message_id;""",
        False,
    ),
)

EVENT_QUERIES: tuple[tuple[str, str, str, bool], ...] = (
    (
        "every_delivery_of_an_entity",
        "Every delivery of an entity (a customer, order, product or message id)",
        (
            "SELECT position, received_at, event_type, webhook_id, event_timestamp, "
            f"CAST(payload AS TEXT) AS body FROM events WHERE {ENTITY_SQL} = :entity_id "
            "ORDER BY position DESC;"
        ),
        True,
    ),
)


def _count_axis(channel: str, size: str) -> dict[str, Any]:
    """An axis of whole numbers: no more ticks than the largest count, so none at 0.5."""
    return {"format": "d", "tickCount": {"expr": f"min(ceil({size} / 40), domain('{channel}')[1])"}}


# The dashboard's charts: (slug, title, SQL, Vega-Lite encoding). They read the views
# where a view answers the question; a chart's window is the year before the newest
# data, so a long history stays readable (and under Datasette's 1,000-row cap).
CHARTS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    (
        "paid-revenue",
        "Paid revenue per day (UTC), one panel per currency",
        """SELECT day, COALESCE(currency, 'no currency') AS currency, paid_revenue
FROM sales_by_day
WHERE day >= date((SELECT MAX(day) FROM sales_by_day), '-1 year')
ORDER BY day, currency""",
        {
            "mark": {"type": "bar", "tooltip": True},
            "width": 520,
            "height": 110,
            "encoding": {
                "x": {
                    "field": "day",
                    "type": "temporal",
                    "timeUnit": "utcyearmonthdate",
                    "title": None,
                },
                "y": {"field": "paid_revenue", "type": "quantitative", "title": "paid revenue"},
                "row": {"field": "currency", "type": "nominal", "title": None},
            },
            # Amounts are never added across currencies, on an axis either.
            "resolve": {"scale": {"y": "independent"}},
        },
    ),
    (
        "orders-by-status",
        "Orders by status",
        """SELECT COALESCE(status, 'no status') AS status, COUNT(*) AS orders
FROM orders
GROUP BY status
ORDER BY orders DESC""",
        {
            "mark": {"type": "bar", "tooltip": True},
            "encoding": {
                "y": {"field": "status", "type": "nominal", "sort": "-x", "title": None},
                "x": {"field": "orders", "type": "quantitative", "axis": _count_axis("x", "width")},
            },
        },
    ),
    (
        "new-customers",
        "New customers per week (weeks start on Monday, UTC)",
        """SELECT date(created_at, 'weekday 0', '-6 days') AS week, COUNT(*) AS customers
FROM customers
WHERE date(created_at, 'weekday 0', '-6 days') >=
    (SELECT date(MAX(created_at), '-1 year') FROM customers)
GROUP BY week
ORDER BY week""",
        {
            "mark": {"type": "bar", "tooltip": True},
            # Each bar spans its week, Monday to Saturday night (a gap before the next).
            "transform": [
                {"calculate": "utcOffset('day', toDate(datum.week), 6)", "as": "week_end"}
            ],
            "encoding": {
                "x": {
                    "field": "week",
                    "type": "temporal",
                    "scale": {"type": "utc"},
                    "axis": {"format": "%d %b %Y"},
                    "title": "week of",
                },
                "x2": {"field": "week_end"},
                "y": {
                    "field": "customers",
                    "type": "quantitative",
                    "axis": _count_axis("y", "height"),
                },
                "y2": {"datum": 0},
                "tooltip": [
                    {
                        "field": "week",
                        "type": "temporal",
                        "format": "%Y-%m-%d",
                        "scale": {"type": "utc"},
                        "title": "week of",
                    },
                    {"field": "customers", "type": "quantitative"},
                ],
            },
        },
    ),
    (
        "whatsapp-funnel",
        "WhatsApp funnel per template: how many messages reached each stage",
        """SELECT COALESCE(template_name, 'no template') AS template, stage, messages
FROM (
    SELECT template_name, 1 AS step, 'sent' AS stage, sent AS messages FROM message_funnel
    UNION ALL
    SELECT template_name, 2, 'delivered', delivered FROM message_funnel
    UNION ALL
    SELECT template_name, 3, 'read', read FROM message_funnel
    UNION ALL
    SELECT template_name, 4, 'failed', failed FROM message_funnel
) AS stages
ORDER BY template, step""",
        {
            "mark": {"type": "bar", "tooltip": True},
            "encoding": {
                "y": {"field": "template", "type": "nominal", "title": None},
                "yOffset": {"field": "stage", "sort": ["sent", "delivered", "read", "failed"]},
                "x": {
                    "field": "messages",
                    "type": "quantitative",
                    "axis": _count_axis("x", "width"),
                },
                "color": {
                    "field": "stage",
                    "type": "nominal",
                    "sort": ["sent", "delivered", "read", "failed"],
                    "scale": {
                        "domain": ["sent", "delivered", "read", "failed"],
                        "range": ["#9ecae1", "#4292c6", "#08519c", "#d62728"],
                    },
                },
            },
        },
    ),
)

_GUIDE = f"""\
**Where to look next.** The numbers above come from views you can open, filter and
export: [sales per day](/projections/sales_by_day),
[revenue per customer](/projections/customer_revenue),
[WhatsApp funnel](/projections/message_funnel) and
[messages with their customer](/projections/customer_messages).
The tables: [orders](/projections/orders), [customers](/projections/customers),
[products](/projections/products), [messages](/projections/messages).
Find a customer by [email or phone number](/projections/find_a_customer), or see
[their orders](/projections/orders_of_a_customer) and
[their messages](/projections/messages_of_a_customer).
Every delivery BitByBit sent is in [the log](/events/events).

Amounts are per currency and never added across currencies; revenue counts paid orders
that are not cancelled; days and weeks are UTC. This is a read-only copy of your
BitByBit data, and it holds personal data: keep it private (user `{USERNAME}` when it
asks for a password).
"""


_PROJECTIONS_HTML = f"""\
<p>Customers, orders, products and WhatsApp messages, rebuilt from the log at any time.
Charts of them are on <a href="{DASHBOARD_PATH}">the dashboard</a>. The common questions
are answered by the views
<a href="/projections/sales_by_day">sales_by_day</a>,
<a href="/projections/customer_revenue">customer_revenue</a>,
<a href="/projections/message_funnel">message_funnel</a> and
<a href="/projections/customer_messages">customer_messages</a>.</p>"""


def _dashboard() -> dict[str, Any]:
    charts: dict[str, Any] = {
        slug: {
            "title": title,
            "db": "projections",
            "query": sql,
            "library": "vega-lite",
            "display": display,
        }
        for slug, title, sql, display in CHARTS
    }
    charts["guide"] = {"library": "markdown", "display": _GUIDE}
    return {
        "title": "Your BitByBit shop",
        "description": (
            "Sales, customers and WhatsApp messages, from the mirror of your BitByBit "
            "account. A chart stays empty until the mirror has what it counts: webhooks "
            "bring what changes from now on, and the sync command what BitByBit already holds."
        ),
        "layout": [
            ["paid-revenue", "orders-by-status"],
            ["paid-revenue", "new-customers"],
            ["whatsapp-funnel", "guide"],
        ],
        "charts": charts,
    }


def _tables(
    described: Mapping[str, tuple[str, Mapping[str, str]]],
    hidden: set[str],
    extra: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    return {
        name: {
            "description": text,
            "columns": dict(columns),
            "hidden": name in hidden,
            **extra.get(name, {}),
        }
        for name, (text, columns) in described.items()
    }


_FINDER = (
    "Type an email address, or a phone number written any way (0812…, +62 812…, "
    "62-812…), and press Run SQL."
)


def _queries(queries: tuple[tuple[str, str, str, bool], ...]) -> dict[str, Any]:
    return {
        name: {
            "title": title,
            "sql": sql,
            "hide_sql": not shown,
            **({"description": _FINDER} if ":email_or_phone" in sql else {}),
        }
        for name, title, sql, shown in queries
    }


def projection_tables() -> dict[str, Any]:
    """projections.db's tables and views as Datasette's metadata describes them."""
    described: dict[str, tuple[str, Mapping[str, str]]] = dict(BOOKKEEPING_TABLES)
    hidden = set(BOOKKEEPING_TABLES)
    extra: dict[str, dict[str, Any]] = {}
    for projection in discover():
        table = projection.TABLE
        described.update(table.described())
        hidden.add(table.state_table)
        if table.label_column:
            extra.setdefault(table.name, {})["label_column"] = table.label_column
        for view in table.views:
            if view.sort_desc:
                extra[view.name] = {"sort_desc": view.sort_desc}
    for name, display in _TABLE_DISPLAY.items():
        extra.setdefault(name, {}).update(display)
    return _tables(described, hidden, extra)


def metadata(password: str | None = None) -> dict[str, Any]:
    """Datasette's metadata for `events` (events.db) and `projections` (projections.db)."""
    plugins: dict[str, Any] = {"datasette-dashboards": {DASHBOARD: _dashboard()}}
    if password is not None:
        plugins["datasette-auth-passwords"] = {
            "http_basic_auth": True,
            f"{USERNAME}_password_hash": password,
        }
    return {
        "title": "BitByBit mirror",
        "description": (
            "Your BitByBit data, read-only. It holds personal data (names, emails, phone "
            "numbers, addresses, messages): keep it private."
        ),
        "databases": {
            "projections": {
                "description_html": _PROJECTIONS_HTML,
                "tables": projection_tables(),
                "queries": _queries(PROJECTION_QUERIES),
            },
            "events": {
                "description": "events.db: the append-only log of every authentic delivery.",
                "tables": _tables(schema.TABLES, set(schema.BOOKKEEPING), {}),
                "queries": _queries(EVENT_QUERIES),
            },
        },
        "plugins": plugins,
    }


# --- Pages of our own -------------------------------------------------------------------

# Datasette puts a table's column descriptions in a list above its rows; they go below
# the rows instead, folded, and each stays in its column's menu (the cog in its header).
_MOVE_DESCRIPTIONS = """
(function () {
  var list = document.querySelector("dl.column-descriptions");
  var rows = document.querySelector(".table-wrapper");
  if (!list || !rows) { return; }
  var details = document.createElement("details");
  details.className = "bitbybit-column-descriptions";
  var summary = document.createElement("summary");
  summary.textContent = "What the columns mean";
  details.appendChild(summary);
  details.appendChild(list);
  rows.parentNode.insertBefore(details, rows.nextSibling);
})();
"""
# How much of a logged body a page of the log shows (the row's JSON has all of it).
_BODY_CHARS = 600
_CSS = """\
dl.column-descriptions { display: none; }
details.bitbybit-column-descriptions { margin: 1em 0; }
details.bitbybit-column-descriptions > summary { cursor: pointer; font-weight: bold; }
details.bitbybit-column-descriptions dl.column-descriptions { display: block; }
.dashboard-card-chart .vega-embed { width: 100%; }
"""


def _pages() -> object:
    """Datasette hooks of the mirror's own: `/` opens the dashboard, rows before glossary.

    Made when `explore` starts: the hook marker comes with Datasette, an optional extra.
    """
    import pluggy  # noqa: PLC0415 - installed with Datasette
    from datasette.utils import asgi  # noqa: PLC0415 - the optional extra

    hookimpl = pluggy.HookimplMarker("datasette")  # what `datasette.hookimpl` is, typed

    class Pages:
        # Datasette lists its plugins by module name; this one has no module of its own.
        __name__ = "bitbybit-mirror"

        @hookimpl
        def register_routes(self) -> list[tuple[str, object]]:
            """The home page and the stylesheet."""
            return [(r"^/$", self.home), (r"^/-/bitbybit-mirror\.css$", self.stylesheet)]

        async def home(self, datasette: Datasette) -> Response:
            """The dashboard is the home page; the databases are a link away on it."""
            return asgi.Response.redirect(datasette.urls.path(DASHBOARD_PATH))

        async def stylesheet(self) -> Response:
            """A few rules of the mirror's own, served from here like everything else."""
            return asgi.Response(_CSS, content_type="text/css; charset=utf-8")

        @hookimpl
        def extra_css_urls(self, datasette: Datasette) -> list[str]:
            """Every page takes the stylesheet."""
            return [datasette.urls.path("/-/bitbybit-mirror.css")]

        @hookimpl
        def extra_body_script(self, template: str) -> str:
            """On a table's page, the column descriptions move below the rows."""
            return _MOVE_DESCRIPTIONS if template == "table.html" else ""

        @hookimpl
        def render_cell(
            self, value: object, column: str, database: str, datasette: Datasette
        ) -> object:
            """A customer in a view or a query links to them; a logged body reads as text."""
            return _cell(value, column, database, datasette)

    return Pages()


def _cell(value: object, column: str, database: str, datasette: Datasette) -> object:
    """How a cell shows, where Datasette's own way does not serve; None leaves it to Datasette.

    Tables link their `customer_id` themselves (a foreign key); views and queries have
    none. The log keeps bodies as bytes, which Datasette would only offer to download.
    """
    if database == "projections" and column == "customer_id" and isinstance(value, str):
        return _customer_link(value, datasette)
    if database == "events" and column == "payload" and isinstance(value, bytes):
        text = value.decode("utf-8", "replace")
        return text if len(text) <= _BODY_CHARS else f"{text[:_BODY_CHARS]}…"
    return None


async def _customer_link(customer_id: str, datasette: Datasette) -> object:
    """A link to the customer's row, when the mirror has one."""
    from datasette.utils import tilde_encode  # noqa: PLC0415 - the optional extra
    from markupsafe import Markup  # noqa: PLC0415 - installed with Datasette

    found = await datasette.get_database("projections").execute(
        "SELECT 1 FROM customers WHERE id = ?", [customer_id]
    )
    if not found.first():
        return None
    url = datasette.urls.row("projections", "customers", tilde_encode(customer_id))
    return Markup('<a href="{}">{}</a>').format(url, customer_id)


# --- Running it -----------------------------------------------------------------------


class _Stopped(Exception):  # noqa: N818 - not an error: how SIGTERM ends the run
    """SIGTERM arrived: Datasette has stopped (or never started)."""


def _stop(_signum: int, _frame: FrameType | None) -> None:
    raise _Stopped


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, taken before Datasette starts so a busy port is one sentence."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        raise ExploreError(
            f"cannot listen on {host} port {port} ({exc.strerror or exc}): stop what uses "
            "it, or choose another port with --port"
        ) from None


def explore(settings: Settings, host: str, port: int, environ: Mapping[str, str]) -> int:
    """Serve Datasette until SIGTERM or SIGINT; 0 once it has stopped."""
    password = password_hash(host, environ)
    if importlib.util.find_spec("datasette") is None:
        raise ExploreError(
            "Datasette is not installed: pip install 'bitbybit-mirror[explore]' "
            "(or, in a checkout, pip install '.[explore]')"
        )
    for path in (settings.events_path, settings.projections_path):
        if not path.is_file():
            raise ExploreError(
                f"there is no {path.name} at {path}: check --data-dir, or start serve "
                "(or run rebuild) once so the projections exist"
            )
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        return _serve(settings, _listen(host, port), host, port, password)
    except (_Stopped, KeyboardInterrupt):
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)


def _serve(
    settings: Settings, listening: socket.socket, host: str, port: int, password: str | None
) -> int:
    import uvicorn  # noqa: PLC0415 - the optional extra
    from datasette.app import Datasette  # noqa: PLC0415 - the optional extra
    from datasette.plugins import pm  # noqa: PLC0415 - the optional extra

    with listening:
        if not pm.has_plugin("bitbybit-mirror"):
            pm.register(_pages(), name="bitbybit-mirror")
        datasette = Datasette(
            [str(settings.projections_path), str(settings.events_path)],
            metadata=metadata(password),
            settings=SETTINGS,
        )
        asyncio.run(datasette.invoke_startup())
        url = f"http://{host if ':' not in host else f'[{host}]'}:{port}/"
        print(
            f"Datasette on {url} (read-only{', password required' if password else ''}; "
            "Ctrl-C stops it)",
            file=sys.stderr,
        )
        server = uvicorn.Server(uvicorn.Config(datasette.app(), log_level="warning", lifespan="on"))
        # uvicorn stops on SIGTERM and SIGINT, then raises the signal again for this
        # process's own handlers: `_stop`, and Python's KeyboardInterrupt.
        server.run(sockets=[listening])
    return 0
