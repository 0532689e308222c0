"""TLS on both sides with the real peers: dcmtk storescu -> dmask serve -> Orthanc.

The listener requires a client certificate signed by the CA; the destination is Orthanc's DICOM
TLS (DCMTK's OpenSSL layer), which requires dmask's certificate in turn.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.uid import SecondaryCaptureImageStorage

from tests.support.certificates import TLSFiles, make_tls_files
from tests.support.instances import photo_instance, write
from tests.support.peers import (
    ORTHANC,
    Orthanc,
    acknowledged,
    gateway_settings,
    orthanc_destination,
    storescu,
    wait_until,
)
from tests.support.photos import photo, resized


@pytest.fixture
def tls_files(tmp_path: Path) -> TLSFiles:
    return make_tls_files(tmp_path / "tls")


@pytest.fixture
def tls_orthanc(tmp_path: Path, tls_files: TLSFiles) -> Iterator[Orthanc]:
    """Orthanc that accepts DICOM only over TLS, from peers with a certificate of the CA."""
    if not Path(ORTHANC).exists():
        pytest.skip("Orthanc is not installed")
    server = Orthanc(tmp_path / "orthanc", extra={
        "DicomTlsEnabled": True,
        "DicomTlsCertificate": str(tls_files.server_cert),
        "DicomTlsPrivateKey": str(tls_files.server_key),
        "DicomTlsTrustedCertificates": str(tls_files.ca),
        "DicomTlsRemoteCertificateRequired": True,
    })
    server.start()
    yield server
    server.stop()


def test_tls_from_storescu_through_dmask_to_orthanc(tmp_path: Path, tls_files: TLSFiles,
                                                    tls_orthanc: Orthanc, dmask_server) -> None:
    destination = orthanc_destination(tls_orthanc)
    destination["tls"] = {"certificate": str(tls_files.client_cert),
                          "private_key": str(tls_files.client_key),
                          "ca_certificates": str(tls_files.ca)}
    settings = gateway_settings(tmp_path, {"research": destination})
    settings["listener"]["tls"] = {"certificate": str(tls_files.server_cert),
                                   "private_key": str(tls_files.server_key),
                                   "ca_certificates": str(tls_files.ca),
                                   "require_peer_certificate": True}
    server = dmask_server(settings)
    image = resized(photo("camera"), 13_000)
    files = [write(photo_instance(image, modality="OT", sop_class_uid=SecondaryCaptureImageStorage),
                   tmp_path / f"sc{index}.dcm") for index in range(3)]

    plain = storescu(server.port, files[:1])
    assert acknowledged(plain) == []

    secure = storescu(server.port, files, extra=[
        "+tls", str(tls_files.client_key), str(tls_files.client_cert),
        "+cf", str(tls_files.ca)])
    assert len(acknowledged(secure)) == 3, secure.stderr[-2000:]
    wait_until(lambda: tls_orthanc.instance_count() == 3, 60, "Orthanc to hold the 3 instances")
