"""Logging set-up: one JSON object a line (for collectors) or readable lines (for a terminal).

Modules log with plain :mod:`logging` and pass context as ``extra={...}`` (job id, AE title,
status, reason). Those fields become JSON keys or ``key=value`` pairs here. Nothing that
identifies a patient is ever passed: jobs are named by their spool id, instances in the audit
trail by pseudonymous identifiers only.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from gateway.config import Logging

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def _context(record: logging.LogRecord) -> dict[str, Any]:
    return {key: value for key, value in vars(record).items() if key not in _STANDARD}


def _timestamp(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


class JSONLinesFormatter(logging.Formatter):
    """``{"time": ..., "level": ..., "logger": ..., "message": ..., <extra fields>}``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {"time": _timestamp(record), "level": record.levelname,
                                 "logger": record.name, "message": record.getMessage()}
        entry.update(_context(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, separators=(",", ":"))


class HumanFormatter(logging.Formatter):
    """``2026-01-01T10:00:00.000Z INFO dmask.receive association accepted calling_ae=CAM1``."""

    def format(self, record: logging.LogRecord) -> str:
        context = " ".join(
            f"{key}={json.dumps(value, default=str, separators=(',', ':'))}"
            if isinstance(value, (dict, list)) else f"{key}={value}"
            for key, value in _context(record).items())
        line = f"{_timestamp(record)} {record.levelname:<7} {record.name} {record.getMessage()}"
        line = f"{line} {context}" if context else line
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(settings: Logging) -> None:
    """Send every log record to stderr in the configured format and level (idempotent)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONLinesFormatter() if settings.format == "json" else HumanFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(settings.level)
    # pynetdicom logs every PDU at INFO; its own failures still come through as warnings.
    logging.getLogger("pynetdicom").setLevel(max(logging.WARNING, root.level))
