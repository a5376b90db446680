"""Running the app on a socket until a signal stops it."""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING

import structlog
from aiohttp import http_exceptions, web

from app.http.main import create_app
from app.logging_setup import printable

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from app.settings import Settings

log = structlog.get_logger("app")


class PortUnavailableError(Exception):
    """The address and port cannot be listened on; the message names them and the fix."""


def serve_forever(settings: Settings) -> None:
    """Listen on the settings' host and port until SIGINT or SIGTERM.

    The socket is bound before anything else happens: a port in use is reported in one
    sentence before a database is opened or a line says the service started. No access
    log: each delivery already logs one line of its own. Up to 30 s are given to requests
    in flight at shutdown, so an answered delivery is never cut short.
    """
    sock = bind(settings.host, settings.port)
    app = create_app(settings)
    host, port = sock.getsockname()[:2]

    async def listening(_app: web.Application) -> AsyncIterator[None]:
        # Appended after every resource's context: the socket is already listening,
        # and aiohttp starts serving on it right after this.
        log.info("listening", address=host, port=port)
        yield

    app.cleanup_ctx.append(listening)
    install_refusal_logging()
    try:
        web.run_app(app, sock=sock, print=None, access_log=None, shutdown_timeout=30)
    finally:
        sock.close()
    log.info("stopped", address=host, port=port)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on `host`:`port`, or `PortUnavailableError` saying why not."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise PortUnavailableError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; check --host (BITBYBIT_HOST)"
        ) from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise PortUnavailableError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; stop what uses it "
            "(`ss -ltnp | grep :" + str(port) + "`) or choose another --port (BITBYBIT_PORT)"
        ) from None
    sock.setblocking(False)  # noqa: FBT003 - the socket API's own flag
    return sock


class _RefusedRequests(logging.Handler):
    """aiohttp's server log, as structured lines: a request its parser refuses is one line.

    aiohttp logs a request line or header it cannot parse (a scanner, a TLS handshake on
    the plain port) with the exception's traceback, at error level; that is the sender's
    mistake, not a bug, so it becomes one `request_refused` warning naming the peer and
    what was wrong. Anything else it logs keeps its traceback, as one JSON line.
    """

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, http_exceptions.HttpProcessingError):
            peer = record.args[0] if isinstance(record.args, tuple) and record.args else None
            log.warning(
                "request_refused",
                peer=printable(str(peer)),
                status=exc.code,
                error=type(exc).__name__,
                detail=printable(str(exc.message)),
            )
            return
        log.log(record.levelno, "aiohttp", detail=record.getMessage(), exc_info=record.exc_info)


def install_refusal_logging() -> None:
    """Route the `aiohttp.server` logger through `_RefusedRequests`, once."""
    logger = logging.getLogger("aiohttp.server")
    if not any(isinstance(h, _RefusedRequests) for h in logger.handlers):
        logger.addHandler(_RefusedRequests())
    logger.propagate = False
