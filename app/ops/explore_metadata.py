"""What Datasette shows: every table and column in plain words, and the named queries.

The queries are the README's examples, every delivery of an entity, and the projection
errors.

Kept in code rather than a shipped file so that `pipx install .` has it, and so a test can
check it against the real schemas: a column added without a description fails that test.
"""

from __future__ import annotations

from app.ops.inspection import ENTITY_SQL
from projections import discover

_SENT = "as BitByBit sent it (ISO 8601 text)"
_LIST = "JSON array text, replaced whole by the newest event that carried it"
_POSITION_IN_LIST = "0-based place in the payload's list"
_DELETED = (
    "when it was deleted (the earliest delete's event timestamp); NULL while it exists. "
    "Deletion is final: the row stays with its data"
)


def _address(prefix: str) -> dict[str, str]:
    return {
        f"{prefix}first_name": "first name on the address",
        f"{prefix}last_name": "last name on the address",
        f"{prefix}address1": "street address, first line",
        f"{prefix}address2": "street address, second line",
        f"{prefix}city": "city",
        f"{prefix}province": "province or state",
        f"{prefix}country": "country",
        f"{prefix}zip": "postal code",
    }


PROJECTION_TABLES: dict[str, tuple[str, dict[str, str]]] = {
    "customers": (
        "One row per customer BitByBit told us about; each field holds the newest value sent.",
        {
            "id": "BitByBit's customer id",
            "email": "email address (personal data)",
            "phone_number": "phone number (personal data)",
            "first_name": "first name (personal data)",
            "last_name": "last name (personal data)",
            "image_url": "profile picture address",
            "tags": f"the customer's tags, {_LIST}",
            "created_at": f"when the customer was created, {_SENT}",
            "updated_at": f"when the customer last changed, {_SENT}",
            "deleted_at": _DELETED,
        },
    ),
    "customer_addresses": (
        "A customer's addresses, in the payload's order.",
        {
            "customer_id": "the customer (customers.id)",
            "position": _POSITION_IN_LIST,
            "id": "the address's own id",
            "phone": "phone number on the address (personal data)",
            **_address(""),
        },
    ),
    "orders": (
        "One row per order; customer and shipping address are flattened into columns.",
        {
            "id": "BitByBit's order id",
            "order_id": "the shop's own order id",
            "order_number": "the order number the customer sees",
            "status": "order status, e.g. active, completed, cancelled",
            "fulfillment_status": "fulfillment status",
            "financial_status": "payment status",
            "total": "order total, the number sent",
            "currency": "currency code",
            "customer_id": "the ordering customer (customers.id)",
            "customer_first_name": "customer's first name as on the order (personal data)",
            "customer_last_name": "customer's last name as on the order (personal data)",
            "customer_email": "customer's email as on the order (personal data)",
            "customer_phone_number": "customer's phone as on the order (personal data)",
            "shipping_phone": "phone number for delivery (personal data)",
            **_address("shipping_"),
            "tags": f"the order's tags, {_LIST}",
            "created_at": f"when the order was placed, {_SENT}",
            "updated_at": f"when the order last changed, {_SENT}",
            "notes": "the merchant's notes on the order, read from the Open API by sync",
        },
    ),
    "order_line_items": (
        "What was ordered, one row per line, in the payload's order.",
        {
            "order_id": "the order (orders.id)",
            "position": _POSITION_IN_LIST,
            "id": "the line item's id",
            "title": "product title on the line",
            "quantity": "how many",
            "price": "unit price, the number sent",
        },
    ),
    "products": (
        "One row per product in the catalogue.",
        {
            "id": "BitByBit's product id",
            "product_id": "the shop's own product id",
            "name": "product name",
            "description": "product description",
            "media": f"images and videos, {_LIST}",
            "status": "product status, e.g. active or draft",
            "options": f"option names such as size or colour, {_LIST}",
            "tags": f"the product's tags, {_LIST}",
            "types": f"product types, {_LIST}",
            "created_at": f"when the product was created, {_SENT}",
            "updated_at": f"when the product last changed, {_SENT}",
            "deleted_at": _DELETED,
        },
    ),
    "product_variants": (
        "A product's variants, in the payload's order.",
        {
            "product_id": "the product (products.id)",
            "position": _POSITION_IN_LIST,
            "id": "the variant's id",
            "key": "the variant's option values, e.g. M / Red",
            "price": "the variant's price, the number sent",
            "inventory_sku": "stock-keeping unit",
        },
    ),
    "messages": (
        "One row per WhatsApp message; its status only moves forward.",
        {
            "message_id": "BitByBit's message id",
            "direction": "inbound (a customer wrote) or outbound (the shop sent)",
            "sender": "the sending phone number (personal data)",
            "recipient": "the receiving phone number (personal data)",
            "body": "the message text (personal data)",
            "source": "where the message came from, as sent",
            "template_name": "the WhatsApp template used, for outbound messages",
            "status": "pending, queued, sent, delivered, read or failed: the furthest reached",
            "received_at": f"when an inbound message arrived, {_SENT}",
            "status_updated_at": "when the current status was reached (its event timestamp)",
        },
    ),
    "message_status_history": (
        "Every status delivery of every message, one row each.",
        {
            "message_id": "the message (messages.message_id)",
            "status": "the status this delivery reported",
            "occurred_at": "when, from the delivery's event timestamp",
            "webhook_id": "the delivery (events.webhook_id in events.db)",
        },
    ),
    "_projections": (
        "Bookkeeping: each projection's version and how far into the log it has applied.",
        {
            "name": "the projection",
            "version": "the code version its tables were built with",
            "position": "the last log position applied (its checkpoint)",
            "tables": "the tables it owns, as JSON",
        },
    ),
    "_projection_errors": (
        "Events a projection could not apply; they stay in the log (see `errors`).",
        {
            "projection": "the projection that failed",
            "position": "the event's log position (events.position)",
            "webhook_id": "the delivery (events.webhook_id)",
            "event_type": "the delivery's event type",
            "error": "what went wrong",
        },
    ),
    **{
        projection.TABLE.state_table: (
            (
                f"Bookkeeping of {projection.NAME}: the version of each stored field, so a late "
                "event cannot overwrite a newer value."
            ),
            {"key": f"the {projection.TABLE.name} row's key", "registers": "encoded versions"},
        )
        for projection in discover()
    },
}

