"""Real peers for integration tests: Orthanc (the research PACS), dcmtk and a running ``dmask serve``.

Each one starts its peer on free loopback ports with its own configuration and storage
folder, and stops it by its process id. Orthanc, storescu and echoscu run with ``TCP_NODELAY=1``
(Nagle's algorithm costs ~90 ms per small object otherwise).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.cli import DMASK
from tests.support.keys import write_key
from tests.support.loopback import free_port

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
STORESCU = shutil.which("storescu")
ECHOSCU = shutil.which("echoscu")
#: The DICOMweb plugin of the Debian package orthanc-dicomweb.
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
PEER_ENV = {**os.environ, "TCP_NODELAY": "1"}


def wait_until(condition: Callable[[], bool], timeout: float, what: str,
               interval: float = 0.2) -> None:
    """Poll ``condition`` until it holds; fail the test naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


class Orthanc:
    """A private Orthanc: its own config, storage folder, DICOM and HTTP ports on loopback."""

    AE_TITLE = "RESEARCH"

    def __init__(self, folder: Path, extra: dict[str, Any] | None = None,
                 dicomweb_user: tuple[str, str] | None = None) -> None:
        """``dicomweb_user`` (name, password) loads the DICOMweb plugin (STOW-RS at
        ``dicomweb_url``) and makes every HTTP request need that user's basic credentials."""
        self.folder = folder
        self.authorization: str | None = None
        self.dicom_port = free_port()
        self.http_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)
        settings = {
            "Name": "dmask-tests", "StorageDirectory": str(folder / "storage"),
            "IndexDirectory": str(folder / "storage"), "Plugins": [],
            "DicomAet": self.AE_TITLE, "DicomPort": self.dicom_port,
            "HttpPort": self.http_port, "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False, "DicomCheckCalledAet": True,
            "DicomAlwaysAllowStore": True, "DicomScpTimeout": 30,
            "DicomModalities": {"dmask": ["DMASK", "127.0.0.1", 104]},
            "StableAge": 1, "LogExportedResources": False, "SaveJobs": False,
        }
        if dicomweb_user is not None:
            if not DICOMWEB_PLUGIN.exists():
                pytest.skip("the Orthanc DICOMweb plugin (orthanc-dicomweb) is not installed")
            settings.update({"Plugins": [str(DICOMWEB_PLUGIN)],
                             "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
                             "AuthenticationEnabled": True,
                             "RegisteredUsers": {dicomweb_user[0]: dicomweb_user[1]}})
            self.authorization = "Basic " + base64.b64encode(":".join(dicomweb_user).encode()).decode()
        settings.update(extra or {})
        self.config = folder / "orthanc.json"
        self.config.write_text(json.dumps(settings, indent=1))

    def start(self) -> None:
        log = open(self.folder / "orthanc.log", "ab")
        self.process = subprocess.Popen([ORTHANC, str(self.config)], env=PEER_ENV, stdout=log,
                                        stderr=subprocess.STDOUT)
        wait_until(self._answers, 30, "Orthanc to answer over HTTP")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                # Orthanc 1.10 can linger ~20 s in its DICOM server shutdown; its index is
                # SQLite, so a kill after a short grace period loses nothing it acknowledged.
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def _answers(self) -> bool:
        try:
            self.get("/system")
            return True
        except (urllib.error.URLError, ConnectionError):
            return False

    @property
    def dicomweb_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/dicom-web"

    def get(self, path: str) -> Any:
        request = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}")
        if self.authorization is not None:
            request.add_header("Authorization", self.authorization)
        with urllib.request.urlopen(request, timeout=10) as r:
            body = r.read()
        return json.loads(body) if r.headers.get_content_type() == "application/json" else body

    def instance_count(self) -> int:
        return int(self.get("/statistics")["CountInstances"])

    def instances(self) -> list[dict[str, Any]]:
        """Every stored instance's main tags (``/instances?expand``)."""
        return self.get("/instances?expand")

    def tags(self, orthanc_id: str) -> dict[str, Any]:
        return self.get(f"/instances/{orthanc_id}/simplified-tags")

    def file(self, orthanc_id: str) -> bytes:
        return self.get(f"/instances/{orthanc_id}/file")


