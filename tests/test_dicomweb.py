"""The STOW-RS client against a STOW-RS server on loopback: batches, per-instance failures,
credentials that change, a server that is down."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config import DicomWebDestination
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
    outgoing = _instances(tmp_path, 1)[0]
    forwarder = Forwarder({"web": _destination(peer.url)}, "DMASK")
    forwarder.send("web", outgoing)
    forwarder.close()
    assert list(peer.stored) == [outgoing.sop_instance_uid]


def test_the_url_must_be_http(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="http"):
        _destination("ftp://127.0.0.1/x")
    with pytest.raises(ValueError, match="tls"):
        _destination("http://127.0.0.1/x", tls={})

