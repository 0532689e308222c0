"""Log formats: one JSON object a line, or readable lines; context fields from ``extra``."""

from __future__ import annotations

import json
import logging

import pytest

from gateway.config import Logging
from gateway.logs import configure_logging


@pytest.fixture(autouse=True)
def _restore_root_logger():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(Logging(format="json", level="INFO"))
    logging.getLogger("dmask.test").info("instance quarantined", extra={"job": 7, "reason": "no-face"})
    logging.getLogger("dmask.test").debug("not shown")
    (line,) = capsys.readouterr().err.splitlines()
    entry = json.loads(line)
    assert entry["message"] == "instance quarantined" and entry["level"] == "INFO"
    assert entry["job"] == 7 and entry["reason"] == "no-face" and entry["time"].endswith("Z")


def test_human_lines(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(Logging(format="human", level="DEBUG"))
    logging.getLogger("dmask.test").warning("delivery failed", extra={"destination": "pacs",
                                                                      "audit": {"event": "x"}})
    line = capsys.readouterr().err.strip()
    assert "WARNING" in line and "dmask.test delivery failed" in line
    assert 'destination=pacs' in line and 'audit={"event":"x"}' in line