class DmaskServer:
    """``dmask serve`` as a separate process, with a configuration written for the test."""

    def __init__(self, folder: Path, settings: dict[str, Any], role: str = "all") -> None:
        self.folder = folder
        self.role = role
        folder.mkdir(parents=True, exist_ok=True)
        write_key(Path(settings["secret"]["file"]))
        self.port = settings["listener"]["port"]
        self.metrics_port = settings["metrics"]["port"]
        self.config = folder / "gateway.yaml"
        self.write_config(settings)
        self.process: subprocess.Popen[bytes] | None = None
        self.log = folder / "serve.log"

    def write_config(self, settings: dict[str, Any]) -> None:
        self.settings = settings
        self.config.write_text(yaml.safe_dump(settings, sort_keys=False))

    def start(self, *, wait_ready: bool = True) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([str(DMASK), "serve", "--config", str(self.config),
                                             "--role", self.role],
                                            cwd=self.folder, stdout=log, stderr=subprocess.STDOUT,
                                            env=PEER_ENV)
        if wait_ready:
            wait_until(self.ready, 60, "dmask serve to be ready")

    def ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            pytest.fail(f"dmask serve exited with {self.process.returncode}:\n"
                        + why_it_stopped(self.log.read_text(errors="replace")))
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/readyz",
                                        timeout=2) as reply:
                return reply.status == 200
        except (urllib.error.URLError, ConnectionError):
            return False

    def signal(self, signum: int) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signum)

    def kill(self) -> None:
        """SIGKILL, as a power cut or the OOM killer would."""
        self.signal(signal.SIGKILL)
        assert self.process is not None
        self.process.wait()
        self.process = None

    def stop(self) -> int:
        """SIGTERM and wait for the drain; return the exit status."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.signal(signal.SIGTERM)
        try:
            code = self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.kill()
            code = -9
        self.process = None
        return code

    def metric(self, name: str) -> float:
        """Sum of a Prometheus metric's samples (all label values)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                    timeout=5) as reply:
            text = reply.read().decode()
        pattern = re.compile(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", re.M)
        return sum(float(value) for _, value in pattern.findall(text))

    def command(self, *args: str | Path) -> str:
        """The output of a ``dmask`` admin command run on this gateway's configuration; a
        command that fails fails the test."""
        result = subprocess.run([str(DMASK), *map(str, args), "--config", str(self.config)],
                                cwd=self.folder, capture_output=True, text=True, env=PEER_ENV)
        if result.returncode != 0:
            pytest.fail(f"dmask {' '.join(map(str, args))} exited with {result.returncode}:\n"
                        + result.stdout + result.stderr)
        return result.stdout

    def spool_counts(self) -> dict[str, int]:
        """Jobs per state, from ``dmask queue`` (the admin's view)."""
        counts: dict[str, int] = {}
        for line in self.command("queue").splitlines():
            state, _reason, count = line.split()
            counts[state] = counts.get(state, 0) + int(count)
        return counts


def why_it_stopped(log: str, tail_lines: int = 8) -> str:
    """What a peer's log says about its end: its ERROR and CRITICAL records first (JSON lines,
    with their exceptions), then its last lines, where ``dmask serve`` prints the reason of a
    failed start. Native libraries (mediapipe) log many lines of their own; the record that
    matters would be lost among them in a plain tail."""
    errors = []
    for line in log.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("level") in ("ERROR", "CRITICAL"):
            errors.append(f"{record['level']} {record.get('logger', '')}: {record.get('message', '')}"
                          + (f"\n{record['exception']}" if record.get("exception") else ""))
    tail = "\n".join(line[:500] for line in log.splitlines()[-tail_lines:])
    return "\n".join(["error records:", *(errors or ["(none)"]), "last lines of the log:", tail])


def gateway_settings(folder: Path, destinations: dict[str, Any],
                     routes: list[dict[str, Any]] | None = None,
                     profiles: dict[str, Any] | None = None, workers: int = 2) -> dict[str, Any]:
    """A gateway configuration for tests: loopback listener, spool in ``folder``."""
    names = list(destinations)
    return {
        "listener": {"ae_title": "DMASK", "host": "127.0.0.1", "port": free_port(),
                     "allowed_callers": [{"ae_title": "CAMERA1"}, {"ae_title": "BENCH"}],
                     "max_associations": 20},
        "spool": {"path": str(folder / "spool"), "min_free_bytes": 0},
        "destinations": destinations,
        "profiles": profiles or {"face-photos": {}, "tags-only": {"mask": None}},
        "routes": routes or [
            {"name": "secondary-capture-tags-only", "match": {"modality": "OT"},
             "profile": "tags-only", "destinations": names},
            {"name": "photos", "match": {"calling_ae_title": ["CAMERA1", "BENCH"]},
             "profile": "face-photos", "destinations": names},
        ],
        "workers": {"count": workers},
        "logging": {"format": "json", "level": "INFO"},
        "metrics": {"host": "127.0.0.1", "port": free_port()},
        "secret": {"file": str(folder / "pseudonym.key")},
    }


def on_postgresql(settings: dict[str, Any], dsn_file: Path, payloads: Path,
                  **spool: Any) -> dict[str, Any]:
    """A gateway configuration with its spool moved to a PostgreSQL queue (the DSN read from
    ``dsn_file``) and payloads in the shared folder ``payloads``; the spool's ``path`` stays,
    as the node's local folder. ``spool`` sets more of the section (``lease``)."""
    settings["spool"].update({"backend": "postgresql", "dsn": {"file": str(dsn_file)},
                              "payloads": {"type": "folder", "path": str(payloads)}, **spool})
    return settings


def orthanc_destination(orthanc: Orthanc, **retry: float) -> dict[str, Any]:
    """A ``dicom`` destination for the Orthanc fixture, with a fast retry policy for tests."""
    return {"type": "dicom", "ae_title": Orthanc.AE_TITLE, "host": "127.0.0.1",
            "port": orthanc.dicom_port, "connect_timeout": 5,
            "retry": {"initial_delay": 0.5, "max_delay": 2, "multiplier": 2,
                      "max_age": 600, **retry}}


def storescu(port: int, files: Iterable[Path], *, calling: str = "CAMERA1",
             called: str = "DMASK", extra: Iterable[str] = ()) -> subprocess.CompletedProcess:
    """Send files with dcmtk's storescu (verbose, so each response can be read back)."""
    if STORESCU is None:
        pytest.skip("dcmtk storescu is not installed")
    command = [STORESCU, "-v", "-aet", calling, "-aec", called, *extra, "127.0.0.1", str(port),
               *map(str, files)]
    return subprocess.run(command, capture_output=True, text=True, env=PEER_ENV, timeout=600)


def acknowledged(result: subprocess.CompletedProcess) -> list[str]:
    """The files storescu saw answered with Success, in order (from its verbose log)."""
    done: list[str] = []
    current: str | None = None
    for line in (result.stdout + result.stderr).splitlines():
        sending = re.search(r"Sending file: (.+)$", line)
        if sending:
            current = sending.group(1).strip()
        elif "Received Store Response (Success)" in line and current is not None:
            done.append(current)
            current = None
    return done


def echoscu(port: int, calling: str, called: str = "DMASK") -> subprocess.CompletedProcess:
    if ECHOSCU is None:
        pytest.skip("dcmtk echoscu is not installed")
    return subprocess.run([ECHOSCU, "-v", "-aet", calling, "-aec", called, "127.0.0.1", str(port)],
                          capture_output=True, text=True, env=PEER_ENV, timeout=60)
