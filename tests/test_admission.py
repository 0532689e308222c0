"""Admission before association: connection slots and the first PDU, over real socket pairs."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config import TLSSettings
from gateway.dicom.transport import ssl_context
from gateway.ingest.admission import (
    MAX_ASSOCIATE_RQ_LENGTH,
    ConnectionSlots,
    Refused,
    read_association_request,
    tls_handshake,
)
from tests.support.certificates import make_tls_files
from tests.support.raw_peer import associate_rq


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(gateway end, caller end) of a connected socket pair."""
    gateway, caller = socket.socketpair()
    yield gateway, caller
    gateway.close()
    caller.close()


def _read(gateway: socket.socket, timeout: float = 2) -> bytes:
    return read_association_request(gateway, time.monotonic() + timeout)


def test_a_valid_request_is_read_whole(pair: tuple[socket.socket, socket.socket]) -> None:
    gateway, caller = pair
    request = associate_rq()
    caller.sendall(request)
    assert _read(gateway) == request


@pytest.mark.parametrize("first, reply", [
    (struct.pack(">BBL", 0x04, 0, 0xFFFFFFF0), bytes.fromhex("07000000000400000202")),  # P-DATA first
    (struct.pack(">BBL", 0xC7, 0, 12), bytes.fromhex("07000000000400000201")),  # unknown type
    (struct.pack(">BBL", 0x01, 0, 0xFFFFFFF0), bytes.fromhex("07000000000400000206")),  # too long
    (struct.pack(">BBL", 0x01, 0, MAX_ASSOCIATE_RQ_LENGTH + 1), bytes.fromhex("07000000000400000206")),
    (associate_rq()[:10] + b"\xff" * (len(associate_rq()) - 10), bytes.fromhex("07000000000400000206")),
    (associate_rq()[:6] + b"\x00\x02" + associate_rq()[8:], bytes.fromhex("03000000000400010202")),
])
def test_a_bad_first_pdu_is_refused_with_its_answer(pair: tuple[socket.socket, socket.socket],
                                                    first: bytes, reply: bytes) -> None:
    gateway, caller = pair
    caller.sendall(first)
    with pytest.raises(Refused) as refused:
        _read(gateway)
    assert refused.value.reply == reply


def test_the_length_is_refused_before_the_body_is_read(pair: tuple[socket.socket, socket.socket]) -> None:
    gateway, caller = pair
    caller.sendall(struct.pack(">BBL", 0x01, 0, 0xFFFFFFF0) + bytes(4096))
    with pytest.raises(Refused):
        _read(gateway)
    gateway.setblocking(False)
    assert len(gateway.recv(8192)) == 4096  # the body is still unread


def test_a_slow_drip_is_cut_at_the_deadline(pair: tuple[socket.socket, socket.socket]) -> None:
    gateway, caller = pair
    stop = threading.Event()

    def drip() -> None:
        for byte in associate_rq():
            if stop.wait(0.05):
                return
            caller.send(bytes((byte,)))

    dripping = threading.Thread(target=drip)
    dripping.start()
    began = time.monotonic()
    try:
        with pytest.raises(Refused, match="in time") as refused:
            _read(gateway, timeout=0.5)
    finally:
        stop.set()
        dripping.join()
    assert 0.5 <= time.monotonic() - began < 1.5
    assert refused.value.reply is None


def test_a_closed_connection_is_refused_without_an_answer(pair: tuple[socket.socket, socket.socket]) -> None:
    gateway, caller = pair
    caller.sendall(associate_rq()[:40])
    caller.shutdown(socket.SHUT_WR)
    with pytest.raises(Refused, match="closed") as refused:
        _read(gateway)
    assert refused.value.reply is None


def test_a_silent_tls_client_is_cut_at_the_deadline(tmp_path: Path,
                                                    pair: tuple[socket.socket, socket.socket]) -> None:
    files = make_tls_files(tmp_path)
    context = ssl_context(TLSSettings(certificate=files.server_cert, private_key=files.server_key,
                                      ca_certificates=files.ca), server_side=True)
    gateway, _caller = pair
    began = time.monotonic()
    with pytest.raises(Refused, match="TLS handshake not completed in time"):
        tls_handshake(gateway, context, time.monotonic() + 0.3)
    assert time.monotonic() - began < 1.3


def test_slots_cap_each_address_and_the_negotiating_connections() -> None:
    slots = ConnectionSlots(max_negotiating=3, max_per_host=2)
    assert slots.take("10.0.0.1") is None and slots.take("10.0.0.1") is None
    assert slots.take("10.0.0.1") == "too many connections from this address"
    assert slots.take("10.0.0.2") is None
    assert slots.take("10.0.0.3") == "too many connections are negotiating"
    slots.negotiated()  # one of 10.0.0.1's is associated now: it still counts for its address
    assert slots.take("10.0.0.1") == "too many connections from this address"
    assert slots.take("10.0.0.3") is None
    slots.release("10.0.0.1")
    slots.negotiated()
    assert slots.take("10.0.0.1") is None
