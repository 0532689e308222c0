"""DICOMweb through ``dmask serve``: STOW-RS to Orthanc's DICOMweb plugin (and to a test server
in front of it, which counts the requests), instances of several jobs sharing requests on both
spool backends, and the gateway's own STOW-RS endpoint feeding Orthanc by C-STORE."""

from __future__ import annotations

import io
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.uid import SecondaryCaptureImageStorage, generate_uid

from gateway.store.postgres_spool import upgrade_schema
from tests.support import postgres as pg_support
from tests.support.dicomweb_peers import (
    FAILED_SOP_SEQUENCE,
    REFERENCED_SOP_SEQUENCE,
    StowPeer,
    multipart_body,
    post_files,
    post_studies,
    sequence_uids,
)
from tests.support.instances import PATIENT_ID, PATIENT_NAME, photo_instance, write
from tests.support.loopback import free_port
from tests.support.peers import (
    ORTHANC,
    DmaskServer,
    Orthanc,
    acknowledged,
    gateway_settings,
    orthanc_destination,
    storescu,
    wait_until,
)
from tests.support.photos import photo, resized
from tests.support.postgres import PostgresServer

USER = ("dmask", "orthanc-password-42")
FAST_RETRY = {"initial_delay": 0.5, "max_delay": 2, "multiplier": 2, "max_age": 600}


