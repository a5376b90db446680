"""The one delivery generator of every benchmark: realistic event types and bodies.

Deliveries cover all ten event types with bodies shaped like the sender's documented
samples (/work/shared/reference/bitbybit-webhook-events.md): every customer, order and
product is created once, then updated many times (some deleted); outbound messages get
several status deliveries. About one delivery in twenty arrives late (up to a few
hundred positions after newer ones), as the sender's retries make them. Seeded, so a
log of N deliveries is the same log every time.

`generate.py` writes them to a log (for the rebuild benchmark), `signed_requests.py`
signs them as HTTP requests (for the ingest benchmark).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any, NamedTuple

import msgspec

from app.instants import format_instant

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

T0 = 1_705_314_600  # 2024-01-15T10:30:00Z
CHUNK = 50_000
LATE_SHARE = 0.05
LATE_MAX = 300

# Share of deliveries per entity kind.
KINDS = ("customer", "order", "product", "message.received", "message.status")
WEIGHTS = (0.2, 0.3, 0.1, 0.15, 0.25)
# Deliveries per entity, on average: customers/orders/products get many updates.
EVENTS_PER_ENTITY = {"customer": 8, "order": 8, "product": 10, "message.status": 3}

FIRST_NAMES = ("John", "Siti", "Budi", "Dewi", "Agus", "Rina", "Andi", "Maya")
LAST_NAMES = ("Doe", "Santoso", "Wijaya", "Pratama", "Lestari", "Hidayat")
CITIES = (("Jakarta", "DKI Jakarta", "10110"), ("Bandung", "Jawa Barat", "40111"))
STATUSES = ("pending", "sent", "delivered", "read")
TAGS = ("vip", "new-customer", "wholesale", "apparel", "promo", "returning")

_encode = msgspec.json.Encoder().encode


class Generated(NamedTuple):
    """One delivery as the sender would make it, before it is stored or signed."""

    webhook_id: str
    event_type: str
    when: int  # the event's Unix time: the timestamp header, and `t` in a stored log
    fake_digest: str  # a stand-in `v1` for a stored log, whose signatures nobody checks
    body: bytes


def _iso(seconds: int) -> str:
    return format_instant(seconds)


class Generator:
    """Builds deliveries one at a time from a seeded random source."""

    def __init__(self, events: int, seed: int = 20240115) -> None:
        self.rng = random.Random(seed)
        self.events = events
        self.pools = {
            kind: max(events * weight / EVENTS_PER_ENTITY[kind], 1)
            for kind, weight in zip(KINDS, WEIGHTS, strict=True)
            if kind in EVENTS_PER_ENTITY
        }
        self.seen: dict[str, int] = {}
        self.deleted: set[str] = set()
        self.inbound = 0

    def _name(self) -> tuple[str, str]:
        return self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES)

    def _address(self, first: str, last: str, n: int) -> dict[str, Any]:
        city, province, zip_code = self.rng.choice(CITIES)
        return {
            "id": f"addr_{n:x}_{self.rng.randrange(100)}",
            "firstName": first,
            "lastName": last,
            "phone": f"+62812{n:07d}",
            "address1": f"Jl. Sudirman No. {self.rng.randrange(1, 200)}",
            "city": city,
            "province": province,
            "country": "ID",
            "zip": zip_code,
        }

    def _entity(self, kind: str) -> tuple[int, int]:
        """An entity id of `kind` and how many events it has had so far."""
        pool = self.pools[kind]
        n = int(self.rng.random() * pool)
        key = f"{kind}:{n}"
        seq = self.seen.get(key, 0)
        self.seen[key] = seq + 1
        return n, seq

    def customer(self, when: int) -> tuple[str, dict[str, Any]]:
        """A customer.created, .updated or .deleted."""
        n, seq = self._entity("customer")
        cid = f"cust_{n:08x}"
        if seq and self.rng.random() < 0.03:
            return "customer.deleted", {"id": cid}
        first, last = self._name()
        created = _iso(T0 + n)
        body: dict[str, Any] = {
            "id": cid,
            "email": f"{first.lower()}.{n}.{seq}@example.com",
            "phoneNumber": f"+62812{n:07d}",
            "firstName": first,
            "lastName": last,
            "imageUrl": None,
            "tags": self.rng.sample(TAGS, self.rng.randrange(3)),
            "createdAt": created,
            "updatedAt": _iso(when),
        }
        if seq == 0:
            body["addresses"] = [self._address(first, last, n)]
            return "customer.created", body
        body["addresses"] = (
            [self._address(first, last, n) for _ in range(self.rng.randrange(1, 3))]
            if self.rng.random() < 0.2
            else []
        )
        return "customer.updated", body

    def order(self, when: int) -> tuple[str, dict[str, Any]]:
        """An order.created or .updated."""
        n, seq = self._entity("order")
        first, last = self._name()
        customer = int(self.rng.random() * self.pools["customer"])
        body: dict[str, Any] = {
            "id": f"order_{n:08x}",
            "orderId": f"ORD-{n:07d}",
            "status": self.rng.choice(("active", "active", "cancelled", "completed")),
            "fulfillmentStatus": self.rng.choice(("unfulfilled", "fulfilled")),
            "financialStatus": self.rng.choice(("pending", "paid", "refunded")),
            "total": self.rng.randrange(10, 500) * 1000,
            "customer": {"id": f"cust_{customer:08x}", "firstName": first, "lastName": last},
            "tags": [],
            "createdAt": _iso(T0 + n),
            "updatedAt": _iso(when),
        }
        if seq == 0:
            items = [
                {
                    "id": f"li_{n:x}_{i}",
                    "quantity": self.rng.randrange(1, 5),
                    "price": self.rng.randrange(10, 200) * 500,
                    "title": f"Product {self.rng.randrange(1000)}",
                }
                for i in range(self.rng.randrange(1, 4))
            ]
            body.update(
                orderNumber=str(1000 + n),
                currency=None,
                lineItems=items,
                shippingAddress={
                    k: v for k, v in self._address(first, last, n).items() if k != "id"
                },
            )
            body["customer"].update(email=f"{first.lower()}@example.com", phoneNumber="+6281")
            return "order.created", body
        body["lineItems"] = []
        return "order.updated", body

    def product(self, when: int) -> tuple[str, dict[str, Any]]:
        """A product.created, .updated or .deleted."""
        n, seq = self._entity("product")
        pid = f"prod_{n:08x}"
        if seq and self.rng.random() < 0.02:
            return "product.deleted", {"id": pid}
        body: dict[str, Any] = {
            "id": pid,
            "productId": f"PROD-{n:06d}",
            "name": f"Premium T-Shirt {n} v{seq}",
            "description": "High-quality cotton t-shirt",
            "options": [],
            "tags": self.rng.sample(TAGS, self.rng.randrange(2)),
            "types": [],
            "createdAt": _iso(T0 + n),
            "updatedAt": _iso(when),
        }
        if seq == 0:
            body.update(
                media=None,
                status=None,
                variants=[
                    {
                        "id": f"var_{n:x}_{i}",
                        "key": size,
                        "price": self.rng.randrange(10, 200) * 500,
                        "inventorySku": f"SKU-{n}-{size}",
                    }
                    for i, size in enumerate(("S", "M", "L", "XL")[: self.rng.randrange(1, 5)])
                ],
            )
            return "product.created", body
        body["variants"] = []
        return "product.updated", body

    def received(self, when: int) -> tuple[str, dict[str, Any]]:
        """A message.received for a new inbound message."""
        self.inbound += 1
        return "message.received", {
            "messageId": f"msg_in_{self.inbound:09x}",
            "from": f"+62812{self.rng.randrange(10**7):07d}",
            "body": "Hi, I have a question about my order",
            "source": "WHATSAPP_META",
            "receivedAt": _iso(when),
        }

    def status(self, _when: int) -> tuple[str, dict[str, Any]]:
        """A message.status.updated for an outbound message."""
        n, seq = self._entity("message.status")
        status = "failed" if self.rng.random() < 0.02 else STATUSES[min(seq, 3)]
        return "message.status.updated", {
            "messageId": f"msg_out_{n:09x}",
            "status": status,
            "to": f"+62812{n % 10**7:07d}",
            "templateName": "order_confirmation",
        }

    def deliveries(self) -> Iterator[list[Generated]]:
        """Every delivery, in arrival order, in chunks so that memory stays flat."""
        makers = {
            "customer": self.customer,
            "order": self.order,
            "product": self.product,
            "message.received": self.received,
            "message.status": self.status,
        }
        for start in range(0, self.events, CHUNK):
            yield self._chunk(makers, start, min(start + CHUNK, self.events))

    def _chunk(
        self, makers: dict[str, Callable[[int], tuple[str, dict[str, Any]]]], start: int, end: int
    ) -> list[Generated]:
        kinds = self.rng.choices(KINDS, WEIGHTS, k=end - start)
        result: list[Generated] = []
        for i, kind in enumerate(kinds, start):
            when = T0 + 60 * i // max(self.events // 100_000, 1) + i
            event_type, body = makers[kind](when)
            result.append(
                Generated(
                    webhook_id=f"wh_{i:010d}_{self.rng.getrandbits(48):012x}",
                    event_type=event_type,
                    when=when,
                    # Drawn whether or not a caller uses it, so the sequence stays the same.
                    fake_digest=f"{self.rng.getrandbits(256):064x}",
                    body=_encode(body),
                )
            )
        # Retries: some deliveries arrive after newer events of the same entities.
        for i in range(len(result)):
            if self.rng.random() < LATE_SHARE:
                j = min(i + self.rng.randrange(1, LATE_MAX), len(result) - 1)
                result[i], result[j] = result[j], result[i]
        return result
