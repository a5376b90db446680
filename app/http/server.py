"""Running the app on a socket until a signal stops it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from app.http.main import create_app

if TYPE_CHECKING:
    from app.settings import Settings


def serve_forever(settings: Settings) -> None:
    """Listen on the settings' host and port until SIGINT or SIGTERM.

    No access log: each delivery already logs one line of its own. Up to 30 s are given
    to requests in flight at shutdown, so an answered delivery is never cut short.
    """
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        print=None,
        access_log=None,
        shutdown_timeout=30,
    )