@pytest.fixture
def dicomweb_orthanc(tmp_path: Path) -> Iterator[Orthanc]:
    """Orthanc with its DICOMweb plugin, every HTTP request behind basic authentication."""
    if not Path(ORTHANC).exists():
        pytest.skip("Orthanc is not installed")
    server = Orthanc(tmp_path / "orthanc-web", dicomweb_user=USER)
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["folder", "postgresql"])
def spool(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The spool settings of each backend: the embedded folder and SQLite, or a PostgreSQL queue
    of its own with a shared payload folder."""
    if request.param == "folder":
        yield {}
        return
    if not pg_support.available():
        pytest.skip("PostgreSQL 15 binaries (Debian postgresql-15) are not installed")
    database = PostgresServer()
    database.start()
    dsn = database.new_database()
    upgrade_schema(dsn)
    (tmp_path / "dsn").write_text(dsn)
    yield {"backend": "postgresql", "dsn": {"file": str(tmp_path / "dsn")},
           "payloads": {"type": "folder", "path": str(tmp_path / "shared")}}
    database.close()


@pytest.fixture
def peer(dicomweb_orthanc: Orthanc) -> Iterator[StowPeer]:
    """A STOW-RS server in front of that Orthanc: checks tokens, plays down, refuses once."""
    server = StowPeer(upstream=dicomweb_orthanc.dicomweb_url, upstream_auth=dicomweb_orthanc.authorization)
    yield server
    server.stop()


def _tags_only_files(folder: Path, count: int, study_uid: str | None = None) -> list[Path]:
    """Secondary capture instances (modality OT: the tags-only route), numbered from 1."""
    files = []
    for number in range(1, count + 1):
        ds = photo_instance(resized(photo("camera"), 4_000), sop_class_uid=SecondaryCaptureImageStorage,
                            study_uid=study_uid)
        ds.InstanceNumber = number
        files.append(write(ds, folder / f"sc{number}.dcm"))
    return files


def _web_destination(url: str, auth: dict[str, Any], **settings: Any) -> dict[str, Any]:
    return {"type": "dicomweb", "url": url, "auth": auth, "connect_timeout": 5, "read_timeout": 30,
            "retry": FAST_RETRY, **settings}


def test_stow_rs_destination_gets_masked_and_scrubbed_instances(tmp_path: Path, dicomweb_orthanc: Orthanc,
                                                                dmask_server) -> None:
    password = tmp_path / "orthanc.password"
    password.write_text(USER[1] + "\n")
    destination = _web_destination(dicomweb_orthanc.dicomweb_url, {
        "type": "basic", "username": USER[0], "password": {"file": str(password)}})
    server = dmask_server(gateway_settings(tmp_path, {"research": destination}))
    originals = []
    for number, name in ((1, "grace_hopper"), (2, "astronaut")):
        ds = photo_instance(resized(photo(name), 200_000))
        ds.InstanceNumber = number
        originals.append(write(ds, tmp_path / f"photo{number}.dcm"))
    assert len(acknowledged(storescu(server.port, originals))) == 2
    wait_until(lambda: dicomweb_orthanc.instance_count() == 2, 120, "2 instances in Orthanc by STOW-RS")
    for instance in dicomweb_orthanc.instances():
        result = pydicom.dcmread(io.BytesIO(dicomweb_orthanc.file(instance["ID"])))
        original = pydicom.dcmread(originals[int(result.InstanceNumber) - 1])
        assert result.SOPInstanceUID != original.SOPInstanceUID
        assert str(result.PatientName) != PATIENT_NAME and result.PatientID != PATIENT_ID
        assert result.PatientIdentityRemoved == "YES"
        assert result.RecognizableVisualFeatures == "NO"
        centre = slice(result.Rows // 3, 2 * result.Rows // 3)
        changed = abs(result.pixel_array[centre].astype(int) - original.pixel_array[centre].astype(int))
        assert changed.mean() > 20, "the face region reached the PACS unchanged"
    assert server.spool_counts() == {"done": 2}


def test_a_token_file_that_changes_mid_run_is_picked_up(tmp_path: Path, dicomweb_orthanc: Orthanc,
                                                        peer: StowPeer, dmask_server) -> None:
    token = tmp_path / "bearer.token"
    token.write_text("token-before\n")
    peer.expected_token = "token-before"
    destination = _web_destination(peer.url, {"type": "bearer", "token_file": str(token)})
    server = dmask_server(gateway_settings(tmp_path, {"research": destination}))
    first, second = _tags_only_files(tmp_path, 2)
    assert len(acknowledged(storescu(server.port, [first]))) == 1
    wait_until(lambda: dicomweb_orthanc.instance_count() == 1, 60, "the first instance in Orthanc")
    # The outside refresher writes the new token atomically; the server accepts only the new one.
    (tmp_path / "bearer.token.new").write_text("token-after\n")
    os.replace(tmp_path / "bearer.token.new", token)
    peer.expected_token = "token-after"
    assert len(acknowledged(storescu(server.port, [second]))) == 1
    wait_until(lambda: dicomweb_orthanc.instance_count() == 2, 60, "the second instance in Orthanc")
    assert peer.authorizations == ["Bearer token-before", "Bearer token-after"]
    assert server.spool_counts() == {"done": 2}


def test_a_destination_answering_503_for_20_s_loses_nothing(tmp_path: Path, dicomweb_orthanc: Orthanc,
                                                           peer: StowPeer, dmask_server) -> None:
    server = dmask_server(gateway_settings(tmp_path, {"research": _web_destination(peer.url, {"type": "none"})}))
    files = _tags_only_files(tmp_path, 6)
    peer.unavailable_until = time.monotonic() + 20
    assert len(acknowledged(storescu(server.port, files))) == 6
    wait_until(lambda: dicomweb_orthanc.instance_count() == 6, 90, "6 instances in Orthanc after the outage")
    assert time.monotonic() >= peer.unavailable_until
    assert peer.statuses.count(503) >= 6 and peer.statuses[-1] == 200
    assert server.spool_counts() == {"done": 6}
    assert server.metric("dmask_forward_retries_total") >= 6


def _batching_gateway(tmp_path: Path, peer: StowPeer, spool: dict[str, Any], dmask_server: Any,
                      cap: int) -> DmaskServer:
    """A gateway that gathers instances into requests of ``cap``, waiting up to 5 s for them
    (long enough that instances received together share requests on a loaded machine)."""
    destination = _web_destination(peer.url, {"type": "none"}, max_instances_per_request=cap, batch_wait=5)
    settings = gateway_settings(tmp_path, {"research": destination})
    settings["spool"].update(spool)
    return dmask_server(settings)


def test_instances_of_several_jobs_share_requests_up_to_the_cap(
        tmp_path: Path, dicomweb_orthanc: Orthanc, peer: StowPeer, spool: dict[str, Any], dmask_server) -> None:
    server = _batching_gateway(tmp_path, peer, spool, dmask_server, cap=3)
    assert len(acknowledged(storescu(server.port, _tags_only_files(tmp_path, 7)))) == 7
    wait_until(lambda: dicomweb_orthanc.instance_count() == 7, 90, "7 instances in Orthanc")
    sizes = [len(request) for request in peer.requests]
    assert len(sizes) < 7 and max(sizes) == 3, sizes
    sent = [uid for request in peer.requests for uid in request]
    assert len(sent) == len(set(sent)) == 7, "every instance is sent once"
    wait_until(lambda: server.spool_counts() == {"done": 7}, 20, "every job done")
    assert server.metric("dmask_forwarded_instances_total") == 7
    assert server.metric("dmask_forward_retries_total") == 0
    assert server.metric("dmask_stow_request_instances_count") == len(sizes)
    assert server.metric("dmask_stow_request_instances_sum") == 7


def test_an_instance_refused_in_a_batch_is_retried_alone(
        tmp_path: Path, dicomweb_orthanc: Orthanc, peer: StowPeer, spool: dict[str, Any], dmask_server) -> None:
    server = _batching_gateway(tmp_path, peer, spool, dmask_server, cap=3)
    peer.fail_once[2] = 0xA700  # the instance numbered 2, once
    assert len(acknowledged(storescu(server.port, _tags_only_files(tmp_path, 3)))) == 3
    wait_until(lambda: dicomweb_orthanc.instance_count() == 3, 60, "3 instances in Orthanc")
    assert [len(request) for request in peer.requests] == [3, 1], "one batch, then the refused instance"
    assert peer.requests[1][0] in peer.requests[0]
    assert peer.statuses == [202, 200]
    wait_until(lambda: server.spool_counts() == {"done": 3}, 20, "every job done")
    assert server.metric("dmask_forward_retries_total") == 1
    assert server.metric("dmask_forwarded_instances_total") == 3


def test_an_instance_refused_in_every_batch_is_dead_lettered_alone(
        tmp_path: Path, dicomweb_orthanc: Orthanc, peer: StowPeer, spool: dict[str, Any], dmask_server) -> None:
    """A destination that refuses one instance of a batch until its max age: that job alone
    becomes a dead letter (forward-expired); the batch's other jobs are done."""
    destination = _web_destination(peer.url, {"type": "none"}, max_instances_per_request=3, batch_wait=5,
                                   retry={**FAST_RETRY, "max_age": 3})
    settings = gateway_settings(tmp_path, {"research": destination})
    settings["spool"].update(spool)
    server = dmask_server(settings)
    peer.fail_always[2] = 0xA700
    assert len(acknowledged(storescu(server.port, _tags_only_files(tmp_path, 3)))) == 3
    wait_until(lambda: server.spool_counts() == {"done": 2, "quarantined": 1}, 60,
               "two jobs done, one dead letter")
    assert dicomweb_orthanc.instance_count() == 2
    assert len(peer.requests[0]) == 3 and all(len(request) == 1 for request in peer.requests[1:])
    assert server.metric("dmask_quarantined_instances_total") == 1
    assert "forward-expired" in server.command("queue")


def test_a_batch_waiting_at_a_crash_is_sent_after_the_restart_and_at_a_stop_at_once(
        tmp_path: Path, dicomweb_orthanc: Orthanc, peer: StowPeer, dmask_server) -> None:
    """Results waiting for their batch are not yet recorded: SIGKILL then loses nothing (the jobs
    are processed again), and SIGTERM sends what waits without waiting for more."""
    destination = _web_destination(peer.url, {"type": "none"}, max_instances_per_request=3, batch_wait=60)
    server = dmask_server(gateway_settings(tmp_path, {"research": destination}))
    outputs = tmp_path / "spool" / "outputs"
    assert len(acknowledged(storescu(server.port, _tags_only_files(tmp_path, 2)))) == 2
    wait_until(lambda: len(list(outputs.glob("*.dcm"))) == 2, 60, "2 results waiting for their batch")
    server.kill()
    assert peer.requests == [] and server.spool_counts() == {"processing": 2}
    server.start()
    wait_until(lambda: len(list(outputs.glob("*.dcm"))) == 2, 60, "2 results waiting again")
    assert server.stop() == 0
    assert [len(request) for request in peer.requests] == [2]
    assert dicomweb_orthanc.instance_count() == 2
    assert server.spool_counts() == {"done": 2}


def _raw_post(port: int, head: str, body: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode() + body)
        sock.shutdown(socket.SHUT_WR)
        return sock.recv(65536)


def test_stow_rs_ingress_feeds_orthanc_and_refuses_what_it_must(tmp_path: Path, orthanc: Orthanc,
                                                               dmask_server) -> None:
    token = "ward-7-webcam-token-0042"
    (tmp_path / "client.token").write_text(token + "\n")
    settings = gateway_settings(tmp_path, {"research": orthanc_destination(orthanc)})
    stow_port = free_port()
    settings["stow"] = {"host": "127.0.0.1", "port": stow_port, "max_request_bytes": 500_000,
                        "clients": [{"name": "WEBCAM", "token": {"file": str(tmp_path / "client.token")}}]}
    settings["routes"] = [{"name": "web", "match": {"calling_ae_title": "WEBCAM"},
                           "profile": "tags-only", "destinations": ["research"]}]
    dmask_server(settings)
    url = f"http://127.0.0.1:{stow_port}/studies"
    study = generate_uid()
    files = _tags_only_files(tmp_path, 3, study)

    status, kind, body = post_files(f"{url}/{study}", files, token)
    assert (status, kind) == (200, "application/dicom+json")
    sent = {str(pydicom.dcmread(path).SOPInstanceUID) for path in files}
    assert set(sequence_uids(body, REFERENCED_SOP_SEQUENCE)) == sent
    wait_until(lambda: orthanc.instance_count() == 3, 60, "3 instances in Orthanc through the gateway")
    for instance in orthanc.instances():
        tags = orthanc.tags(instance["ID"])
        assert tags["PatientID"] != PATIENT_ID and tags["SOPInstanceUID"] not in sent

    assert post_files(url, files[:1], "not-the-token")[0] == 401
    content_type, mixed = multipart_body([("application/dicom", b"plain text, not DICOM")])
    status, _, body = post_studies(url, mixed, content_type, token)
    assert status == 409 and list(sequence_uids(body, FAILED_SOP_SEQUENCE).values()) == [0xC000]
    big = write(photo_instance(resized(photo("astronaut"), 250_000)), tmp_path / "big.dcm")
    assert post_files(url, [big], token)[0] == 413
    content_type, whole = multipart_body([("application/dicom", files[0].read_bytes())])
    head = (f"POST /studies HTTP/1.1\r\nHost: gateway\r\nContent-Type: {content_type}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Length: {len(whole)}\r\n\r\n")
    assert _raw_post(stow_port, head, whole[: len(whole) // 2]).startswith(b"HTTP/1.1 400")
    time.sleep(2)
    assert orthanc.instance_count() == 3
