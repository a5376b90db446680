"""HTTP views: thin translations between requests and the ingest and projection layers."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import msgspec
import structlog
from aiohttp import hdrs, web

from app.eventlog.store import Outcome, StoreUnavailableError
from app.http.keys import INGEST, METRICS, PROJECTOR, SETTINGS
from app.logging_setup import log_delivery
from app.metrics import CONTENT_TYPE_LATEST
from app.webhooks.delivery import DeliveryHeaders, RejectedError

if TYPE_CHECKING:
    from aiohttp.typedefs import Handler

    from app.metrics import Metrics

log = structlog.get_logger("app.webhook")

_encode = msgspec.json.encode
# The HTTP status of each refusal (SPEC §3): the protocol names the error, the view answers it.
STATUS_OF = {
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "missing_signature": 401,
    "malformed_signature": 401,
    "timestamp_out_of_tolerance": 401,
    "invalid_signature": 401,
    "missing_header": 400,
    "malformed_header": 400,
    "malformed_body": 400,
    "body_timeout": 408,
    "expectation_failed": 417,
    "signature_replayed": 409,
}
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
    # Before anything else looks at them, so the header-byte rule has one place.
    headers = DeliveryHeaders.read(request.headers)
    settings = app[SETTINGS]
    try:
        body = await _read_body(request, settings.max_body_bytes, settings.body_timeout_seconds)
        # SPEC §3: answered within `answer_seconds` of the body's last byte, stored or not.
        deadline = asyncio.get_running_loop().time() + settings.answer_seconds
        result = await app[INGEST].receive(headers, body, time.time(), deadline=deadline)
    except RejectedError as exc:
        response = _rejected(metrics, headers, exc, started, request)
        if exc.code in _CLOSING_CODES:
            await _close_after(request, response)
        return response
    except StoreUnavailableError:
        metrics.rejections.labels("store_unavailable").inc()
        _log_delivery(headers, "store_unavailable", started, logging.ERROR, request)
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
        _log_delivery(headers, "client_disconnected", started, request=request)
        return _json(400, {"error": "connection_lost", "detail": "the body did not arrive"})
    except Exception:
        # A bug, not the sender's fault: answered in the endpoint's JSON shape, and the
        # sender retries it later (nothing was acknowledged).
        log.exception("delivery_failed")
        _log_delivery(headers, "internal_error", started, logging.ERROR, request)
        return internal_error()
    outcome = result.outcome
    metrics.count_delivery(headers.event_type or "", outcome.value)
    if outcome is Outcome.ACCEPTED:
        _log_delivery(headers, outcome.value, started, request=request)
        return _json(200, {"status": "accepted", "position": result.position})
    metrics.duplicates.inc()
    if outcome is Outcome.CONFLICTING_DUPLICATE:
        # The log keeps the first body; the differing one is kept aside for a person to see.
        _log_delivery(headers, outcome.value, started, logging.WARNING, request)
    else:
        _log_delivery(headers, outcome.value, started, request=request)
    return _json(200, {"status": "duplicate", "position": result.position})


def _rejected(
    metrics: Metrics,
    headers: DeliveryHeaders,
    exc: RejectedError,
    started: float,
    request: web.BaseRequest,
) -> web.Response:
    """The answer to a refused delivery, with its metric and its log line."""
    metrics.rejections.labels(exc.code).inc()
    _log_delivery(headers, exc.code, started, logging.WARNING, request)
    return _json(STATUS_OF[exc.code], {"error": exc.code, "detail": exc.detail})


async def _close_after(request: web.Request, response: web.Response) -> None:
    """Send `response`, then close the connection at once.

    For a body that will not come (or is not wanted): aiohttp would otherwise wait up to
    10 s for the rest of it before closing, holding the connection the timeout freed.
    """
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    if request.transport is not None:
        request.transport.close()  # asyncio sends what is buffered, then closes


async def _read_body(request: web.Request, limit: int, seconds: float) -> bytes:
    """Read the body, refusing it if oversized, slow or garbled, then insist on JSON.

    The size is checked by Content-Length and again while reading, since a sender can
    lie about the length or send the body chunked. The timeout runs from the end of the
    headers: a sender that stops mid-body is cut off rather than holding its connection.
    """
    length = request.content_length
    if length is not None and length > limit:
        raise _too_large(limit)
    try:
        async with asyncio.timeout(seconds):
            body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(limit) from None
    except TimeoutError:
        raise RejectedError(
            "body_timeout", f"the body did not arrive within {seconds:g} s of the headers"
        ) from None
    except web.RequestPayloadError:
        # A chunked or compressed body that does not decode as it claims to.
        raise RejectedError(
            "malformed_body", "the body is not valid in its transfer or content encoding"
        ) from None
    # The exact header BitByBit sends skips aiohttp's parsing of parameters (charset=...).
    declared = request.headers.get(hdrs.CONTENT_TYPE)
    if declared != "application/json" and request.content_type != "application/json":
        raise RejectedError("unsupported_media_type", "the Content-Type must be application/json")
    return body


def _too_large(limit: int) -> RejectedError:
    return RejectedError("payload_too_large", f"the body is larger than {limit} bytes")


_CLOSING_CODES = frozenset({"body_timeout", "malformed_body"})


def _log_delivery(
    headers: DeliveryHeaders,
    outcome: str,
    started: float,
    level: int = logging.INFO,
    request: web.BaseRequest | None = None,
) -> None:
    forwarded = None if request is None else request.headers.get("X-Forwarded-For")
    log_delivery(
        level,
        (headers.webhook_id or "")[:255],
        (headers.event_type or "")[:255],
        outcome,
        round((time.perf_counter() - started) * 1000, 3),
        peer="" if request is None else request.remote or "",
        forwarded_for=None if forwarded is None else forwarded[:1000],
    )


def internal_error() -> web.Response:
    """A bug's answer: JSON like every other, and nothing was acknowledged."""
    return _json(500, {"error": "internal_error", "detail": "the request failed; nothing stored"})


async def expect_continue(request: web.Request) -> web.Response | None:
    """`Expect: 100-continue`: refuse an oversized body before the sender sends it.

    Replaces aiohttp's default handler, which says 100 Continue to any length and
    answers an unknown expectation in plain text; it runs before any middleware.
    """
    limit = request.app[SETTINGS].max_body_bytes
    length = request.content_length
    if request.headers.get(hdrs.EXPECT, "").lower() != "100-continue":
        problem = RejectedError("expectation_failed", "only Expect: 100-continue is understood")
    elif length is not None and length > limit:
        problem = _too_large(limit)
    else:
        if request.version >= (1, 1):
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return None
    response = _rejected(
        request.app[METRICS],
        DeliveryHeaders.read(request.headers),
        problem,
        time.perf_counter(),
        request,
    )
    # The body the sender holds back would otherwise be read as the next request.
    await _close_after(request, response)
    return response


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Whatever a handler raises is answered in the service's JSON, never aiohttp's text."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        response = _json(
            exc.status,
            {"error": exc.reason.lower().replace(" ", "_"), "detail": exc.text or exc.reason},
        )
        if exc.status == 413:
            response.force_close()
        return response
    except ConnectionError:
        raise  # nobody left to answer; aiohttp drops the connection quietly
    except Exception:
        log.exception("request_failed", method=request.method, path=request.path)
        return internal_error()


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
    # Rendered on a thread: some collectors read SQLite files (the last sync, the last
    # delivery) as they are scraped, which must not hold up the deliveries.
    body = await asyncio.to_thread(app[METRICS].render)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
