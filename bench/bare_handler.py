"""The baseline for `bench/ingest.py`: a bare aiohttp app that reads the body and answers 200.

It does what any aiohttp endpoint must do for a webhook (parse the request, read the body,
encode a small JSON answer) and nothing the service adds (signature, group commit,
projections, logging), so `service req/s / bare req/s` is the cost of the service's work.

Run: `.venv/bin/python bench/bare_handler.py --port 8090`.
"""

from __future__ import annotations

import argparse

import msgspec
from aiohttp import web

_encode = msgspec.json.encode


async def receive(request: web.Request) -> web.Response:
    """Read the whole body, then answer like the service does on acceptance."""
    body = await request.read()
    return web.Response(
        status=200,
        body=_encode({"status": "accepted", "position": len(body)}),
        content_type="application/json",
    )


async def healthz(_request: web.Request) -> web.Response:
    """Answer once the server listens, so the benchmark knows when to start."""
    return web.Response(body=b'{"status":"ok"}', content_type="application/json")


def build_app() -> web.Application:
    """The same routes the load hits on the service, with the service's body limit."""
    app = web.Application(client_max_size=262_144)
    app.router.add_post("/webhooks", receive)
    app.router.add_get("/healthz", healthz)
    return app


def main() -> None:
    """Serve until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args()
    web.run_app(build_app(), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
