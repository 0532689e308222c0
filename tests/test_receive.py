"""The listener against real pynetdicom associations on loopback: policy, echo, store, limits."""

from __future__ import annotations

from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, VLPhotographicImageStorage
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from gateway.codec.pixels import DECODABLE_TRANSFER_SYNTAXES
from gateway.config import Listener, TLSSettings
from gateway.dicom.transport import ssl_context
from gateway.ingest.listener import Receiver
from gateway.store.queue import JobState
from gateway.store.sqlite_spool import FolderSpool
from tests.support.certificates import make_tls_files
from tests.support.instances import photo_instance
from tests.support.loopback import free_port
from tests.support.photos import photo, resized

JPEG2000_PART2 = "1.2.840.10008.1.2.4.92"  # not decodable by the pixel layer


def _listener(**overrides: object) -> Listener:
    settings: dict[str, object] = {
        "ae_title": "DMASK", "host": "127.0.0.1", "port": free_port(),
        "allowed_callers": [{"ae_title": "CAMERA1"},
                            {"ae_title": "PINNED", "hosts": ["10.9.0.0/16"]}],
    }
    settings.update(overrides)
    return Listener.model_validate(settings)


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[FolderSpool]:
    spool = FolderSpool(tmp_path / "spool")
    yield spool
    spool.close()


@pytest.fixture
def receiver(spool: FolderSpool) -> Iterator[tuple[Receiver, int]]:
    receiver = Receiver(_listener(), spool, DECODABLE_TRANSFER_SYNTAXES)
    _, port = receiver.start()
    yield receiver, port
    receiver.stop()


def _associate(port: int, calling: str, called: str = "DMASK", contexts: list | None = None):
    ae = AE(ae_title=calling)
    ae.acse_timeout = 5
    for sop_class, syntaxes in contexts or [(Verification, None)]:
        ae.add_requested_context(sop_class, syntaxes)
    return ae.associate("127.0.0.1", port, ae_title=called)


def test_allowed_caller_gets_c_echo(receiver: tuple[Receiver, int]) -> None:
    assoc = _associate(receiver[1], "CAMERA1")
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()


@pytest.mark.parametrize("calling, called, diagnostic", [
    ("INTRUDER", "DMASK", 0x03),   # unknown calling AE title
    ("PINNED", "DMASK", 0x03),     # known title from a host it is not pinned to
    ("CAMERA1", "OTHER", 0x07),    # called AE title not ours
])
def test_association_policy_rejects(receiver: tuple[Receiver, int], calling: str, called: str,
                                    diagnostic: int, caplog: pytest.LogCaptureFixture) -> None:
    assoc = _associate(receiver[1], calling, called)
    assert assoc.is_rejected
    reply = assoc.acceptor.primitive
    assert (reply.result, reply.result_source, reply.diagnostic) == (0x01, 0x01, diagnostic)


def test_c_store_is_durable_before_success(receiver: tuple[Receiver, int],
                                           spool: FolderSpool) -> None:
    ds = photo_instance(resized(photo("astronaut"), 40_000))
    assoc = _associate(receiver[1], "CAMERA1",
                       contexts=[(VLPhotographicImageStorage, [ExplicitVRLittleEndian])])
    assert assoc.send_c_store(ds).Status == 0x0000
    assoc.release()
    (job,) = spool.jobs()
    assert job.state is JobState.RECEIVED and job.calling_ae == "CAMERA1"
    original = spool.original(job)
    stored = dcmread(BytesIO(original) if isinstance(original, bytes) else original)
    assert stored.SOPInstanceUID == ds.SOPInstanceUID
    assert stored.PixelData == ds.PixelData


def test_full_spool_answers_out_of_resources(tmp_path: Path) -> None:
    spool = FolderSpool(tmp_path / "spool", max_bytes=10_000)
    receiver = Receiver(_listener(), spool, DECODABLE_TRANSFER_SYNTAXES)
    _, port = receiver.start()
    try:
        assoc = _associate(port, "CAMERA1",
                           contexts=[(VLPhotographicImageStorage, [ExplicitVRLittleEndian])])
        status = assoc.send_c_store(photo_instance(resized(photo("camera"), 40_000))).Status
        assoc.release()
    finally:
        receiver.stop()
    assert status == 0xA700
    assert spool.jobs() == [] and not list(spool.incoming_dir().iterdir())


def test_transfer_syntaxes_outside_the_pixel_layer_are_refused(
        receiver: tuple[Receiver, int]) -> None:
    assoc = _associate(receiver[1], "CAMERA1", contexts=[
        (VLPhotographicImageStorage, [JPEG2000_PART2]), (VLPhotographicImageStorage, [RLELossless])])
    accepted = {cx.transfer_syntax[0] for cx in assoc.accepted_contexts}
    assoc.release()
    assert accepted == {RLELossless}


def test_tls_listener_requires_a_client_certificate(tmp_path: Path, spool: FolderSpool) -> None:
    files = make_tls_files(tmp_path / "tls")
    listener = _listener(tls={"certificate": str(files.server_cert),
                              "private_key": str(files.server_key),
                              "ca_certificates": str(files.ca)})
    receiver = Receiver(listener, spool, DECODABLE_TRANSFER_SYNTAXES)
    _, port = receiver.start()
    try:
        client = TLSSettings(certificate=files.client_cert, private_key=files.client_key,
                             ca_certificates=files.ca)
        ae = AE(ae_title="CAMERA1")
        ae.add_requested_context(Verification)
        assoc = ae.associate("127.0.0.1", port, ae_title="DMASK",
                             tls_args=(ssl_context(client, server_side=False), "127.0.0.1"))
        assert assoc.is_established and assoc.send_c_echo().Status == 0x0000
        assoc.release()
        assert not _associate(port, "CAMERA1").is_established  # plain TCP is refused
    finally:
        receiver.stop()