_DELIVERY_COLUMNS = {
    "webhook_id": "X-BitByBit-Webhook-Id: the delivery's id, unique",
    "event_type": "X-BitByBit-Webhook-Event, e.g. order.updated",
    "event_timestamp": "X-BitByBit-Webhook-Timestamp (Unix seconds); NULL if absent",
    "signed_at": "t of the signature (Unix seconds)",
    "received_at": "when this service received it (UTC)",
    "signature": "the signature header as received, so the row can be re-verified",
    "payload": "the body, byte for byte (personal data); CAST(payload AS TEXT) to read it",
}

EVENT_TABLES: dict[str, tuple[str, dict[str, str]]] = {
    "events": (
        "The log: every authentic delivery, kept forever, never changed.",
        {"position": "order of acceptance, strictly increasing", **_DELIVERY_COLUMNS},
    ),
    "conflicting_duplicates": (
        "Deliveries whose webhook id was already logged with a different body: kept aside.",
        {
            "id": "row number",
            "logged_position": "the logged delivery with the same id (events.position)",
            **_DELIVERY_COLUMNS,
        },
    ),
    "forget_records": (
        "One row per forget (and per sweep of later deliveries): the audit of erasures.",
        {
            "id": "row number",
            "forgotten_at": "when, ISO 8601 UTC",
            "customer_id": "the forgotten customer's id",
            "kind": "forget (the command) or sweep (later deliveries redacted by serve)",
            "events": "how many events of each type were redacted, as JSON",
            "reason": "the --reason given",
            "head": "the log's head position when it ran",
        },
    ),
    "redactions": (
        "Each log row whose body a forget rewrote; its signature no longer matches.",
        {
            "position": "the redacted delivery (events.position)",
            "forget_id": "the forget that rewrote it (forget_records.id)",
            "redacted_at": "when, ISO 8601 UTC",
        },
    ),
    "forgotten_entities": (
        "The customers, orders and messages that stay forgotten: later deliveries are redacted.",
        {
            "kind": "customer, order or message",
            "key": "the entity's id",
            "forget_id": "the forget that named it (forget_records.id)",
        },
    ),
    "forget_sweeps": (
        "How far serve's sweep has looked for later deliveries about forgotten people.",
        {
            "id": "row number",
            "swept_at": "when, ISO 8601 UTC",
            "head": "the log position the sweep reached",
        },
    ),
    "forget_completions": (
        (
            "Each forget record whose values are gone from the tables and files too; a "
            "record without one is pending (a forget was killed), and is completed by the "
            "next forget, sweep or serve start."
        ),
        {
            "forget_id": "the record in forget_records",
            "completed_at": "when, ISO 8601 UTC",
        },
    ),
    "accepted_digests": (
        (
            "Which event type each accepted signature came with, so a signature replayed "
            "under another event type is refused."
        ),
        {
            "signed_at": "t of the signature",
            "digest": "the matching v1 digest",
            "event_type": "the event type it was accepted with",
            "position": "the delivery (events.position)",
        },
    ),
    "write_probe": (
        "One row rewritten by each /readyz call: proof that the log takes writes.",
        {"id": "always 1", "probed_at": "when /readyz last wrote", "room": "a page of zeros"},
    ),
}

