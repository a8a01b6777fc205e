"""Logging set-up: structlog events, JSON off a terminal, readable lines on one.

Standard-library loggers (aiohttp, apscheduler, msal) are routed through the
same renderer so that one process writes one format.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog


def configure(
    level: str = "info", *, stream: TextIO | None = None, json: bool | None = None
) -> None:
    """Route structlog and stdlib logging to *stream* at *level*."""
    stream = stream or sys.stderr
    if json is None:
        json = not stream.isatty()
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Library chatter stays at warning unless the user asked for debug.
    for noisy in ("apscheduler", "msal", "urllib3", "aiohttp.access", "asyncio"):
        logging.getLogger(noisy).setLevel(
            logging.DEBUG if level.lower() == "debug" else logging.WARNING
        )
    structlog.configure(
        processors=[
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
