"""What must not stop the listener: a full spool disk, a reload that cannot bind, a repeated UID."""

from __future__ import annotations

import json
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.uid import SecondaryCaptureImageStorage, generate_uid

from tests.support.instances import photo_instance, write
from tests.support.loopback import free_port, http_get
from tests.support.peers import acknowledged, echoscu, gateway_settings, storescu, wait_until
from tests.support.photos import photo, resized
from tests.support.small_disk import fill, small_disk

#: Tags-only secondary captures of about 40 KB (the default test routes send Modality OT there).
SMALL_PIXELS = 13_000


def _tags_only_files(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    image = resized(photo("camera"), SMALL_PIXELS)
    files = []
    for number in range(1, count + 1):
        ds = photo_instance(image, sop_class_uid=SecondaryCaptureImageStorage)
        ds.InstanceNumber = number
        files.append(write(ds, folder / f"{number:04d}.dcm"))
    return files


def _log_records(server) -> list[dict]:
    return [json.loads(line) for line in server.log.read_text().splitlines()
            if line.startswith("{")]


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """The spool's own 8 MiB file system."""
    with small_disk(tmp_path / "disk", 8 << 20) as folder:
        yield folder


def test_a_full_spool_disk_refuses_then_accepts_again_and_loses_nothing(
        tmp_path: Path, disk: Path, dmask_server) -> None:
    out = tmp_path / "out"
    settings = gateway_settings(tmp_path, {"out": {"type": "folder", "path": str(out)}})
    # Done jobs keep their originals for the test's length: the purge that deletes them writes
    # to the spool's database, and once the disk is filled it would take the room left for the
    # next instance's bytes before they arrive (then the transfer aborts instead of a refusal).
    settings["spool"] = {"path": str(disk / "spool"), "min_free_bytes": 0, "retention": 3600}
    server = dmask_server(settings)
    files = _tags_only_files(tmp_path / "in", 40)
    acked = set(acknowledged(storescu(server.port, files[:3])))
    assert len(acked) == 3

    wait_until(lambda: server.spool_counts() == {"done": 3}, 60, "the first jobs done")

    # Room for the next instance's bytes, not for recording it: the spool's disk runs out.
    filler = fill(disk, leave=60_000)
    acked |= set(acknowledged(storescu(server.port, files[3:])))
    assert len(acked) == 3, "a full disk took an instance"
    assert server.metric("dmask_refused_instances_total") >= 1
    wait_until(lambda: http_get(server.metrics_port, "/readyz")[0] == 503, 20,
               "the gateway to say it is not ready")
    assert server.process.poll() is None, "serve exited on a full disk"

    # A restart while the disk is still full: it waits, not ready, and does not exit.
    assert server.stop() == 0
    fill(disk)
    server.start(wait_ready=False)
    time.sleep(5)
    assert server.process.poll() is None, "serve exited when started on a full disk"
    assert not server.ready()

    filler.unlink()  # space freed, no other step
    wait_until(server.ready, 60, "the gateway to be ready again")
    deadline = time.monotonic() + 120
    pending = [str(path) for path in files if str(path) not in acked]
    while pending and time.monotonic() < deadline:  # as a modality re-sends what failed
        acked |= set(acknowledged(storescu(server.port, pending)))
        pending = [path for path in pending if path not in acked]
    assert not pending
    wait_until(lambda: server.spool_counts() == {"done": len(files)}, 120, "every job done")
    assert len(list(out.iterdir())) == len(files)
    assert server.process.poll() is None
    messages = {record["message"] for record in _log_records(server)}
    assert any("spool disk full" in message or "disk is full" in message for message in messages)


def test_a_reload_that_cannot_bind_keeps_the_running_configuration(tmp_path: Path,
                                                                  dmask_server) -> None:
    settings = gateway_settings(tmp_path, {"out": {"type": "folder", "path": str(tmp_path / "out")}})
    server = dmask_server(settings)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", free_port()))
        taken.listen()
        settings["listener"]["port"] = taken.getsockname()[1]
        settings["listener"]["allowed_callers"].append({"ae_title": "NEWCAMERA"})
        server.write_config(settings)
        server.signal(signal.SIGHUP)
        wait_until(lambda: any(r["message"].startswith("configuration reload failed")
                               for r in _log_records(server)), 20, "the failed reload")
    (failure,) = [r for r in _log_records(server)
                  if r["message"].startswith("configuration reload failed")]
    assert "Address already in use" in failure["error"]
    assert server.process.poll() is None
    assert echoscu(server.port, "CAMERA1").returncode == 0, "the old listener stopped"
    assert echoscu(server.port, "NEWCAMERA").returncode != 0, "half of the new config applied"
    assert server.ready()


def test_a_repeated_uid_with_other_content_is_kept_beside_the_first(tmp_path: Path,
                                                                   dmask_server) -> None:
    out = tmp_path / "out"
    server = dmask_server(gateway_settings(tmp_path, {"out": {"type": "folder", "path": str(out)}}))
    image = resized(photo("camera"), SMALL_PIXELS)
    uid = generate_uid()
    first = photo_instance(image, sop_class_uid=SecondaryCaptureImageStorage, sop_instance_uid=uid)
    second = photo_instance(image, sop_class_uid=SecondaryCaptureImageStorage, sop_instance_uid=uid)
    second.InstanceNumber = 2
    files = [write(first, tmp_path / "first.dcm"), write(second, tmp_path / "second.dcm")]
    assert len(acknowledged(storescu(server.port, files))) == 2
    wait_until(lambda: server.spool_counts() == {"done": 2}, 60, "both jobs done")
    names = {path.name for path in out.iterdir()}
    stem = min(names, key=len).removesuffix(".dcm")
    assert names == {f"{stem}.dcm", f"{stem}-2.dcm"}
    assert server.metric("dmask_duplicate_instances_total") == 1
    warnings = [r for r in _log_records(server) if "SOP Instance UID" in r["message"]]
    assert len(warnings) == 1 and warnings[0]["policy"] == "keep-both" and "job" in warnings[0]
    assert uid not in server.log.read_text()

    # The first one again, byte for byte: idempotent, no duplicate.
    assert len(acknowledged(storescu(server.port, files[:1]))) == 1
    wait_until(lambda: server.spool_counts() == {"done": 3}, 60, "the re-sent job done")
    assert len(list(out.iterdir())) == 2
    assert server.metric("dmask_duplicate_instances_total") == 1
