"""A local fake of BitByBit's Open API, written from `reference/bitbybit-open-api.md`.

An aiohttp app on loopback: `limit`/`page` paging with `meta`, customers in
`updatedAt:desc` order, orders in an order of no meaning, `RateLimit-*` headers, the
documented error envelopes (401/403/404/429/503), and no `GET /products`. A test holds
the `Account` and changes it between (or during) requests; `Faults` injects answers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import threading
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from collections.abc import Callable

Entity = dict[str, Any]
BASE_PATH = "/customer/open/v1"
KEY = "bbb_test_fake_key_4f1c"
HEADER = "x-api-key"
T0 = 1705314600  # 2024-01-15T10:30:00Z
RESOURCES = frozenset({"customers", "orders", "products"})


def iso(seconds: float) -> str:
    """The API's timestamps: ISO 8601 UTC with milliseconds."""
    whole = int(seconds)
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{int(seconds % 1 * 1000):03d}Z"
    )


@dataclasses.dataclass
class Account:
    """What the fake account holds right now, by entity type and id."""

    customers: dict[str, Entity] = dataclasses.field(default_factory=dict)
    orders: dict[str, Entity] = dataclasses.field(default_factory=dict)
    products: dict[str, Entity] = dataclasses.field(default_factory=dict)
    # Called before each list page is answered: (resource, page) -> None, to evolve mid-walk.
    on_page: Callable[[str, int], None] | None = None

    def of(self, resource: str) -> dict[str, Entity]:
        """The entities of one resource."""
        table: dict[str, Entity] = getattr(self, resource)
        return table


@dataclasses.dataclass
class Faults:
    """Answers to inject, and the rate limit to announce."""

    # Statuses answered (429/503/...) to the next requests, one each, before normal answers.
    next_statuses: list[int] = dataclasses.field(default_factory=list)
    # Entity ids whose own GET answers this status instead of the entity.
    entity_status: dict[str, int] = dataclasses.field(default_factory=dict)
    reset_seconds: int = 1
    per_minute: int = 1_000_000
    scopes: frozenset[str] = frozenset({"customers", "orders", "products"})
    header: str = HEADER
    products_list: bool = False  # the documented API has none
    requests: int = 0
    paths: list[str] = dataclasses.field(default_factory=list)


def _error(status: int, code: str, message: str, headers: dict[str, str]) -> web.Response:
    return web.json_response(
        {"error": {"code": code, "message": message}}, status=status, headers=headers
    )


def _customers_order(entities: list[Entity]) -> list[Entity]:
    return sorted(entities, key=lambda e: (e.get("updatedAt") or "", e["id"]), reverse=True)


def _arbitrary_order(entities: list[Entity]) -> list[Entity]:
    # No documented order: a stable one that has nothing to do with ids or times.
    return sorted(entities, key=lambda e: hashlib.sha256(e["id"].encode()).digest())


class FakeApi:
    """The fake API's handlers over one account and its faults."""

    def __init__(self, account: Account, faults: Faults) -> None:
        self.account = account
        self.faults = faults
        self._window_start = time.monotonic()
        self._used = 0

    def app(self) -> web.Application:
        """The aiohttp app, its routes under `BASE_PATH`."""
        app = web.Application()
        app.router.add_get(BASE_PATH + "/{resource}", self.listing)
        app.router.add_get(BASE_PATH + "/{resource}/{id}", self.single)
        return app

    def _limits(self) -> dict[str, str]:
        now = time.monotonic()
        if now - self._window_start >= 60:
            self._window_start, self._used = now, 0
        self._used += 1
        remaining = max(self.faults.per_minute - self._used, 0)
        reset = max(int(60 - (now - self._window_start)), 1)
        return {
            "RateLimit-Limit": str(self.faults.per_minute),
            "RateLimit-Remaining": str(remaining),
            "RateLimit-Reset": str(reset),
        }

    def _refused(
        self, request: web.Request, resource: str, headers: dict[str, str]
    ) -> web.Response | None:
        faults = self.faults
        faults.requests += 1
        faults.paths.append(request.path_qs)
        if faults.next_statuses:
            status = faults.next_statuses.pop(0)
            if status == 429:
                limited = {
                    **headers,
                    "RateLimit-Remaining": "0",
                    "RateLimit-Reset": str(faults.reset_seconds),
                }
                return _error(429, "RATE_LIMIT_EXCEEDED", "Too many requests", limited)
            return _error(status, "SERVICE_UNAVAILABLE", "Try again later", headers)
        key = request.headers.get(faults.header)
        if not key:
            return _error(401, "MISSING_API_KEY", "API key is required", headers)
        if key != KEY:
            return _error(401, "INVALID_API_KEY", "Invalid API key", headers)
        if resource not in faults.scopes:
            return _error(403, "INSUFFICIENT_SCOPE", f"Missing {resource}:READ", headers)
        return None

    async def listing(self, request: web.Request) -> web.Response:
        """`GET /{resource}?page=&limit=`: a page with `meta`."""
        resource = request.match_info["resource"]
        headers = self._limits()
        if resource not in RESOURCES or (resource == "products" and not self.faults.products_list):
            return _error(404, "NOT_FOUND", f"Cannot GET {request.path}", headers)
        if (answer := self._refused(request, resource, headers)) is not None:
            return answer
        try:
            page = int(request.query.get("page", "1"))
            limit = int(request.query.get("limit", "20"))
        except ValueError:
            return _error(400, "VALIDATION_ERROR", "page and limit are numbers", headers)
        if page < 1 or not 1 <= limit <= 100:
            return _error(400, "VALIDATION_ERROR", "limit is at most 100", headers)
        if self.account.on_page is not None:
            self.account.on_page(resource, page)
        entities = list(self.account.of(resource).values())
        ordered = (
            _customers_order(entities) if resource == "customers" else _arbitrary_order(entities)
        )
        body = {
            "data": ordered[(page - 1) * limit : page * limit],
            "meta": {
                "page": page,
                "limit": limit,
                "total": len(ordered),
                "hasNextPage": page * limit < len(ordered),
            },
        }
        return web.Response(body=json.dumps(body), content_type="application/json", headers=headers)

    async def single(self, request: web.Request) -> web.Response:
        """`GET /{resource}/{id}`: `{data: entity}`, or 404 `NOT_FOUND`."""
        resource = request.match_info["resource"]
        entity_id = request.match_info["id"]
        headers = self._limits()
        if resource not in RESOURCES:
            return _error(404, "NOT_FOUND", f"Cannot GET {request.path}", headers)
        if (answer := self._refused(request, resource, headers)) is not None:
            return answer
        if entity_id in self.faults.entity_status:
            status = self.faults.entity_status[entity_id]
            return _error(status, "SERVICE_UNAVAILABLE", "Try again later", headers)
        entity = self.account.of(resource).get(entity_id)
        if entity is None:
            return _error(404, "NOT_FOUND", f"{resource[:-1].capitalize()} not found", headers)
        return web.json_response({"data": entity}, headers=headers)


