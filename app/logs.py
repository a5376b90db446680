"""Structured logging, configured once by the CLI: JSON lines when stdout is not a terminal."""

from __future__ import annotations

import logging
import sys

import msgspec
import structlog


def configure_logging() -> None:
    """Human-readable on a terminal, one JSON object per line otherwise."""
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if sys.stdout.isatty():
        structlog.configure(
            processors=[*shared, structlog.dev.ConsoleRenderer()],
            wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
            logger_factory=structlog.PrintLoggerFactory(),
            cache_logger_on_first_use=True,
        )
    else:
        structlog.configure(
            processors=[
                *shared,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(serializer=_json_bytes),
            ],
            wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
            logger_factory=structlog.BytesLoggerFactory(),
            cache_logger_on_first_use=True,
        )


def _json_bytes(event: object, **_options: object) -> bytes:
    # structlog passes json.dumps-style options that msgspec does not take; values it
    # cannot encode are logged by their repr rather than dropping the line.
    return msgspec.json.encode(event, enc_hook=repr)
