"""The application factory: the composition root that wires settings, log and projections."""

from __future__ import annotations

import importlib.util
import time
from typing import TYPE_CHECKING

import structlog
from aiohttp import web

from app.eventlog.group_commit import GroupCommitWriter
from app.eventlog.store import EventStore
from app.files import make_private_dir
from app.http import views
from app.http.keys import INGEST, METRICS, PROJECTOR, SETTINGS
from app.metrics import Metrics
from app.ops.forget import sweeping
from app.projection.supervisor import ProjectorSupervisor
from app.publish.state import unavailable
from app.publish.supervisor import PublishCollector, publishing
from app.sync.runner import SyncCollector, SyncScheduler
from app.webhooks.delivery import Ingest
from app.webhooks.signature import Verifier
from projections import discover

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from app.settings import Settings

log = structlog.get_logger("app")

# How long a connection may sit without a request in flight (idle keep-alive, or one
# whose request headers have not all arrived) before it is closed, so idle connections
# cannot pile up. Longer than a reverse proxy's own upstream keep-alive (nginx: 60 s),
# so the proxy, not this side, closes a reused connection and no request races a close.
KEEPALIVE_SECONDS = 75.0


def create_app(settings: Settings) -> web.Application:
    """Build the service; resources open and close in the app's cleanup contexts."""
    settings.require_secret()
    # aiohttp enforces this limit while reading, so a body that lies about its
    # Content-Length (or is chunked) is still cut off.
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[views.json_errors],
        handler_args={"keepalive_timeout": KEEPALIVE_SECONDS},
    )
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app[METRICS].registry.register(SyncCollector(settings))
    app[METRICS].registry.register(PublishCollector(settings))
    app.cleanup_ctx.append(_supervisor_ctx)
    app.cleanup_ctx.append(_event_log_ctx)
    app.cleanup_ctx.append(_forget_sweep_ctx)
    app.cleanup_ctx.append(_sync_ctx)
    app.cleanup_ctx.append(_publish_ctx)
    expect = views.expect_continue
    app.router.add_post("/webhooks", views.receive_webhook, expect_handler=expect)
    app.router.add_route("*", "/webhooks", views.method_not_allowed("POST"), expect_handler=expect)
    for path, handler in (
        ("/healthz", views.healthz),
        ("/readyz", views.readyz),
        ("/metrics", views.metrics),
    ):
        app.router.add_get(path, handler, expect_handler=expect)
        app.router.add_route("*", path, views.method_not_allowed("GET"), expect_handler=expect)
    # Last, so that it only ever answers paths no route above knows.
    app.router.add_route("*", "/{path:.*}", views.not_found, expect_handler=expect)
    return app


async def _supervisor_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    make_private_dir(settings.data_dir)
    # Creating the log first means the projector always finds its tables.
    EventStore.open(settings.events_path).close()
    live = ProjectorSupervisor(settings, app[METRICS], discover())
    async with live.running():
        app[PROJECTOR] = live
        yield


async def _event_log_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    writer = GroupCommitWriter(
        EventStore.open(settings.events_path),
        app[METRICS],
        on_commit=app[PROJECTOR].notify,
        answer_seconds=settings.answer_seconds,
    )
    async with writer.running():
        app[INGEST] = Ingest(Verifier(settings.secrets, settings.tolerance_seconds), writer)
        log.info(
            "started",
            data_dir=str(settings.data_dir),
            events=str(settings.events_path),
            projections=str(settings.projections_path),
            secrets=len(settings.secrets),
            tolerance_seconds=settings.tolerance_seconds,
            max_body_bytes=settings.max_body_bytes,
            started_at=time.time(),
        )
        yield


async def _forget_sweep_ctx(app: web.Application) -> AsyncIterator[None]:
    """Later deliveries about a forgotten person are redacted in the log within the hour."""
    async with sweeping(app[SETTINGS], discover()):
        yield


def _why_not_publishing(settings: Settings) -> str | None:
    """Why the publisher child could not start, in one sentence; None if it can."""
    if importlib.util.find_spec("psycopg") is None:
        return (
            "BITBYBIT_PUBLISH_URL is set but the postgres extra is not installed: "
            "pip install 'bitbybit-mirror[postgres]'"
        )
    from app.publish.url import PublishURLError, describe_target  # noqa: PLC0415 - psycopg

    try:
        describe_target(settings.publish_url)
    except PublishURLError as exc:
        return f"BITBYBIT_PUBLISH_URL: {exc}; fix it and restart serve"
    return None


async def _publish_ctx(app: web.Application) -> AsyncIterator[None]:
    """BITBYBIT_PUBLISH_URL: the projection tables kept in PostgreSQL, continuously."""
    settings = app[SETTINGS]
    if not settings.publish_url:
        yield
        return
    problem = _why_not_publishing(settings)
    if problem:
        # Deliveries go on; the sentence is logged once and shown by `status`.
        log.error("publish_unavailable", detail=problem)
        unavailable(settings.data_dir, problem)
        yield
        return
    async with publishing(settings):
        log.info("publishing", schema=settings.publish_schema)
        yield


async def _sync_ctx(app: web.Application) -> AsyncIterator[None]:
    """`--sync-every`: passes in the background, when there is a key to read with."""
    settings = app[SETTINGS]
    if settings.sync_every_seconds is None:
        yield
        return
    if not settings.api_key:
        log.warning(
            "sync_not_scheduled",
            detail="--sync-every (BITBYBIT_SYNC_EVERY) is set but BITBYBIT_API_KEY is not",
        )
        yield
        return
    async with SyncScheduler(settings).running():
        log.info("sync_scheduled", every_seconds=settings.sync_every_seconds)
        yield
