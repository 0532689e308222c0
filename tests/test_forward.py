"""Forwarding against real pynetdicom SCPs on loopback: reuse, fallback, failures, TLS, folders."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, VLPhotographicImageStorage
from pynetdicom import AE, evt

from gateway.config import (
    DicomDestination,
    DuplicatePolicy,
    FolderDestination,
    RetryPolicy,
    TLSSettings,
)
from gateway.deliver.forward import (
    DicomSender,
    FolderSender,
    Forwarder,
    Outgoing,
    next_attempt,
    place,
)
from gateway.dicom.transport import ssl_context
from gateway.errors import DuplicateInstance, ForwardError
from tests.support.certificates import make_tls_files
from tests.support.instances import photo_instance, write
from tests.support.loopback import free_port
from tests.support.photos import photo, resized


class RecordingSCP:
    """A storage SCP that records associations and datasets and answers a chosen status."""

    def __init__(self, syntaxes: list[str], status: int = 0x0000, tls=None,
                 maximum_pdu_size: int = 16382, abort_first: bool = False) -> None:
        self.associations = 0
        self.received = []
        self.status = status
        self.abort_first = abort_first
        self.port = free_port()
        self.ae = AE(ae_title="PACS")
        self.ae.maximum_pdu_size = maximum_pdu_size
        self.ae.add_supported_context(VLPhotographicImageStorage, syntaxes)
        self.server = self.ae.start_server(
            ("127.0.0.1", self.port), block=False, ssl_context=tls,
            evt_handlers=[(evt.EVT_ACCEPTED, self._accepted), (evt.EVT_C_STORE, self._store)])

    def _accepted(self, event) -> None:
        self.associations += 1

    def _store(self, event) -> int:
        if self.abort_first:
            self.abort_first = False
            event.assoc.abort()
            return 0xC000
        ds = event.dataset
        ds.file_meta = event.file_meta
        self.received.append(ds)
        return self.status

    def stop(self) -> None:
        self.server.shutdown()


def _destination(port: int, tls: TLSSettings | None = None) -> DicomDestination:
    return DicomDestination(type="dicom", ae_title="PACS", host="127.0.0.1", port=port,
                            connect_timeout=2, dimse_timeout=10, tls=tls)


def _outgoing(tmp_path: Path, name: str, syntax: str = ExplicitVRLittleEndian,
              pixels: int = 4096) -> Outgoing:
    ds = photo_instance(resized(photo("astronaut"), pixels))
    if syntax != ExplicitVRLittleEndian:
        ds.compress(syntax)
    path = write(ds, tmp_path / f"{name}.dcm")
    return Outgoing(path, ds.SOPClassUID, ds.SOPInstanceUID, syntax)


def _send_then_stop(scp: RecordingSCP, outgoing: Outgoing) -> None:
    """Send one instance with a fresh sender, release, and stop the SCP whatever happened."""
    try:
        sender = DicomSender(_destination(scp.port), "DMASK")
        sender.send(outgoing)
        sender.close()
    finally:
        scp.stop()


@pytest.fixture
def scp() -> Iterator[RecordingSCP]:
    server = RecordingSCP([ExplicitVRLittleEndian, RLELossless])
    yield server
    server.stop()


def test_association_is_reused_across_instances(tmp_path: Path, scp: RecordingSCP) -> None:
    sender = DicomSender(_destination(scp.port), "DMASK")
    for index in range(3):
        sender.send(_outgoing(tmp_path, f"i{index}"))
    sender.close()
    assert scp.associations == 1 and len(scp.received) == 3


def test_compressed_instance_keeps_its_syntax_when_accepted(tmp_path: Path,
                                                            scp: RecordingSCP) -> None:
    sender = DicomSender(_destination(scp.port), "DMASK")
    sender.send(_outgoing(tmp_path, "rle", RLELossless))
    sender.close()
    assert scp.received[0].file_meta.TransferSyntaxUID == RLELossless


def test_falls_back_to_uncompressed_when_refused(tmp_path: Path) -> None:
    scp = RecordingSCP([ExplicitVRLittleEndian])
    outgoing = _outgoing(tmp_path, "rle", RLELossless)
    _send_then_stop(scp, outgoing)
    (received,) = scp.received
    assert received.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert received.PixelData == dcmread(outgoing.path).pixel_array.tobytes()


def test_instance_larger_than_the_peers_pdu_arrives_whole(tmp_path: Path) -> None:
    """The data set goes out in fragments of the size the peer accepts (here 16 kB)."""
    scp = RecordingSCP([ExplicitVRLittleEndian], maximum_pdu_size=16384)
    outgoing = _outgoing(tmp_path, "large", pixels=65536)
    _send_then_stop(scp, outgoing)
    (received,) = scp.received
    sent = dcmread(outgoing.path)
    assert len(sent.PixelData) > 3 * 16384
    assert received.PixelData == sent.PixelData and received.SOPInstanceUID == sent.SOPInstanceUID


def test_association_aborted_mid_store_is_replaced_once(tmp_path: Path) -> None:
    scp = RecordingSCP([ExplicitVRLittleEndian], abort_first=True)
    _send_then_stop(scp, _outgoing(tmp_path, "again"))
    assert scp.associations == 2 and len(scp.received) == 1


def test_failure_status_and_unreachable_raise(tmp_path: Path) -> None:
    scp = RecordingSCP([ExplicitVRLittleEndian], status=0xA700)
    try:
        with pytest.raises(ForwardError, match="0xA700"):
            DicomSender(_destination(scp.port), "DMASK").send(_outgoing(tmp_path, "x"))
    finally:
        scp.stop()
    with pytest.raises(ForwardError, match="unreachable|aborted"):
        DicomSender(_destination(free_port()), "DMASK").send(_outgoing(tmp_path, "y"))


def test_tls_destination(tmp_path: Path) -> None:
    files = make_tls_files(tmp_path / "tls")
    server_tls = TLSSettings(certificate=files.server_cert, private_key=files.server_key,
                             ca_certificates=files.ca)
    scp = RecordingSCP([ExplicitVRLittleEndian], tls=ssl_context(server_tls, server_side=True))
    try:
        client = TLSSettings(certificate=files.client_cert, private_key=files.client_key,
                             ca_certificates=files.ca)
        sender = DicomSender(_destination(scp.port, client), "DMASK")
        sender.send(_outgoing(tmp_path, "tls"))
        sender.close()
        assert len(scp.received) == 1
        # Without a client certificate the listener (require_peer_certificate) refuses.
        plain = DicomSender(_destination(scp.port), "DMASK")
        with pytest.raises(ForwardError):
            plain.send(_outgoing(tmp_path, "plain"))
    finally:
        scp.stop()


def test_folder_destination_writes_atomically(tmp_path: Path) -> None:
    outgoing = _outgoing(tmp_path, "f")
    forwarder = Forwarder({"out": FolderDestination(type="folder", path=tmp_path / "out")}, "DMASK")
    forwarder.send("out", outgoing)
    assert forwarder.send("out", outgoing) is None  # the same instance again: idempotent
    (written,) = (tmp_path / "out").iterdir()
    assert written.name == f"{outgoing.sop_instance_uid}.dcm"
    assert written.read_bytes() == outgoing.path.read_bytes()
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    with pytest.raises(ForwardError, match="no longer configured"):
        forwarder.send("gone", outgoing)
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the folder should be")
    with pytest.raises(ForwardError):
        FolderSender(FolderDestination(type="folder", path=blocked)).send(outgoing)


UID = "2.25.1234"


def _placed(folder: Path, content: bytes, policy: DuplicatePolicy) -> DuplicatePolicy | None:
    """Place an instance with ``content`` under :data:`UID`, as the folder sender would."""
    folder.mkdir(exist_ok=True)
    written = folder / ".written.tmp"
    written.write_bytes(content)
    try:
        return place(written, folder, UID, policy)
    finally:
        written.unlink(missing_ok=True)


def _folder(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


@pytest.mark.parametrize("policy", list(DuplicatePolicy))
def test_the_same_instance_again_is_no_duplicate(tmp_path: Path, policy: DuplicatePolicy) -> None:
    assert _placed(tmp_path, b"first", policy) is None
    assert _placed(tmp_path, b"first", policy) is None
    assert _folder(tmp_path) == {f"{UID}.dcm": b"first"}


def test_keep_both_numbers_each_other_content_and_knows_every_copy(tmp_path: Path) -> None:
    keep_both = DuplicatePolicy.KEEP_BOTH
    assert _placed(tmp_path, b"first", keep_both) is None
    assert _placed(tmp_path, b"second", keep_both) is keep_both
    assert _placed(tmp_path, b"third", keep_both) is keep_both
    assert _placed(tmp_path, b"second", keep_both) is None  # re-sent: already there
    assert _folder(tmp_path) == {f"{UID}-2.dcm": b"second", f"{UID}-3.dcm": b"third",
                                 f"{UID}.dcm": b"first"}


def test_keep_first_and_replace(tmp_path: Path) -> None:
    assert _placed(tmp_path / "a", b"first", DuplicatePolicy.KEEP_FIRST) is None
    assert _placed(tmp_path / "a", b"second", DuplicatePolicy.KEEP_FIRST) is DuplicatePolicy.KEEP_FIRST
    assert _folder(tmp_path / "a") == {f"{UID}.dcm": b"first"}
    assert _placed(tmp_path / "r", b"first", DuplicatePolicy.REPLACE) is None
    assert _placed(tmp_path / "r", b"second", DuplicatePolicy.REPLACE) is DuplicatePolicy.REPLACE
    assert _folder(tmp_path / "r") == {f"{UID}.dcm": b"second"}


def test_quarantine_policy_raises_and_leaves_the_folder(tmp_path: Path) -> None:
    assert _placed(tmp_path, b"first", DuplicatePolicy.QUARANTINE) is None
    with pytest.raises(DuplicateInstance) as caught:
        _placed(tmp_path, b"second", DuplicatePolicy.QUARANTINE)
    assert caught.value.reason == "duplicate-instance"
    assert _folder(tmp_path) == {f"{UID}.dcm": b"first"}


def test_folder_sender_applies_its_destinations_policy(tmp_path: Path) -> None:
    first, second = _outgoing(tmp_path, "a"), _outgoing(tmp_path, "b")
    second = Outgoing(second.path, second.sop_class_uid, first.sop_instance_uid,
                      second.transfer_syntax_uid)
    sender = FolderSender(FolderDestination(type="folder", path=tmp_path / "out"))
    assert sender.duplicates is DuplicatePolicy.KEEP_BOTH  # the default loses nothing
    assert sender.send(first) is None
    assert sender.send(second) is DuplicatePolicy.KEEP_BOTH
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == [
        f"{first.sop_instance_uid}-2.dcm", f"{first.sop_instance_uid}.dcm"]


def test_folder_destination_removes_what_a_dead_writer_left(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = out / f".2.25.1.{dead.pid}.tmp"
    live = out / f".2.25.2.{os.getpid()}.tmp"
    stale.write_bytes(b"half an instance")
    live.write_bytes(b"being written")
    FolderSender(FolderDestination(type="folder", path=out))
    assert not stale.exists() and live.exists()


def test_backoff_grows_then_dead_letters() -> None:
    policy = RetryPolicy(initial_delay=2, max_delay=10, multiplier=2, max_age=60)
    delays = [next_attempt(policy, attempts, 1000.0, now=1000.0) - 1000.0
              for attempts in (1, 2, 3, 4, 5)]
    assert delays == [2, 4, 8, 10, 10]
    assert next_attempt(policy, 9, 1000.0, now=1055.0) == 1060.0  # capped at max age
    assert next_attempt(policy, 9, 1000.0, now=1060.0) is None


def test_reconnecting_many_times_keeps_working(tmp_path: Path) -> None:
    """Every failed round re-associates; the proposed contexts must not pile up (max 128)."""
    sender = DicomSender(_destination(free_port()), "DMASK")
    outgoing = _outgoing(tmp_path, "again")
    for _ in range(70):
        with pytest.raises(ForwardError):
            sender.send(outgoing)
