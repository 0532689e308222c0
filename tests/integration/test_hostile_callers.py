"""``dmask serve`` against callers that do not play by the rules, over raw sockets on loopback.

Announced PDU lengths it must not buffer, connections that churn or drip bytes to hold its slots,
a data set on the wrong presentation context, associations dropped mid-transfer and a seeded fuzz
of association and P-DATA PDUs. One gateway serves the whole module; each test measures against
what it finds when it starts. Every loop is bounded and every wait polls against a deadline.
"""

from __future__ import annotations

import collections
import os
import random
import select
import socket
import struct
import threading
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, VLPhotographicImageStorage
from pynetdicom import AE

from tests.support.instances import photo_instance
from tests.support.peers import DmaskServer, gateway_settings, wait_until
from tests.support.photos import photo, resized
from tests.support.raw_peer import (
    A_ABORT,
    A_ASSOCIATE_AC,
    A_ASSOCIATE_RJ,
    A_RELEASE_RP,
    ABORT_RQ,
    P_DATA_TF,
    RELEASE_RQ,
    VERIFICATION,
    associate,
    associate_rq,
    connect,
    pdv_payloads,
    photo_context,
    read_pdu,
    single_pdu_store,
    store_pdus,
    store_status,
)

NEGOTIATION_TIMEOUT = 2.0
PER_HOST = 12
MAX_NEGOTIATING = 24
#: How much the gateway's resident memory may grow under a test (MB).
RSS_MARGIN_MB = 50
#: Hostile callers connect from other loopback addresses than CAMERA1 (127.0.0.1): other hosts.
HOSTILE = "127.0.0.2"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DmaskServer]:
    """One gateway for the module: it holds every instance (a reject route), one worker."""
    folder = tmp_path_factory.mktemp("hostile")
    settings = gateway_settings(folder, {"kept": {"type": "folder", "path": str(folder / "out")}},
                                routes=[{"name": "hold-everything", "reject": True}], workers=1)
    settings["listener"].update(negotiation_timeout=NEGOTIATION_TIMEOUT, max_negotiating=MAX_NEGOTIATING,
                                max_connections_per_host=PER_HOST, network_timeout=10)
    gateway = DmaskServer(folder / "dmask", settings)
    gateway.start()
    yield gateway
    gateway.stop()


@dataclass(frozen=True)
class Usage:
    rss_mb: float
    threads: int
    fds: int


def usage(gateway: DmaskServer) -> Usage:
    """Resident memory, threads and open files of the serve process (the listener's)."""
    assert gateway.process is not None and gateway.process.poll() is None, "dmask serve died"
    pid = gateway.process.pid
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return Usage(rss_mb=int(fields["VmRSS"].split()[0]) / 1024, threads=int(fields["Threads"]),
                 fds=len(os.listdir(f"/proc/{pid}/fd")))


def echo_seconds(port: int) -> float:
    """Seconds for CAMERA1 to associate, C-ECHO (Success asserted) and release."""
    ae = AE(ae_title="CAMERA1")
    ae.acse_timeout = ae.network_timeout = 5
    ae.add_requested_context(VERIFICATION)
    began = time.monotonic()
    assoc = ae.associate("127.0.0.1", port, ae_title="DMASK")
    assert assoc.is_established, "CAMERA1 got no association"
    try:
        assert assoc.send_c_echo().Status == 0x0000
    finally:
        assoc.release()
    return time.monotonic() - began


def incoming(gateway: DmaskServer) -> list[Path]:
    return list((Path(gateway.settings["spool"]["path"]) / "incoming").iterdir())


def jobs(gateway: DmaskServer) -> int:
    return sum(gateway.spool_counts().values())


def closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    """Whether the gateway closes ``sock`` within ``timeout`` s (whatever it sends first)."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if select.select([sock], [], [], left)[0]:
            try:
                if not sock.recv(65536):
                    return True
            except OSError:
                return True
    return False


def tiny_photo(sop_class: str = VLPhotographicImageStorage) -> Dataset:
    """An 8x8 grey photographic instance: small enough that mutations hit its structure."""
    return photo_instance(np.full((8, 8, 3), 128, np.uint8), sop_class_uid=sop_class)


def test_announced_lengths_are_refused_before_anything_is_buffered(server: DmaskServer) -> None:
    """0xFFFFFFF0 after the A-ASSOCIATE-RQ header and after a P-DATA-TF header, two of each."""
    baseline = usage(server).rss_mb
    huge = [struct.pack(">BBL", 0x01, 0, 0xFFFFFFF0)] * 2 + [struct.pack(">BBL", P_DATA_TF, 0, 0xFFFFFFF0)] * 2
    sockets = [connect(server.port, HOSTILE), connect(server.port, HOSTILE)]
    sockets += [associate(server.port, photo_context(VLPhotographicImageStorage), source=HOSTILE)
                for _ in range(2)]
    zeros = bytes(1 << 20)

    def stream(sock: socket.socket, header: bytes) -> int:
        """Send the header and up to 256 MB of zeros; return how much went before the close."""
        sent = 0
        try:
            sock.sendall(header)
            while sent < 256 << 20:
                sock.sendall(zeros)
                sent += len(zeros)
        except OSError:
            pass
        return sent

    peak = baseline
    with ThreadPoolExecutor(4) as pool:
        streams = [pool.submit(stream, sock, header) for sock, header in zip(sockets, huge, strict=True)]
        while not all(s.done() for s in streams):
            peak = max(peak, usage(server).rss_mb)
            time.sleep(0.05)
    for sock in sockets:
        sock.close()
    assert peak < baseline + RSS_MARGIN_MB, f"RSS grew from {baseline:.0f} MB to {peak:.0f} MB"
    assert all(s.result() < 64 << 20 for s in streams), "the gateway kept reading a huge PDU"
    assert echo_seconds(server.port) < 2


def _junk(port: int, seed: int, stop: threading.Event) -> int:
    """Open, send 8 (or up to 400) random bytes and close at once, until ``stop`` (at most 2,000)."""
    rng = random.Random(seed)
    rounds = 0
    while not stop.is_set() and rounds < 2000:
        rounds += 1
        try:
            with connect(port, HOSTILE, timeout=2) as sock:
                sock.sendall(rng.randbytes(8 if rounds % 2 else rng.randrange(1, 400)))
        except OSError:
            pass
    return rounds


def _drip(port: int) -> float | None:
    """Send a valid A-ASSOCIATE-RQ a byte every 0.25 s; seconds until the gateway closed it."""
    began = time.monotonic()
    with connect(port, HOSTILE) as sock:
        for byte in associate_rq():
            if closed_by_peer(sock, 0.25):
                return time.monotonic() - began
            try:
                sock.send(bytes((byte,)))
            except OSError:
                return time.monotonic() - began
    return None


def test_echo_while_ten_connections_send_junk(server: DmaskServer) -> None:
    before = usage(server)
    stop = threading.Event()
    with ThreadPoolExecutor(10) as pool:
        junk = [pool.submit(_junk, server.port, seed, stop) for seed in range(10)]
        time.sleep(0.5)
        echoes, peak_threads = [], 0
        for _ in range(3):
            echoes.append(echo_seconds(server.port))
            peak_threads = max(peak_threads, usage(server).threads)
        stop.set()
        rounds = sum(future.result(timeout=30) for future in junk)
    assert max(echoes) < 2, f"C-ECHO took {max(echoes):.2f} s under junk ({rounds} connections)"
    assert peak_threads < before.threads + MAX_NEGOTIATING + 10
    wait_until(lambda: usage(server).threads <= before.threads + 2, 10, "threads to return")


def test_echo_while_ten_connections_drip_bytes(server: DmaskServer) -> None:
    before = usage(server)
    with ThreadPoolExecutor(10) as pool:
        drips = [pool.submit(_drip, server.port) for _ in range(10)]
        time.sleep(0.5)
        echoes = [echo_seconds(server.port) for _ in range(3)]
        closed_after = [future.result(timeout=30) for future in drips]
    assert max(echoes) < 2, f"C-ECHO took {max(echoes):.2f} s while 10 connections dripped"
    assert all(t is not None and t < NEGOTIATION_TIMEOUT + 1.5 for t in closed_after), closed_after
    wait_until(lambda: usage(server).threads <= before.threads + 2, 10, "threads to return")


def test_one_address_and_all_negotiating_connections_are_capped(server: DmaskServer) -> None:
    """A host gets PER_HOST connections, however silent; a full negotiating pool refuses anyone."""
    held = [connect(server.port, HOSTILE) for _ in range(PER_HOST)]
    try:
        with connect(server.port, HOSTILE) as one_more:
            assert closed_by_peer(one_more, 1), "a connection over the per-host cap was kept"
        assert echo_seconds(server.port) < 2, "another host was refused"
        held += [connect(server.port, "127.0.0.3") for _ in range(MAX_NEGOTIATING - PER_HOST)]
        with connect(server.port, "127.0.0.4") as one_more:
            assert closed_by_peer(one_more, 1), "a connection over the negotiating cap was kept"
        assert all(closed_by_peer(sock, NEGOTIATION_TIMEOUT + 1.5) for sock in held)
    finally:
        for sock in held:
            sock.close()
    wait_until(lambda: _echo_works(server.port), 5, "CAMERA1 to get an association again")


def _echo_works(port: int) -> bool:
    try:
        return echo_seconds(port) < 2
    except AssertionError:
        return False


def _store(sock: socket.socket, pdus: list[bytes]) -> int | None:
    for pdu in pdus:
        sock.sendall(pdu)
    reply = read_pdu(sock)
    return store_status(reply[1]) if reply is not None and reply[0] == P_DATA_TF else None


def test_data_set_of_another_sop_class_is_refused_and_not_spooled(server: DmaskServer) -> None:
    before = jobs(server)
    ct_data = tiny_photo(CTImageStorage)
    sock = associate(server.port, photo_context(VLPhotographicImageStorage))
    try:
        # CT data set, command saying VL Photographic (the context's class)
        assert _store(sock, store_pdus(ct_data, command_sop_class=VLPhotographicImageStorage)) == 0xA900
        # CT data set and command on the VL Photographic context
        assert _store(sock, store_pdus(ct_data)) == 0xA900
        assert _store(sock, store_pdus(tiny_photo())) == 0x0000  # the same path takes a match
        sock.sendall(RELEASE_RQ)
        assert read_pdu(sock) is not None
    finally:
        sock.close()
    assert not incoming(server)
    wait_until(lambda: jobs(server) == before + 1, 10, "the one matching instance in the spool")


def test_associations_aborted_mid_transfer_leave_no_partial_file(server: DmaskServer) -> None:
    instance = photo_instance(resized(photo("astronaut"), 40_000))
    partial = store_pdus(instance)[:3]  # the command and two of the data set's fragments
    sockets = [associate(server.port, photo_context(VLPhotographicImageStorage)) for _ in range(10)]
    try:
        for sock in sockets:
            for pdu in partial:
                sock.sendall(pdu)
        wait_until(lambda: len(incoming(server)) == 10, 10, "10 partial data sets in incoming/")
        for index, sock in enumerate(sockets):
            if index % 2:
                sock.sendall(ABORT_RQ)
            sock.close()
    finally:
        for sock in sockets:
            sock.close()
    wait_until(lambda: not incoming(server), 10, "the partial data sets to be deleted")


# -- fuzz -------------------------------------------------------------------------------------

FUZZ_SEED = 20240517
FUZZ_CASES_PER_TEMPLATE = 500


def mutate(template: bytes, rng: random.Random) -> bytes:
    """One to four seeded mutations: bit flips, random bytes, a new length, cuts, insertions."""
    data = bytearray(template)
    for _ in range(rng.randint(1, 4)):
        operation = rng.randrange(6)
        at = rng.randrange(len(data)) if data else 0
        if operation == 0 and data:
            data[at] ^= 1 << rng.randrange(8)
        elif operation == 1 and data:
            data[at] = rng.randrange(256)
        elif operation == 2 and len(data) >= 6:
            length = rng.choice([0, 1, len(data) - 7, len(data) - 5, rng.randrange(1 << 32), 0xFFFFFFF0])
            data[2:6] = struct.pack(">L", max(0, length))
        elif operation == 3:
            del data[at:]
        elif operation == 4:
            data[at:at] = rng.randbytes(rng.randint(1, 16))
        elif operation == 5 and len(data) > at + 2:
            # a 16-bit item or element length inside the PDU
            data[at:at + 2] = struct.pack(">H", rng.choice([0, 0xFFFF, rng.randrange(1 << 16)]))
    return bytes(data)


def acceptable_store(pdu: bytes) -> bool:
    """Whether a P-DATA-TF is a C-STORE the gateway may answer with Success.

    The receive path promises a well-formed C-STORE-RQ on the accepted context whose data set's
    leading elements carry the context's SOP class; the rest of the data set is the pipeline's
    to judge (and quarantine), so it is not decoded here either.
    """
    payloads = pdv_payloads(pdu)
    if not payloads or len(payloads) != 2 or payloads[0][0] != 0x03 or payloads[1][0] & 0x03 != 0x02:
        return False
    try:
        with warnings.catch_warnings():  # pydicom warns of each mutated value it reads
            warnings.simplefilter("ignore")
            command = read_dataset(BytesIO(payloads[0][1]), True, True)
            leading = read_dataset(BytesIO(payloads[1][1]), False, True,
                                   stop_when=lambda tag, _vr, _length: tag > 0x00080016)
            return (command.CommandField == 0x0001
                    and command.AffectedSOPClassUID == VLPhotographicImageStorage
                    and leading.SOPClassUID == VLPhotographicImageStorage)
    except Exception:
        return False


def _exchange(port: int, first: bytes, established: bool, source: str) -> list[tuple[int, bytes]]:
    """Send ``first`` (after an association if ``established``) and read until the gateway closes.

    An A-RELEASE-RQ follows on an association (at once after ``first``, or once the gateway
    accepted ``first`` as a request); when the gateway waits for more bytes than came (a mutated
    length), the socket is half-closed after half a second so that it sees the end.
    """
    sock = (associate(port, photo_context(VLPhotographicImageStorage), source=source) if established
            else connect(port, source))
    replies: list[tuple[int, bytes]] = []
    try:
        sock.sendall(first + (RELEASE_RQ if established else b""))
        sock.settimeout(0.5)
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            try:
                reply = read_pdu(sock)
            except TimeoutError:
                sock.shutdown(socket.SHUT_WR)
                continue
            if reply is None:
                break
            replies.append(reply)
            if reply[0] == A_ASSOCIATE_AC:
                sock.sendall(RELEASE_RQ)
            if reply[0] in (A_RELEASE_RP, A_ABORT, A_ASSOCIATE_RJ):
                break
        else:
            pytest.fail("the gateway neither answered nor closed within 8 s")
    except OSError:
        pass  # reset by the gateway
    finally:
        sock.close()
    return replies


def test_fuzzed_association_and_store_pdus(server: DmaskServer) -> None:
    rng = random.Random(FUZZ_SEED)
    request = associate_rq(contexts=[(1, VLPhotographicImageStorage, [ExplicitVRLittleEndian]),
                                     (3, VERIFICATION, ["1.2.840.10008.1.2"])])
    store = single_pdu_store(tiny_photo())
    cases = [(mutate(request, rng), False) for _ in range(FUZZ_CASES_PER_TEMPLATE)]
    cases += [(mutate(store, rng), True) for _ in range(FUZZ_CASES_PER_TEMPLATE)]
    jobs_before, before = jobs(server), usage(server)
    sources = [f"127.0.0.{10 + index % 12}" for index in range(len(cases))]  # 12 hosts, 12 at a time
    with ThreadPoolExecutor(12) as pool:
        outcomes = list(pool.map(lambda case, source: _exchange(server.port, *case, source), cases, sources))

    successes, first_replies = 0, collections.Counter()
    for (pdu, established), replies in zip(cases, outcomes, strict=True):
        statuses = [store_status(body) for kind, body in replies if kind == P_DATA_TF]
        if 0x0000 in statuses:
            assert established and acceptable_store(pdu), f"Success for a bad PDU: {pdu[:64].hex()}"
            successes += 1
        if not established:
            assert not statuses, "a P-DATA answer before any association"
            first_replies[replies[0][0] if replies else None] += 1
    # The mutations reach every outcome: accepted, aborted or closed requests; stores that pass.
    assert first_replies[A_ASSOCIATE_AC] and first_replies[A_ABORT] and first_replies[None], first_replies
    assert 0 < successes < FUZZ_CASES_PER_TEMPLATE
    assert echo_seconds(server.port) < 2, "the gateway no longer answers after the fuzz"
    assert _store_one(server.port) == 0x0000
    # Each Success is spooled; a complete C-STORE whose association then broke (garbage after
    # it) may be spooled without its answer getting out, as at-least-once delivery allows.
    acceptable = sum(1 for pdu, established in cases if established and acceptable_store(pdu))
    wait_until(lambda: successes <= jobs(server) - jobs_before - 1 <= acceptable, 15,
               f"between {successes} and {acceptable} fuzzed jobs spooled")
    wait_until(lambda: usage(server).threads <= before.threads + 2, 15, "threads to return")
    wait_until(lambda: usage(server).fds <= before.fds + 4, 15, "open files to return")
    assert usage(server).rss_mb < before.rss_mb + RSS_MARGIN_MB
    assert not incoming(server)


def _store_one(port: int) -> int | None:
    sock = associate(port, photo_context(VLPhotographicImageStorage))
    try:
        return _store(sock, store_pdus(tiny_photo(), fragment=1 << 14))
    finally:
        sock.sendall(RELEASE_RQ)
        sock.close()

