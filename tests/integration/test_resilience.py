"""Nothing lost, nothing unmasked: PACS outage, gateway crashes and malformed input, on each
spool backend (``spool_backend``: the embedded SQLite spool, a PostgreSQL queue)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    RLELossless,
    SecondaryCaptureImageStorage,
    VLPhotographicImageStorage,
)
from pynetdicom import AE, _config

from tests.support.instances import photo_instance, write
from tests.support.peers import (
    acknowledged,
    gateway_settings,
    orthanc_destination,
    storescu,
    wait_until,
)
from tests.support.photos import photo, resized

#: Tags-only secondary captures of about 40 KB (the default test routes send Modality OT there).
SMALL_PIXELS = 13_000


def _tags_only_files(folder: Path, count: int, first_number: int = 1) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    image = resized(photo("camera"), SMALL_PIXELS)
    files = []
    for number in range(first_number, first_number + count):
        ds = photo_instance(image, sop_class_uid=SecondaryCaptureImageStorage)
        ds.InstanceNumber = number
        files.append(write(ds, folder / f"{number:04d}.dcm"))
    return files


def _instance_numbers(orthanc) -> list[int]:
    return [int(orthanc.tags(instance["ID"])["InstanceNumber"])
            for instance in orthanc.instances()]


def test_pacs_down_for_20_seconds(tmp_path: Path, orthanc, dmask_server, spool_backend) -> None:
    server = dmask_server(spool_backend(gateway_settings(tmp_path, {"research": orthanc_destination(orthanc)})))
    files = _tags_only_files(tmp_path / "in", 100)
    orthanc.stop()
    down_since = time.monotonic()
    sent = storescu(server.port, files)
    assert len(acknowledged(sent)) == 100, sent.stderr[-2000:]
    wait_until(lambda: server.metric("dmask_forward_retries_total") >= 1, 20,
               "the gateway to retry")
    time.sleep(max(0.0, 20 - (time.monotonic() - down_since)))
    assert orthanc.process is None
    orthanc.start()
    wait_until(lambda: orthanc.instance_count() == 100, 60, "100 instances in Orthanc")
    assert sorted(_instance_numbers(orthanc)) == list(range(1, 101))
    wait_until(lambda: server.spool_counts() == {"done": 100}, 10, "every job done")


def test_sigkill_twice_while_sending_and_processing(tmp_path: Path, orthanc, dmask_server,
                                                    spool_backend) -> None:
    """300 photos, masked; the gateway is killed twice; whatever storescu saw acknowledged
    reaches Orthanc exactly once and masked, and nothing is left in processing."""
    image = resized(photo("grace_hopper"), 60_000)
    files = []
    (tmp_path / "in").mkdir()
    for number in range(1, 301):
        ds = photo_instance(image)
        ds.InstanceNumber = number
        files.append(write(ds, tmp_path / "in" / f"{number:04d}.dcm"))
    server = dmask_server(spool_backend(gateway_settings(tmp_path, {"research": orthanc_destination(orthanc)})))

    acked: list[str] = []
    finished = threading.Event()

    def send() -> None:
        """Like a modality: what was not acknowledged is sent again until it is."""
        deadline = time.monotonic() + 300
        for start in range(0, len(files), 10):
            pending = [str(path) for path in files[start:start + 10]]
            while pending and time.monotonic() < deadline:
                done = acknowledged(storescu(server.port, pending))
                acked.extend(done)
                pending = [path for path in pending if path not in done]
                if pending:
                    time.sleep(0.5)
        finished.set()

    sender = threading.Thread(target=send)
    sender.start()
    for threshold in (90, 190):
        wait_until(lambda threshold=threshold: len(acked) >= threshold or finished.is_set(), 300,
                   f"{threshold} acknowledged instances")
        server.kill()
        server.start()
    sender.join()
    assert len(acked) == 300

    expected = {int(Path(path).stem) for path in acked}
    wait_until(lambda: server.spool_counts().keys() <= {"done"}, 300,
               "the spool to finish every job")
    numbers = _instance_numbers(orthanc)
    assert len(numbers) == len(set(numbers)), "an instance reached Orthanc twice"
    assert expected <= set(numbers), "an acknowledged instance never reached Orthanc"
    for instance in orthanc.instances():
        tags = orthanc.tags(instance["ID"])
        assert tags["RecognizableVisualFeatures"] == "NO"
        assert tags["PatientName"] != "Hopper^Grace^Brewster"


class _RawSender:
    """Sends files byte for byte (pynetdicom's chunked send), broken ones included."""

    def __init__(self, port: int) -> None:
        self.ae = AE(ae_title="CAMERA1")
        for sop_class in (SecondaryCaptureImageStorage, VLPhotographicImageStorage):
            for syntax in (ExplicitVRLittleEndian, JPEGBaseline8Bit, RLELossless):
                self.ae.add_requested_context(sop_class, syntax)
        self.assoc = self.ae.associate("127.0.0.1", port, ae_title="DMASK")
        assert self.assoc.is_established

    def send(self, path: Path) -> int:
        return int(self.assoc.send_c_store(path).Status)

    def close(self) -> None:
        self.assoc.release()


def _malformed(folder: Path) -> dict[str, list[Path]]:
    """200 broken instances, 40 of each kind."""
    from pydicom.dataelem import DataElement
    from pydicom.encaps import encapsulate

    folder.mkdir()
    image = resized(photo("camera"), 4096)
    kinds: dict[str, list[Path]] = {"truncated": [], "wrong-vr": [], "short-pixels": [],
                                    "bogus-syntax": [], "no-face": []}
    retina = resized(photo("retina"), 40_000)
    wrong_vrs = [(0x00100010, "US", 7), (0x00080020, "FD", 1.5), (0x00280010, "UL", 64),
                 (0x00200013, "DA", "20240101")]
    for index in range(40):
        ds = photo_instance(image, sop_class_uid=SecondaryCaptureImageStorage)
        whole = write(ds, folder / "whole.dcm").read_bytes()
        cut = folder / f"truncated{index}.dcm"
        cut.write_bytes(whole[: 400 + index * (len(whole) - 500) // 40])
        kinds["truncated"].append(cut)

        ds = photo_instance(image, sop_class_uid=SecondaryCaptureImageStorage)
        tag, vr, value = wrong_vrs[index % len(wrong_vrs)]
        ds[tag] = DataElement(tag, vr, value)
        kinds["wrong-vr"].append(write(ds, folder / f"vr{index}.dcm"))

        ds = photo_instance(image, sop_class_uid=SecondaryCaptureImageStorage)
        ds.PixelData = ds.PixelData[: len(ds.PixelData) * index // 40]
        kinds["short-pixels"].append(write(ds, folder / f"short{index}.dcm"))

        # Declared JPEG baseline or RLE, but the fragments hold raw samples.
        ds = photo_instance(image, sop_class_uid=SecondaryCaptureImageStorage)
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit if index % 2 else RLELossless
        ds.PixelData = encapsulate([ds.PixelData[: 1000 + index]])
        kinds["bogus-syntax"].append(write(ds, folder / f"syntax{index}.dcm"))

        kinds["no-face"].append(write(photo_instance(retina), folder / f"retina{index}.dcm"))
    (folder / "whole.dcm").unlink()
    return kinds


def test_malformed_inputs_fail_closed_while_valid_ones_flow(tmp_path: Path, orthanc,
                                                            dmask_server, spool_backend,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
    server = dmask_server(spool_backend(gateway_settings(tmp_path, {"research": orthanc_destination(orthanc)})))
    kinds = _malformed(tmp_path / "bad")
    valid = _tags_only_files(tmp_path / "good", 40)

    valid_acked: list[str] = []
    sender = threading.Thread(target=lambda: valid_acked.extend(
        acknowledged(storescu(server.port, valid))))
    sender.start()
    raw = _RawSender(server.port)
    statuses = {kind: [raw.send(path) for path in paths] for kind, paths in kinds.items()}
    raw.close()
    sender.join()

    accepted = sum(status == 0 for per_kind in statuses.values() for status in per_kind)
    assert all(status == 0 or 0xA700 <= status <= 0xCFFF
               for per_kind in statuses.values() for status in per_kind)
    wait_until(lambda: orthanc.instance_count() >= 40 and
               sum(v for k, v in server.spool_counts().items() if k != "done") == accepted,
               180, "valid instances forwarded and malformed ones quarantined")
    assert len(valid_acked) == 40
    assert sorted(_instance_numbers(orthanc)) == list(range(1, 41)), "a malformed one got through"
    counts = server.spool_counts()
    assert counts == {"done": 40, "quarantined": accepted}
    log = server.log.read_text()
    assert "Hopper" not in log and "PID-0451" not in log


def _workers(server) -> list[int]:
    """Process ids of the gateway's pool workers (children running the spawn entry point)."""
    pid = server.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children
            if "resource_tracker" not in Path(f"/proc/{child}/cmdline").read_text()]


def test_a_worker_killed_mid_job_loses_nothing(tmp_path: Path, dmask_server, spool_backend) -> None:
    out = tmp_path / "out"
    server = dmask_server(spool_backend(gateway_settings(tmp_path, {"out": {"type": "folder", "path": str(out)}})))
    image = resized(photo("grace_hopper"), 60_000)
    (tmp_path / "in").mkdir()
    files = [write(photo_instance(image), tmp_path / "in" / f"{n}.dcm") for n in range(30)]
    assert len(acknowledged(storescu(server.port, files))) == 30
    os.kill(_workers(server)[0], signal.SIGKILL)
    wait_until(lambda: server.spool_counts() == {"done": 30}, 120, "every job done")
    assert len(list(out.iterdir())) == 30
    assert "a worker process died" in server.log.read_text()


def test_a_worker_killed_while_idle_is_replaced(tmp_path: Path, dmask_server, spool_backend) -> None:
    out = tmp_path / "out"
    server = dmask_server(spool_backend(gateway_settings(tmp_path, {"out": {"type": "folder", "path": str(out)}})))
    for pid in _workers(server):
        os.kill(pid, signal.SIGKILL)
    files = _tags_only_files(tmp_path / "in", 5)
    assert len(acknowledged(storescu(server.port, files))) == 5
    wait_until(lambda: server.spool_counts() == {"done": 5}, 60, "every job done")
    assert len(list(out.iterdir())) == 5


def test_dead_letter_after_max_age_then_requeue(tmp_path: Path, orthanc, dmask_server,
                                                spool_backend) -> None:
    server = dmask_server(spool_backend(gateway_settings(
        tmp_path, {"research": orthanc_destination(orthanc, max_age=3)})))
    orthanc.stop()
    files = _tags_only_files(tmp_path / "in", 3)
    assert len(acknowledged(storescu(server.port, files))) == 3
    wait_until(lambda: server.spool_counts() == {"quarantined": 3}, 30, "the dead letters")
    listing = server.command("queue", "--reason", "forward-expired")
    assert len(listing.splitlines()) == 3
    orthanc.start()
    server.command("requeue", "--reason", "forward-expired")
    wait_until(lambda: orthanc.instance_count() == 3, 60, "the requeued instances in Orthanc")
    wait_until(lambda: server.spool_counts() == {"done": 3}, 10, "every job done")
