"""The application's typed keys: all state lives on the `Application`, none in globals."""

from __future__ import annotations

from aiohttp import web

from app.metrics import Metrics
from app.projection.supervisor import ProjectorSupervisor
from app.settings import Settings
from app.webhooks.delivery import Ingest

SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", Metrics)
INGEST = web.AppKey("ingest", Ingest)
PROJECTOR = web.AppKey("projector", ProjectorSupervisor)
