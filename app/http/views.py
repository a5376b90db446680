"""HTTP views: thin translations between requests and the ingest and projection layers."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import msgspec
import structlog
from aiohttp import hdrs, web

from app.eventlog.ingest import EVENT_HEADER, ID_HEADER, RejectedError
from app.eventlog.store import Outcome, StoreUnavailableError
from app.http.keys import INGEST, METRICS, PROJECTOR, SETTINGS
from app.logging_setup import log_delivery
from app.metrics import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from aiohttp.typedefs import Handler

log = structlog.get_logger("app.webhook")

_encode = msgspec.json.encode
# How long /readyz waits for its probe write to commit (another writer, such as an import,
# may hold the log) before calling the log unavailable.
PROBE_SECONDS = 2.0


def _json(status: int, body: dict[str, object]) -> web.Response:
    return web.Response(status=status, body=_encode(body), content_type="application/json")


async def receive_webhook(request: web.Request) -> web.Response:
    """`POST /webhooks`: store an authentic delivery, answering only after it is durable."""
    started = time.perf_counter()
    app = request.app
    metrics = app[METRICS]
    headers = request.headers
    try:
        body = await _read_body(request, app[SETTINGS].max_body_bytes)
        result = await app[INGEST].receive(headers, body, time.time())
    except RejectedError as exc:
        metrics.rejections.labels(exc.code).inc()
        _log_delivery(request, exc.code, started, level=logging.WARNING)
        return _json(exc.status, {"error": exc.code, "detail": exc.detail})
    except StoreUnavailableError:
        metrics.rejections.labels("store_unavailable").inc()
        _log_delivery(request, "store_unavailable", started, level=logging.ERROR)
        return _json(
            503,
            {
                "error": "store_unavailable",
                "detail": "the event log cannot be written; retry later",
            },
        )
    except ConnectionError:
        # The sender hung up mid-body (a timeout on its side): nothing stored, and no bug
        # either; it will retry. The answer is for form's sake: nobody is there to read it.
        _log_delivery(request, "client_disconnected", started)
        return _json(400, {"error": "connection_lost", "detail": "the body did not arrive"})
    except Exception:
        # A bug, not the sender's fault: answered in the endpoint's JSON shape, and the
        # sender retries it later (nothing was acknowledged).
        log.exception("delivery_failed")
        _log_delivery(request, "internal_error", started, level=logging.ERROR)
        return _json(500, {"error": "internal_error", "detail": "the delivery was not stored"})
    outcome = result.outcome
    event_type = headers[EVENT_HEADER]
    metrics.count_delivery(event_type, outcome.value)
    if outcome is Outcome.ACCEPTED:
        _log_delivery(request, outcome.value, started)
        return _json(200, {"status": "accepted", "position": result.position})
    metrics.duplicates.inc()
    if outcome is Outcome.CONFLICTING_DUPLICATE:
        # The log keeps the first body; the differing one is kept aside for a person to see.
        _log_delivery(request, outcome.value, started, level=logging.WARNING)
    else:
        _log_delivery(request, outcome.value, started)
    return _json(200, {"status": "duplicate", "position": result.position})


async def _read_body(request: web.Request, limit: int) -> bytes:
    """Read the body, refusing it if oversized, then insist on JSON.

    The size is checked by Content-Length and again while reading, since a sender can
    lie about the length or send the body chunked.
    """
    length = request.content_length
    if length is not None and length > limit:
        raise RejectedError(413, "payload_too_large", f"the body is larger than {limit} bytes")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise RejectedError(
            413, "payload_too_large", f"the body is larger than {limit} bytes"
        ) from None
    # The exact header BitByBit sends skips aiohttp's parsing of parameters (charset=...).
    declared = request.headers.get(hdrs.CONTENT_TYPE)
    if declared != "application/json" and request.content_type != "application/json":
        raise RejectedError(
            415, "unsupported_media_type", "the Content-Type must be application/json"
        )
    return body


def _log_delivery(
    request: web.Request, outcome: str, started: float, level: int = logging.INFO
) -> None:
    headers = request.headers
    log_delivery(
        level,
        (headers.get(ID_HEADER) or "")[:255],
        (headers.get(EVENT_HEADER) or "")[:255],
        outcome,
        round((time.perf_counter() - started) * 1000, 3),
    )


def method_not_allowed(allowed: str) -> Handler:
    """The answer for a known path asked with another method, in the endpoint's JSON."""

    async def answer(request: web.Request) -> web.Response:
        response = _json(
            405,
            {"error": "method_not_allowed", "detail": f"{request.path} takes {allowed} only"},
        )
        response.headers["Allow"] = allowed
        return response

    return answer


async def not_found(request: web.Request) -> web.Response:
    """Any other path: JSON like every other answer, and a hint at the right one."""
    return _json(
        404, {"error": "not_found", "detail": f"no {request.path}; deliveries go to POST /webhooks"}
    )


async def healthz(_request: web.Request) -> web.Response:
    """`GET /healthz`: the process is alive and answering."""
    return _json(200, {"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """`GET /readyz`: the log takes writes, and how far behind each projection is."""
    app = request.app
    projections = await app[PROJECTOR].report()
    try:
        await asyncio.wait_for(app[INGEST].writer.probe(), PROBE_SECONDS)
    except (StoreUnavailableError, TimeoutError):
        return _json(
            503,
            {
                "error": "store_unavailable",
                "detail": "the event log cannot be written",
                "projections": projections,
            },
        )
    return _json(200, {"status": "ready", "projections": projections})


async def metrics(request: web.Request) -> web.Response:
    """`GET /metrics`: Prometheus text format."""
    app = request.app
    await app[PROJECTOR].report()
    return web.Response(body=app[METRICS].render(), headers={"Content-Type": CONTENT_TYPE_LATEST})
