"""The STOW-RS endpoint against HTTP clients on loopback: who may store, what is taken, what
the response says, and that a refused request admits nothing."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.encaps import encapsulate
from pydicom.uid import generate_uid

from gateway.codec.pixels import DECODABLE_TRANSFER_SYNTAXES
from gateway.config import Listener, StowListener
from gateway.ingest.stow import StowReceiver
from gateway.store.queue import JobState
from gateway.store.sqlite_spool import FolderSpool
from tests.support.certificates import make_tls_files
from tests.support.dicomweb_peers import (
    FAILED_SOP_SEQUENCE,
    REFERENCED_SOP_SEQUENCE,
    multipart_body,
    post_files,
    post_studies,
    sequence_uids,
)
from tests.support.instances import photo_instance, write
from tests.support.loopback import free_port
from tests.support.photos import photo, resized

TOKEN = "camera-token-0123456789"
SOP_CLASSES = Listener.model_validate({"allowed_callers": [{"ae_title": "X"}]}).sop_classes


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[FolderSpool]:
    spool = FolderSpool(tmp_path / "spool")
    yield spool
    spool.close()


def _start(spool: FolderSpool, tmp_path: Path, **overrides: object) -> tuple[StowReceiver, str]:
    token = tmp_path / "client.token"
    token.write_text(TOKEN + "\n")
    settings = StowListener.model_validate({
        "host": "127.0.0.1", "port": free_port(), "base_path": "/dicomweb",
        "clients": [{"name": "WEBCAM", "token": {"file": str(token)}}], **overrides})
    receiver = StowReceiver(settings, spool, SOP_CLASSES, DECODABLE_TRANSFER_SYNTAXES, "DMASK")
    _, port = receiver.start()
    scheme = "https" if settings.tls else "http"
    return receiver, f"{scheme}://127.0.0.1:{port}/dicomweb/studies"


@pytest.fixture
def stow(spool: FolderSpool, tmp_path: Path) -> Iterator[str]:
    receiver, url = _start(spool, tmp_path)
    yield url
    receiver.stop()


def _study(tmp_path: Path, count: int, study_uid: str | None = None) -> list[Path]:
    study_uid = study_uid or generate_uid()
    return [write(photo_instance(resized(photo("camera"), 2_000), study_uid=study_uid),
                  tmp_path / f"in{number}.dcm") for number in range(count)]


def test_a_study_is_admitted_and_answered_with_its_instances(tmp_path: Path, spool: FolderSpool,
                                                             stow: str) -> None:
    files = _study(tmp_path, 3)
    status, kind, body = post_files(stow, files, TOKEN)
    assert (status, kind) == (200, "application/dicom+json")
    uids = {str(dcmread(path).SOPInstanceUID) for path in files}
    assert set(sequence_uids(body, REFERENCED_SOP_SEQUENCE)) == uids
    assert FAILED_SOP_SEQUENCE not in body.decode()
    jobs = spool.jobs(JobState.RECEIVED)
    assert [(job.calling_ae, job.called_ae) for job in jobs] == [("WEBCAM", "DMASK")] * 3
    assert sorted(spool.original(job) for job in jobs) == sorted(path.read_bytes() for path in files)


def test_the_study_in_the_url_must_be_the_instances_study(tmp_path: Path, spool: FolderSpool,
                                                          stow: str) -> None:
    study = generate_uid()
    files = _study(tmp_path, 1, study) + [write(photo_instance(resized(photo("camera"), 2_000)),
                                                tmp_path / "other.dcm")]
    status, _, body = post_files(f"{stow}/{study}", files, TOKEN)
    assert status == 202
    assert list(sequence_uids(body, FAILED_SOP_SEQUENCE).values()) == [0xA900]
    assert len(spool.jobs()) == 1


@pytest.mark.parametrize("token", [None, "wrong-token", TOKEN + "x"])
def test_an_unknown_client_is_401(tmp_path: Path, spool: FolderSpool, stow: str, token: str | None) -> None:
    status, _, _ = post_files(stow, _study(tmp_path, 1), token)
    assert status == 401
    assert spool.jobs() == []


def test_a_token_file_that_changes_takes_effect(tmp_path: Path, spool: FolderSpool, stow: str) -> None:
    (tmp_path / "client.token").write_text("rotated-token-987654\n")
    assert post_files(stow, _study(tmp_path, 1), TOKEN)[0] == 401
    assert post_files(stow, _study(tmp_path, 1), "rotated-token-987654")[0] == 200


def test_a_non_dicom_part_fails_on_its_own(tmp_path: Path, spool: FolderSpool, stow: str) -> None:
    files = _study(tmp_path, 1)
    content_type, body = multipart_body([("application/dicom", files[0].read_bytes()),
                                         ("application/dicom", b"this is not DICOM"),
                                         ("text/plain", b"hello")])
    status, _, reply = post_studies(stow, body, content_type, TOKEN)
    assert status == 202
    assert len(sequence_uids(reply, REFERENCED_SOP_SEQUENCE)) == 1
    assert b'"00081197": {"vr": "US", "Value": [49152]}' in reply  # 0xC000, twice
    assert reply.count(b"49152") == 2
    content_type, body = multipart_body([("application/dicom", b"DICM" * 100)])
    assert post_studies(stow, body, content_type, TOKEN)[0] == 409
    assert len(spool.jobs()) == 1
    assert list(spool.incoming_dir().iterdir()) == []


def test_a_sop_class_or_syntax_the_listener_refuses_fails(tmp_path: Path, spool: FolderSpool,
                                                          stow: str) -> None:
    ct = photo_instance(resized(photo("camera"), 2_000), sop_class_uid="1.2.840.10008.5.1.4.1.1.2")
    j2k_part2 = photo_instance(resized(photo("camera"), 2_000))
    j2k_part2.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.92"
    j2k_part2.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(60)])
    files = [write(ct, tmp_path / "ct.dcm"), write(j2k_part2, tmp_path / "j2k.dcm")]
    status, _, body = post_files(stow, files, TOKEN)
    assert status == 409
    assert sorted(sequence_uids(body, FAILED_SOP_SEQUENCE).values()) == [0x0122, 0xC122]


@pytest.mark.parametrize("content_type", [
    "application/dicom", "multipart/related; type=\"application/dicom+json\"; boundary=x",
    "multipart/mixed; boundary=x", "multipart/related; type=\"application/dicom\""])
def test_other_content_types_are_415(tmp_path: Path, stow: str, content_type: str) -> None:
    _, body = multipart_body([("application/dicom", _study(tmp_path, 1)[0].read_bytes())])
    assert post_studies(stow, body, content_type, TOKEN)[0] == 415


def test_an_oversized_body_is_413_before_it_is_read(tmp_path: Path, spool: FolderSpool) -> None:
    receiver, url = _start(spool, tmp_path, max_request_bytes=10_000)
    try:
        status, _, _ = post_files(url, _study(tmp_path, 2), TOKEN)
    finally:
        receiver.stop()
    assert status == 413
    assert spool.jobs() == []


def _raw_request(url: str, body: bytes, content_type: str, declared: int, shut: bool) -> bytes:
    """Send a request by hand (a body shorter than declared, then maybe half-close); the reply."""
    host, port = url.split("//")[1].split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"POST /dicomweb/studies HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
                     f"Authorization: Bearer {TOKEN}\r\nContent-Length: {declared}\r\n\r\n".encode() + body)
        if shut:
            sock.shutdown(socket.SHUT_WR)
        return sock.recv(65536)


def test_a_truncated_body_is_400_and_admits_nothing(tmp_path: Path, spool: FolderSpool, stow: str) -> None:
    files = _study(tmp_path, 2)
    content_type, body = multipart_body([("application/dicom", path.read_bytes()) for path in files])
    without_close = body[:body.rindex(b"--", 0, len(body) - 4) - 2]
    assert _raw_request(stow, without_close, content_type, len(without_close), False).startswith(
        b"HTTP/1.1 400")
    cut = body[: len(body) // 2]
    assert _raw_request(stow, cut, content_type, len(body), True).startswith(b"HTTP/1.1 400")
    assert spool.jobs() == []
    assert list(spool.incoming_dir().iterdir()) == []


def test_a_client_certificate_identifies_a_client(tmp_path: Path, spool: FolderSpool) -> None:
    tls = make_tls_files(tmp_path / "tls")
    receiver, url = _start(spool, tmp_path, tls={
        "certificate": str(tls.server_cert), "private_key": str(tls.server_key),
        "ca_certificates": str(tls.ca)},
        clients=[{"name": "SLITLAMP", "certificate_common_name": "dmask test client"}])
    context = ssl.create_default_context(cafile=str(tls.ca))
    context.load_cert_chain(str(tls.client_cert), str(tls.client_key))
    content_type, body = multipart_body([("application/dicom", _study(tmp_path, 1)[0].read_bytes())])
    try:
        status, _, _ = post_studies(url, body, content_type, context=context)
    finally:
        receiver.stop()
    assert status == 200
    assert [job.calling_ae for job in spool.jobs()] == ["SLITLAMP"]
