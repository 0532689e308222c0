"""Logging set-up: one JSON object a line (for collectors) or readable lines (for a terminal).

Modules log with plain :mod:`logging` and pass context as ``extra={...}`` (job id, AE title,
status, reason). Those fields become JSON keys or ``key=value`` pairs here. Nothing that
identifies a patient is ever passed: jobs are named by their spool id, instances in the audit
trail by pseudonymous identifiers only. What native libraries print to file descriptor 2
(mediapipe, TensorFlow Lite, absl) is turned into records of ``dmask.native`` by
:class:`NativeOutput`, so stderr holds nothing but records.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import time
from typing import Any, TextIO

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
    logging.captureWarnings(True)  # Python warnings as records, not bare lines on stderr
    # pynetdicom logs every PDU at INFO; its own failures still come through as warnings.
    logging.getLogger("pynetdicom").setLevel(max(logging.WARNING, root.level))
    # The audit trail is a record the gateway owes, not diagnostics: the level does not mute it.
    logging.getLogger("dmask.audit").setLevel(logging.INFO)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread


def _log_uncaught(kind: type[BaseException], error: BaseException, trace: Any) -> None:
    """An exception nothing caught becomes a record too, so stderr stays one format."""
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, error, trace)
        return
    logging.getLogger("dmask").critical("uncaught exception", exc_info=(kind, error, trace))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None:
        return
    error = (args.exc_type, args.exc_value, args.exc_traceback)
    logging.getLogger("dmask").critical(
        "uncaught exception in a thread", exc_info=error,
        extra={"thread_name": args.thread.name if args.thread is not None else None})


#: glog/absl prefixes ("W0000 00:00:1700000000.000000 1234 file.cc:12] ...").
_GLOG = re.compile(r"^([IWEF])\d{4} ")
#: TensorFlow Lite and other C libraries ("INFO: Created TensorFlow Lite XNNPACK delegate").
_WORD = re.compile(r"^(VERBOSE|DEBUG|INFO|WARNING|WARN|ERROR|FATAL)\b")
_LEVELS = {"I": logging.INFO, "W": logging.WARNING, "E": logging.ERROR, "F": logging.CRITICAL,
           "VERBOSE": logging.DEBUG, "DEBUG": logging.DEBUG, "INFO": logging.INFO,
           "WARNING": logging.WARNING, "WARN": logging.WARNING, "ERROR": logging.ERROR,
           "FATAL": logging.CRITICAL}


def native_level(line: str) -> int:
    """The logging level a line of native output announces; WARNING when it announces none."""
    match = _GLOG.match(line) or _WORD.match(line)
    return _LEVELS[match.group(1)] if match else logging.WARNING


def _is_log_line(line: bytes) -> bool:
    """Whether a line is already one of our JSON log records (a worker's, passed through)."""
    if not line.startswith(b"{"):
        return False
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


class NativeOutput:
    """Route everything written to file descriptor 2 of this process and its children through
    logging, so that stderr carries only log records.

    mediapipe, TensorFlow Lite and absl (C++) print straight to fd 2, below Python's logging;
    in json mode their lines would break the one-object-a-line format. Once started, fd 2 is a
    pipe read by a thread of this process: lines that are already JSON objects (the log records
    of worker processes, which inherit fd 2) are copied to the real stderr unchanged, every
    other line is logged by ``dmask.native`` at the level its prefix names. This process's own
    records go to the real stderr directly (``sys.stderr`` is pointed at it), so none of them
    waits on the thread. Start it before configuring logging and before starting workers.
    """

    def __init__(self) -> None:
        sys.stderr.flush()
        self._saved_stderr: TextIO = sys.stderr
        self._real_fd = os.dup(2)
        read_fd, write_fd = os.pipe()
        os.dup2(write_fd, 2)
        os.close(write_fd)
        sys.stderr = open(self._real_fd, "w", buffering=1, encoding="utf-8",  # noqa: SIM115
                          errors="backslashreplace", closefd=False)
        self._log = logging.getLogger("dmask.native")
        self._thread = threading.Thread(target=self._pump, args=(read_fd,), name="native-output",
                                        daemon=True)
        self._thread.start()

    def _pump(self, read_fd: int) -> None:
        """Drain the pipe until every writer closed it; never stop early, or writers would block."""
        with open(read_fd, "rb") as pipe:
            for line in pipe:
                try:
                    self._forward(line)
                except Exception:  # noqa: BLE001 - a lost line beats a gateway stuck on stderr
                    pass

    def _forward(self, line: bytes) -> None:
        if _is_log_line(line):
            os.write(self._real_fd, line)  # one write: whole lines stay whole
            return
        text = line.decode("utf-8", "backslashreplace").rstrip()
        if text:
            self._log.log(native_level(text), text)

    def close(self, timeout: float = 2.0) -> None:
        """Give fd 2 back to the real stderr and pass on what is still in the pipe.

        Call it once the child processes have exited: the pipe ends when no process holds it.
        """
        sys.stderr.flush()
        os.dup2(self._real_fd, 2)
        self._thread.join(timeout)
        # The log handler keeps writing through the stream on the duplicate: leave it open.
        sys.stderr = self._saved_stderr