class ServedFake:
    """The fake on a loopback port of its own thread, for tests that block (subprocesses)."""

    def __init__(self, account: Account, faults: Faults) -> None:
        self._api = FakeApi(account, faults)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="fake-open-api", daemon=True)
        self.url = ""

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        runner = web.AppRunner(self._api.app())
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        port = runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}{BASE_PATH}"
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())
        self._loop.close()

    def __enter__(self) -> str:
        self._thread.start()
        if not self._ready.wait(20):
            msg = "the fake Open API did not start"
            raise RuntimeError(msg)
        return self.url

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(20)


def customer(n: int, *, updated: float = T0, **changes: Any) -> Entity:
    """A customer as the API returns it (richer than the webhook bodies)."""
    entity: Entity = {
        "id": f"cust_{n:06d}",
        "email": f"person{n}@example.com",
        "phoneNumber": f"+62812{n:07d}",
        "firstName": f"First{n}",
        "lastName": f"Last{n}",
        "imageUrl": None,
        "tags": ["vip"] if n % 3 == 0 else [],
        "addresses": [
            {
                "id": f"addr_{n}",
                "firstName": f"First{n}",
                "lastName": f"Last{n}",
                "phone": f"+62812{n:07d}",
                "address1": f"Jl. Sudirman {n}",
                "address2": f"Floor {n % 9}",
                "city": "Jakarta",
                "province": "DKI Jakarta",
                "country": "ID",
                "zip": "10110",
            }
        ]
        if n % 4
        else [],
        "createdAt": iso(T0),
        "updatedAt": iso(updated),
    }
    entity.update(changes)
    return entity


def order(n: int, *, updated: float = T0, **changes: Any) -> Entity:
    """An order as the API returns it: line items with product variants, notes."""
    customer_n = n % 997
    entity: Entity = {
        "id": f"order_{n:06d}",
        "orderId": f"ORD-{n}",
        "orderNumber": str(1000 + n),
        "status": "active",
        "fulfillmentStatus": "unfulfilled",
        "financialStatus": "paid" if n % 2 else "pending",
        "total": 75000 * (1 + n % 3),
        "currency": "IDR",
        "notes": f"note {n}" if n % 5 else None,
        "customer": {
            "id": f"cust_{customer_n:06d}",
            "firstName": f"First{customer_n}",
            "lastName": f"Last{customer_n}",
            "email": f"person{customer_n}@example.com",
            "phoneNumber": f"+62812{customer_n:07d}",
        },
        "lineItems": [
            {
                "id": f"li_{n}_{i}",
                "quantity": 1 + i,
                "price": 75000,
                "title": f"Item {i}",
                "productVariant": {
                    "id": f"var_{i}",
                    "key": "M",
                    "price": 75000,
                    "compareAtPrice": None,
                    "inventorySku": f"SKU-{i}",
                    "media": None,
                },
            }
            for i in range(1 + n % 3)
        ],
        "shippingAddress": {
            "id": f"ship_{n}",
            "firstName": f"First{customer_n}",
            "lastName": f"Last{customer_n}",
            "phone": None,
            "address1": f"Jl. Thamrin {n}",
            "address2": None,
            "city": "Jakarta",
            "province": "DKI Jakarta",
            "country": "ID",
            "zip": "10230",
        },
        "tags": [],
        "createdAt": iso(T0),
        "updatedAt": iso(updated),
    }
    entity.update(changes)
    return entity


def product(n: int, *, updated: float = T0, **changes: Any) -> Entity:
    """A product as the API returns it: variants, options, medias."""
    entity: Entity = {
        "id": f"prod_{n:06d}",
        "productId": f"P-{n}",
        "name": f"Product {n}",
        "description": f"About product {n}",
        "media": None,
        "medias": [],
        "status": "active",
        "variants": [
            {
                "id": f"var_{n}",
                "key": "M",
                "price": 75000,
                "compareAtPrice": None,
                "inventorySku": f"SKU-{n}",
                "media": None,
            }
        ],
        "options": [{"id": f"opt_{n}", "name": "Size", "values": ["M"]}],
        "tags": [],
        "types": ["apparel"],
        "createdAt": iso(T0),
        "updatedAt": iso(updated),
    }
    entity.update(changes)
    return entity
