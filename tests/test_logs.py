"""Log formats: one JSON object a line, or readable lines; context fields from ``extra``."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from gateway.config import Logging
from gateway.ops.logs import configure_logging, native_level


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


def test_audit_lines_are_written_at_any_level(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(Logging(format="json", level="ERROR"))
    logging.getLogger("dmask.audit").info("instance forwarded")
    logging.getLogger("dmask.receive").warning("not shown")
    (line,) = capsys.readouterr().err.splitlines()
    assert json.loads(line)["logger"] == "dmask.audit"


def test_human_lines(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(Logging(format="human", level="DEBUG"))
    logging.getLogger("dmask.test").warning("delivery failed", extra={"destination": "pacs",
                                                                      "audit": {"event": "x"}})
    line = capsys.readouterr().err.strip()
    assert "WARNING" in line and "dmask.test delivery failed" in line
    assert 'destination=pacs' in line and 'audit={"event":"x"}' in line


@pytest.mark.parametrize("line, level", [
    ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.", logging.INFO),
    ("W0000 00:00:1795694322.954871   13831 feedback_manager.cc:114] Feedback", logging.WARNING),
    ("E0000 00:00:1795694322.954871   13831 calculator_graph.cc:887] failed", logging.ERROR),
    ("F0000 00:00:1795694322.954871   13831 check.cc:1] Check failed", logging.CRITICAL),
    ("ERROR: unknown op", logging.ERROR),
    ("something without a prefix", logging.WARNING),
])
def test_native_levels(line: str, level: int) -> None:
    assert native_level(line) == level


_NATIVE_SCRIPT = """
import logging, os, subprocess, sys
from gateway.config import Logging
from gateway.ops.logs import NativeOutput, configure_logging
native = NativeOutput()
configure_logging(Logging(format="json", level="INFO"))
logging.getLogger("dmask.test").info("from python")
os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\n")
child = ("import logging, os, sys; from gateway.config import Logging; "
         "from gateway.ops.logs import configure_logging; "
         "configure_logging(Logging(format='json', level='INFO')); "
         "logging.getLogger('dmask.child').warning('from a child'); "
         "os.write(2, b'W0000 00:00:1.0 1 file.cc:1] from native code in a child\\\\n')")
subprocess.run([sys.executable, "-c", child], check=True)
native.close()
"""


def test_native_output_of_process_and_children_becomes_json_records() -> None:
    result = subprocess.run([sys.executable, "-c", _NATIVE_SCRIPT], capture_output=True,
                            text=True, timeout=60, check=True)
    records = [json.loads(line) for line in result.stderr.splitlines()]
    found = {(r["logger"], r["level"], r["message"]) for r in records}
    assert found == {
        ("dmask.test", "INFO", "from python"),
        ("dmask.native", "INFO", "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."),
        ("dmask.child", "WARNING", "from a child"),
        ("dmask.native", "WARNING", "W0000 00:00:1.0 1 file.cc:1] from native code in a child"),
    }


_UNCAUGHT_SCRIPT = """
import threading
from gateway.config import Logging
from gateway.ops.logs import configure_logging
configure_logging(Logging(format="json", level="INFO"))
worker = threading.Thread(target=lambda: 1 / 0, name="doomed")
worker.start()
worker.join()
raise RuntimeError("the main thread gives up")
"""


def test_uncaught_exceptions_become_json_records() -> None:
    result = subprocess.run([sys.executable, "-c", _UNCAUGHT_SCRIPT], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    thread, main = (json.loads(line) for line in result.stderr.splitlines())
    assert thread["level"] == "CRITICAL" and thread["thread_name"] == "doomed"
    assert "ZeroDivisionError" in thread["exception"]
    assert main["message"] == "uncaught exception"
    assert "the main thread gives up" in main["exception"]