HIDDEN = {"write_probe", *(p.TABLE.state_table for p in discover())}

# (name, title, SQL): the README's examples, verbatim but for the customer id, which
# Datasette asks for.
PROJECTION_QUERIES: tuple[tuple[str, str, str], ...] = (
    (
        "orders_per_status",
        "Orders per status",
        "SELECT status, COUNT(*) AS orders FROM orders GROUP BY status ORDER BY orders DESC;",
    ),
    (
        "revenue_per_customer",
        "Revenue per customer (orders not cancelled)",
        """SELECT customer_id, customer_first_name, customer_last_name, SUM(total) AS revenue
FROM orders
WHERE status IS NOT 'cancelled'
GROUP BY customer_id
ORDER BY revenue DESC;""",
    ),
    (
        "message_funnel",
        "Message delivery funnel of outbound messages",
        """SELECT status, COUNT(*) AS messages
FROM messages
WHERE direction = 'outbound'
GROUP BY status
ORDER BY messages DESC;""",
    ),
    (
        "vip_customers",
        "Customers tagged vip (and not deleted)",
        """SELECT customers.id, email, first_name, last_name
FROM customers, json_each(customers.tags)
WHERE json_each.value = 'vip' AND deleted_at IS NULL
ORDER BY customers.id;""",
    ),
    (
        "line_items_of_a_customer",
        "Line items of one customer's orders",
        """SELECT orders.order_number, items.title, items.quantity, items.price
FROM orders JOIN order_line_items AS items ON items.order_id = orders.id
WHERE orders.customer_id = :customer_id
ORDER BY orders.created_at, items.position;""",
    ),
    (
        "projection_errors",
        "Projection errors",
        "SELECT * FROM _projection_errors ORDER BY position DESC, projection;",
    ),
)

EVENT_QUERIES: tuple[tuple[str, str, str], ...] = (
    (
        "every_delivery_of_an_entity",
        "Every delivery of an entity (a customer, order, product or message id)",
        (
            "SELECT position, received_at, event_type, webhook_id, event_timestamp, "
            f"CAST(payload AS TEXT) AS body FROM events WHERE {ENTITY_SQL} = :entity_id "
            "ORDER BY position DESC;"
        ),
    ),
)


def _database(
    description: str,
    tables: dict[str, tuple[str, dict[str, str]]],
    queries: tuple[tuple[str, str, str], ...],
) -> dict[str, object]:
    return {
        "description": description,
        "tables": {
            name: {"description": text, "columns": columns, "hidden": name in HIDDEN}
            for name, (text, columns) in tables.items()
        },
        "queries": {name: {"title": title, "sql": sql} for name, title, sql in queries},
    }


def metadata() -> dict[str, object]:
    """Datasette's metadata for `events` (events.db) and `projections` (projections.db)."""
    return {
        "title": "BitByBit mirror",
        "description": (
            "The event log and the tables built from it, read-only. They hold personal "
            "data (names, emails, phone numbers, addresses, messages): keep this on "
            "loopback, or behind a password."
        ),
        "databases": {
            "events": _database(
                "events.db: the append-only log of every authentic delivery.",
                EVENT_TABLES,
                EVENT_QUERIES,
            ),
            "projections": _database(
                "projections.db: tables rebuilt from the log at any time.",
                PROJECTION_TABLES,
                PROJECTION_QUERIES,
            ),
        },
    }
