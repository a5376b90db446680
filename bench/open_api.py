"""The sync benchmark's fake Open API: the documented list endpoints, every page encoded first.

`python bench/open_api.py --port N [--customers 100000] [--orders 100000]`

Written for the benchmark alone, from `reference/bitbybit-open-api.md`: `GET
/customers` and `GET /orders` with `page` paging and `meta`, no rate limit (it
announces a huge `RateLimit-Limit`), no faults, no single-entity GET and no changes
while it runs. The entities have the shapes the API documents, as rich as the test
suite's fake (`tests/fake_api.py`, which the benchmark does not import: bench/ imports
the product only), so that a pass parses what a real one would. Generated from the
entity's number, so every run serves the same account.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from aiohttp import web

BASE_PATH = "/customer/open/v1"
PAGE = 100
T0 = 1705314600  # 2024-01-15T10:30:00Z

Entity = dict[str, Any]


def iso(seconds: float) -> str:
    """The API's timestamps: ISO 8601 UTC with milliseconds."""
    whole = int(seconds)
    millis = int(seconds % 1 * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"


def customer(n: int, updated: float) -> Entity:
    """Customer `n` as the API returns it: contact details, tags, an address for most."""
    address = {
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
    return {
        "id": f"cust_{n:06d}",
        "email": f"person{n}@example.com",
        "phoneNumber": f"+62812{n:07d}",
        "firstName": f"First{n}",
        "lastName": f"Last{n}",
        "imageUrl": None,
        "tags": ["vip"] if n % 3 == 0 else [],
        "addresses": [address] if n % 4 else [],
        "createdAt": iso(T0),
        "updatedAt": iso(updated),
    }


def order(n: int) -> Entity:
    """Order `n`: one to three line items with product variants, a customer, an address."""
    buyer = n % 997
    return {
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
            "id": f"cust_{buyer:06d}",
            "firstName": f"First{buyer}",
            "lastName": f"Last{buyer}",
            "email": f"person{buyer}@example.com",
            "phoneNumber": f"+62812{buyer:07d}",
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
            "firstName": f"First{buyer}",
            "lastName": f"Last{buyer}",
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
        "updatedAt": iso(T0),
    }


def pages(entities: list[Entity]) -> list[bytes]:
    """The encoded answers of `GET /<resource>?page=1..`, `PAGE` entities each."""
    total = len(entities)
    return [
        json.dumps(
            {
                "data": entities[start : start + PAGE],
                "meta": {
                    "page": start // PAGE + 1,
                    "limit": PAGE,
                    "total": total,
                    "hasNextPage": start + PAGE < total,
                },
            }
        ).encode()
        for start in range(0, total, PAGE)
    ]


def app(customers: int, orders: int) -> web.Application:
    """The list endpoints over `customers` customers (newest first, as documented) and orders."""
    bodies = {
        # `updatedAt:desc`: customer 0 is the most recently updated.
        "customers": pages([customer(n, updated=T0 + customers - n) for n in range(customers)]),
        "orders": pages([order(n) for n in range(orders)]),
    }
    limits = {
        "RateLimit-Limit": "1000000000",
        "RateLimit-Remaining": "1000000000",
        "RateLimit-Reset": "60",
    }

    async def listing(request: web.Request) -> web.Response:
        resource_pages = bodies.get(request.match_info["resource"])
        if resource_pages is None:
            return web.json_response({"error": {"code": "NOT_FOUND", "message": "no"}}, status=404)
        number = int(request.query.get("page", "1"))
        body = resource_pages[number - 1] if number <= len(resource_pages) else b'{"data":[]}'
        return web.Response(body=body, content_type="application/json", headers=limits)

    application = web.Application()
    application.router.add_get(BASE_PATH + "/{resource}", listing)
    return application


def main(argv: list[str] | None = None) -> None:
    """Serve the fake on loopback until killed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--customers", type=int, default=100_000, help="default 100000")
    parser.add_argument("--orders", type=int, default=100_000, help="default 100000")
    args = parser.parse_args(argv)
    web.run_app(
        app(args.customers, args.orders),
        host="127.0.0.1",
        port=args.port,
        print=None,
        access_log=None,
    )


if __name__ == "__main__":
    main()
