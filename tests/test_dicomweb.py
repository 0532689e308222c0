"""The STOW-RS client against a STOW-RS server on loopback: batches, per-instance failures,
credentials that change, a server that is down; and how results of several jobs are gathered
into batches."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config import DicomWebDestination, FolderDestination
from gateway.deliver.batching import Batch, Batcher, Parcel, batched
from gateway.deliver.dicomweb import StowSender
from gateway.deliver.forward import Forwarder, Outgoing
from gateway.errors import ForwardError
from tests.support.dicomweb_peers import StowPeer
from tests.support.instances import photo_instance, write
from tests.support.loopback import free_port
from tests.support.photos import photo, resized


@pytest.fixture
def peer() -> Iterator[StowPeer]:
    server = StowPeer()
    yield server
    server.stop()


def _instances(tmp_path: Path, count: int) -> list[Outgoing]:
    outgoing = []
    for number in range(count):
        ds = photo_instance(resized(photo("camera"), 2_000))
        path = write(ds, tmp_path / f"{number}.dcm")
        outgoing.append(Outgoing(path, ds.SOPClassUID, ds.SOPInstanceUID, ds.file_meta.TransferSyntaxUID))
    return outgoing


def _destination(url: str, **settings: object) -> DicomWebDestination:
    return DicomWebDestination.model_validate({"type": "dicomweb", "url": url, "connect_timeout": 2,
                                               "read_timeout": 10, **settings})


def test_a_request_carries_up_to_the_cap(tmp_path: Path, peer: StowPeer) -> None:
    outgoing = _instances(tmp_path, 5)
    sender = StowSender(_destination(peer.url, max_instances_per_request=2))
    assert sender.store(outgoing) == {}
    sender.close()
    assert [len(request) for request in peer.requests] == [2, 2, 1]
    assert set(peer.stored) == {o.sop_instance_uid for o in outgoing}
    assert peer.stored[outgoing[0].sop_instance_uid].PatientID == "PID-0451-HOPPER"


def test_a_partial_failure_retries_only_the_failed_instance(tmp_path: Path, peer: StowPeer) -> None:
    outgoing = _instances(tmp_path, 3)
    refused = outgoing[1].sop_instance_uid
    peer.fail_once[refused] = 0xA700
    sender = StowSender(_destination(peer.url))
    failures = sender.store(outgoing)
    assert list(failures) == [refused]
    assert "0xA700" in str(failures[refused])
    assert peer.statuses == [202]
    retried = [o for o in outgoing if o.sop_instance_uid in failures]
    assert sender.store(retried) == {}
    assert peer.requests == [[o.sop_instance_uid for o in outgoing], [refused]]
    assert set(peer.stored) == {o.sop_instance_uid for o in outgoing}


def test_a_server_that_is_down_or_busy_fails_every_instance(tmp_path: Path, peer: StowPeer) -> None:
    outgoing = _instances(tmp_path, 2)
    peer.unavailable_until = float("inf")
    failures = StowSender(_destination(peer.url)).store(outgoing)
    assert set(failures) == {o.sop_instance_uid for o in outgoing}
    assert "HTTP 503" in str(failures[outgoing[0].sop_instance_uid])
    closed = StowSender(_destination(f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(ForwardError, match="ConnectionRefusedError"):
        closed.send(outgoing[0])


def test_a_token_file_is_read_again_when_it_changes(tmp_path: Path, peer: StowPeer) -> None:
    outgoing = _instances(tmp_path, 2)
    token = tmp_path / "token"
    token.write_text("first-token\n")
    sender = StowSender(_destination(peer.url, auth={"type": "bearer", "token_file": str(token)}))
    peer.expected_token = "first-token"
    sender.send(outgoing[0])
    # An outside refresher replaces the file (write then rename), and the server moves on.
    (tmp_path / "token.new").write_text("second-token\n")
    os.replace(tmp_path / "token.new", token)
    peer.expected_token = "second-token"
    sender.send(outgoing[1])
    assert peer.authorizations == ["Bearer first-token", "Bearer second-token"]
    assert len(peer.stored) == 2


def test_a_401_runs_the_token_command_again(tmp_path: Path, peer: StowPeer) -> None:
    outgoing = _instances(tmp_path, 1)
    counter = tmp_path / "runs"
    script = tmp_path / "token.sh"
    script.write_text(f"#!/bin/sh\necho run >> {counter}\necho token-$(wc -l < {counter})\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    sender = StowSender(_destination(peer.url, auth={"type": "bearer", "token_command": [str(script)]}))
    peer.expected_token = "token-2"  # the first token the command prints is already stale
    sender.send(outgoing[0])
    assert peer.authorizations == ["Bearer token-1", "Bearer token-2"]


def test_basic_auth_reads_the_password_outside_the_yaml(tmp_path: Path, peer: StowPeer,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DMASK_TEST_PASSWORD", "s3cret")
    sender = StowSender(_destination(peer.url, auth={"type": "basic", "username": "dmask",
                                                     "password": {"env": "DMASK_TEST_PASSWORD"}}))
    sender.send(_instances(tmp_path, 1)[0])
    assert peer.authorizations == ["Basic ZG1hc2s6czNjcmV0"]  # base64 of dmask:s3cret


def test_a_missing_token_is_a_retryable_failure(tmp_path: Path, peer: StowPeer) -> None:
    sender = StowSender(_destination(peer.url, auth={"type": "bearer",
                                                     "token_file": str(tmp_path / "absent")}))
    with pytest.raises(ForwardError, match="token file"):
        sender.send(_instances(tmp_path, 1)[0])
    assert peer.requests == []


def test_the_forwarder_dispatches_dicomweb_destinations(tmp_path: Path, peer: StowPeer) -> None:
    outgoing = _instances(tmp_path, 3)
    forwarder = Forwarder({"web": _destination(peer.url, max_instances_per_request=2),
                           "folder": FolderDestination(type="folder", path=tmp_path / "out")}, "DMASK")
    forwarder.send("web", outgoing[0])
    peer.fail_once[outgoing[2].sop_instance_uid] = 0xA700
    failures = forwarder.store("web", outgoing[1:])
    with pytest.raises(ForwardError, match="no longer a DICOMweb"):
        forwarder.store("folder", outgoing)
    with pytest.raises(ForwardError, match="no longer configured"):
        forwarder.store("gone", outgoing)
    forwarder.close()
    assert list(failures) == [outgoing[2].sop_instance_uid]
    assert [len(request) for request in peer.requests] == [1, 2]
    assert list(peer.stored) == [o.sop_instance_uid for o in outgoing[:2]]


def _parcel(job_id: int, uid: str) -> Parcel:
    return Parcel(job_id, Outgoing(Path(f"{job_id}.dcm"), "1.2.840.10008.5.1.4.1.1.7", uid, "1.2.840.10008.1.2.1"))


def _job_ids(batches: list[Batch]) -> list[tuple[str, list[int]]]:
    return [(batch.destination, [parcel.job_id for parcel in batch.parcels]) for batch in batches]


def test_a_batch_goes_when_full_or_when_its_oldest_instance_waited_long_enough() -> None:
    destinations = {"web": _destination("http://127.0.0.1:1", max_instances_per_request=2, batch_wait=1.0)}
    batcher = Batcher()
    for job_id in range(1, 6):
        batcher.add("web", _parcel(job_id, f"1.2.{job_id}"), now=100.0 + job_id / 10)
    assert _job_ids(batcher.due(destinations, now=100.5)) == [("web", [1, 2]), ("web", [3, 4])]
    assert len(batcher) == 1
    assert batcher.next_due(destinations, now=100.5) == pytest.approx(1.0)
    assert batcher.due(destinations, now=101.4) == []
    assert _job_ids(batcher.due(destinations, now=101.5)) == [("web", [5])]
    assert len(batcher) == 0 and batcher.next_due(destinations) is None


def test_one_request_never_carries_an_instance_twice() -> None:
    destinations = {"web": _destination("http://127.0.0.1:1", max_instances_per_request=3, batch_wait=1.0)}
    batcher = Batcher()
    for job_id, uid in ((1, "1.2.1"), (2, "1.2.1"), (3, "1.2.3"), (4, "1.2.4")):
        batcher.add("web", _parcel(job_id, uid), now=0.0)
    assert _job_ids(batcher.due(destinations, now=0.0)) == [("web", [1, 3, 4])]
    assert _job_ids(batcher.due(destinations, now=1.0)) == [("web", [2])]


def test_stopping_or_an_unconfigured_destination_sends_what_waits_at_once() -> None:
    destinations = {"web": _destination("http://127.0.0.1:1", max_instances_per_request=4, batch_wait=30)}
    batcher = Batcher()
    batcher.add("web", _parcel(1, "1.2.1"), now=0.0)
    batcher.add("removed", _parcel(2, "1.2.2"), now=0.0)
    assert batcher.next_due(destinations, now=0.0) == 0.0
    assert _job_ids(batcher.due(destinations, now=0.0)) == [("removed", [2])]
    assert _job_ids(batcher.due(destinations, now=0.0, everything=True)) == [("web", [1])]


def test_only_dicomweb_destinations_with_a_cap_above_one_are_batched(tmp_path: Path) -> None:
    assert batched(_destination("http://127.0.0.1:1"))
    assert not batched(_destination("http://127.0.0.1:1", max_instances_per_request=1))
    assert not batched(FolderDestination(type="folder", path=tmp_path))
    assert not batched(None)


def test_the_url_must_be_http(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="http"):
        _destination("ftp://127.0.0.1/x")
    with pytest.raises(ValueError, match="tls"):
        _destination("http://127.0.0.1/x", tls={})

