"""What an admin sees and does: probes, metrics, SIGHUP reload, the queue and requeue commands,
and why a start failed."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.support.cli import DMASK
from tests.support.instances import photo_instance, write
from tests.support.loopback import http_get
from tests.support.peers import (
    PEER_ENV,
    DmaskServer,
    acknowledged,
    echoscu,
    gateway_settings,
    storescu,
    wait_until,
)
from tests.support.photos import photo, resized


def test_probes_metrics_and_audit_trail(tmp_path: Path, dmask_server) -> None:
    settings = gateway_settings(tmp_path, {"out": {"type": "folder", "path": str(tmp_path / "out")}})
    server = dmask_server(settings)
    assert http_get(server.metrics_port, "/healthz") == (200, "ok\n")
    assert http_get(server.metrics_port, "/readyz") == (200, "ready\n")
    assert server.metric("dmask_ready") == 1
    assert 0 < server.metric("dmask_spool_free_bytes") <= shutil.disk_usage(tmp_path).total
    files = [write(photo_instance(resized(photo("retina"), 20_000)), tmp_path / "retina.dcm"),
             write(photo_instance(resized(photo("grace_hopper"), 60_000)), tmp_path / "face.dcm")]
    assert len(acknowledged(storescu(server.port, files))) == 2
    wait_until(lambda: server.metric("dmask_quarantined_instances_total") == 1
               and server.metric("dmask_forwarded_instances_total") == 1, 60, "both outcomes")
    _, text = http_get(server.metrics_port, "/metrics")
    node = socket.gethostname()  # the default node name labels every sample
    assert f'dmask_quarantined_instances_total{{node="{node}",reason="no-face"}} 1.0' in text
    assert f'dmask_stage_duration_seconds_count{{node="{node}",stage="mask"}}' in text
    server.signal(signal.SIGTERM)
    server.process.wait(60)
    events = [json.loads(line)["audit"] for line in server.log.read_text().splitlines()
              if line.startswith("{") and '"audit"' in line]
    assert sorted(e["event"] for e in events) == ["forwarded", "masked", "quarantined",
                                                  "received", "received"]
    for event in events:
        assert event["event_id"]["code"] == "110104"
    forwarded = next(e for e in events if e["event"] == "forwarded")
    ids = {obj["type"]: obj["id"] for obj in forwarded["objects"]}
    original = photo_instance(resized(photo("grace_hopper"), 1))
    assert ids["patient"] != original.PatientID and ids["study"].startswith("2.25.")


def test_sighup_reload_keeps_last_good_config(tmp_path: Path, dmask_server) -> None:
    settings = gateway_settings(tmp_path, {"out": {"type": "folder", "path": str(tmp_path / "out")}})
    server = dmask_server(settings)
    assert echoscu(server.port, "NEWCAMERA").returncode != 0

    broken = server.config.read_text().replace("max_associations: 20", "max_associations: lots")
    server.config.write_text(broken)
    server.signal(signal.SIGHUP)
    wait_until(lambda: "configuration reload refused" in server.log.read_text(), 20,
               "the broken configuration to be refused")
    assert echoscu(server.port, "CAMERA1").returncode == 0

    settings["listener"]["allowed_callers"].append({"ae_title": "NEWCAMERA"})
    server.write_config(settings)
    server.signal(signal.SIGHUP)
    wait_until(lambda: '"configuration reloaded"' in server.log.read_text(), 20, "the reload")
    wait_until(lambda: echoscu(server.port, "NEWCAMERA").returncode == 0, 20,
               "the new caller to be allowed")


def test_queue_and_requeue_commands(tmp_path: Path, dmask_server, spool_backend) -> None:
    """The admin commands on each spool backend (cluster-wide on PostgreSQL)."""
    settings = spool_backend(gateway_settings(tmp_path, {"out": {"type": "folder", "path": str(tmp_path / "out")}}))
    settings["routes"] = [{"name": "photos", "match": {"modality": "XC"},
                           "profile": "tags-only", "destinations": ["out"]},
                          {"name": "rest", "reject": True}]
    server = dmask_server(settings)
    ds = photo_instance(resized(photo("camera"), 4096), modality="OT")
    assert len(acknowledged(storescu(server.port, [write(ds, tmp_path / "ot.dcm")]))) == 1
    wait_until(lambda: server.spool_counts() == {"quarantined": 1}, 30, "the rejection")
    listing = server.command("queue", "--reason", "route-rejected")
    assert "quarantined" in listing and "CAMERA1" in listing
    settings["routes"][0]["match"] = {}
    server.write_config(settings)
    server.signal(signal.SIGHUP)
    wait_until(lambda: '"configuration reloaded"' in server.log.read_text(), 20, "the reload")
    assert server.command("requeue", "--reason", "route-rejected") == "requeued 1 job(s)\n"
    wait_until(lambda: server.spool_counts() == {"done": 1}, 30, "the requeued job")
    assert len(list((tmp_path / "out").iterdir())) == 1


def test_json_logs_hold_only_json_lines(tmp_path: Path, dmask_server) -> None:
    """mediapipe and TensorFlow Lite print to fd 2 of the workers; in json mode those lines
    come out as ``dmask.native`` records, and nothing on stderr is anything but JSON."""
    settings = gateway_settings(tmp_path, {"out": {"type": "folder", "path": str(tmp_path / "out")}},
                                workers=1)
    server = dmask_server(settings)
    face = write(photo_instance(resized(photo("grace_hopper"), 60_000)), tmp_path / "face.dcm")
    assert len(acknowledged(storescu(server.port, [face]))) == 1
    wait_until(lambda: server.metric("dmask_forwarded_instances_total") == 1, 60,
               "the masked photo")
    server.signal(signal.SIGTERM)
    assert server.process.wait(60) == 0
    records = [json.loads(line) for line in server.log.read_text().splitlines()]
    assert all(isinstance(record, dict) for record in records)
    native = [r for r in records if r["logger"] == "dmask.native"]
    assert native, "the masking worker's native output was not captured"
    assert {r["level"] for r in native} <= {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}


@pytest.mark.parametrize("section", ["listener", "metrics"])
def test_a_port_in_use_ends_the_start_with_the_reason_last(tmp_path: Path, section: str) -> None:
    settings = gateway_settings(tmp_path, {"out": {"type": "folder", "path": str(tmp_path / "out")}})
    port = settings[section]["port"]
    gateway = DmaskServer(tmp_path / "dmask", settings)  # its configuration and key, not started
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        result = subprocess.run([str(DMASK), "serve", "--config", str(gateway.config)], cwd=gateway.folder,
                                capture_output=True, text=True, env=PEER_ENV, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1] == f"cannot bind 127.0.0.1:{port}: Address already in use"
