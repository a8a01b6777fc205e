"""Sinks: where records go. One module per sink type, one registry, one dispatcher.

Importing this package registers every built-in sink type in ``SINK_TYPES``.
"""

from __future__ import annotations

from runner.sinks import file, stdout, syslog, webhook
from runner.sinks.base import (
    SINK_TYPES,
    RecordsRejected,
    SendResult,
    Sink,
    SinkThrottled,
    Truncation,
    accepts,
    build_sink,
)
from runner.sinks.dispatcher import Dispatcher

__all__ = [
    "SINK_TYPES",
    "Dispatcher",
    "RecordsRejected",
    "SendResult",
    "Sink",
    "SinkThrottled",
    "Truncation",
    "accepts",
    "build_sink",
    "file",
    "stdout",
    "syslog",
    "webhook",
]
