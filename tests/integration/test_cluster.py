"""Scale-out: receivers and processors as separate ``dmask serve`` process groups on one
PostgreSQL queue and a shared payload folder, with crashes and a database restart.

Each test starts a PostgreSQL server of its own (it stops or restarts it), Orthanc as the PACS,
and every gateway node with a local folder of its own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import SecondaryCaptureImageStorage

from gateway.store.postgres_spool import upgrade_schema
from tests.support import postgres as pg_support
from tests.support.instances import photo_instance, write
from tests.support.loopback import http_get
from tests.support.peers import (
    DmaskServer,
    acknowledged,
    gateway_settings,
    on_postgresql,
    orthanc_destination,
    storescu,
    wait_until,
)
from tests.support.photos import photo, resized
from tests.support.postgres import PostgresServer

#: Tags-only secondary captures of about 40 KB, and masked photos of one megapixel.
SMALL_PIXELS = 13_000
LARGE_PIXELS = 1_000_000
#: 300 instances, a quarter of them masked: on two shared cores the whole test stays under
#: three minutes.
SMALL_COUNT = 225
LARGE_COUNT = 75
LEASE_S = 5


@pytest.fixture
def database(tmp_path: Path) -> Iterator[PostgresServer]:
    if not pg_support.available():
        pytest.skip("PostgreSQL 15 binaries (Debian postgresql-15) are not installed")
    server = PostgresServer()
    server.start()
    yield server
    server.close()


def _instances(folder: Path) -> list[Path]:
    """The mix, interleaved: tags-only (Modality OT) and masked photos (XC)."""
    folder.mkdir(parents=True, exist_ok=True)
    small = resized(photo("camera"), SMALL_PIXELS)
    large = resized(photo("grace_hopper"), LARGE_PIXELS)
    files = []
    for number in range(1, SMALL_COUNT + LARGE_COUNT + 1):
        if number % ((SMALL_COUNT + LARGE_COUNT) // LARGE_COUNT) == 0:
            ds = photo_instance(large)
        else:
            ds = photo_instance(small, sop_class_uid=SecondaryCaptureImageStorage)
        ds.InstanceNumber = number
        files.append(write(ds, folder / f"{number:04d}.dcm"))
    return files


class Cluster:
    """Gateway nodes sharing one queue; stopped (SIGTERM, then SIGKILL) at the end."""

    def __init__(self, folder: Path, database: PostgresServer, orthanc: Any) -> None:
        self.folder = folder
        dsn = database.new_database()
        upgrade_schema(dsn)
        (folder / "dsn").write_text(dsn)
        self.destination = orthanc_destination(orthanc)
        self.nodes: list[DmaskServer] = []

    def node(self, name: str, role: str, workers: int = 1) -> DmaskServer:
        settings = gateway_settings(self.folder / name, {"research": self.destination},
                                    workers=workers)
        settings["node"] = name
        on_postgresql(settings, self.folder / "dsn", self.folder / "shared", lease=LEASE_S)
        server = DmaskServer(self.folder / name, settings, role=role)
        self.nodes.append(server)
        return server

    def stop(self) -> None:
        for server in self.nodes:
            server.stop()


@pytest.fixture
def cluster(tmp_path: Path, database: PostgresServer, orthanc: Any) -> Iterator[Cluster]:
    nodes = Cluster(tmp_path, database, orthanc)
    yield nodes
    nodes.stop()


def test_success_is_never_answered_while_postgresql_is_stopped(
        tmp_path: Path, database: PostgresServer, cluster: Cluster) -> None:
    receiver = cluster.node("receiver", "receive")
    receiver.start()
    small = resized(photo("camera"), SMALL_PIXELS)
    (tmp_path / "in").mkdir()
    files = [write(photo_instance(small, sop_class_uid=SecondaryCaptureImageStorage),
                   tmp_path / "in" / f"{n}.dcm") for n in range(5)]
    assert len(acknowledged(storescu(receiver.port, files[:1]))) == 1

    database.stop()
    refused = storescu(receiver.port, files)
    assert acknowledged(refused) == [], refused.stdout[-2000:]
    assert "Refused: OutOfResources" in refused.stderr  # 0xA700
    wait_until(lambda: http_get(receiver.metrics_port, "/readyz")[0] == 503, 20,
               "the receiver to report not ready")

    database.start()
    wait_until(receiver.ready, 30, "the receiver to be ready again")
    assert len(acknowledged(storescu(receiver.port, files))) == 5
    assert receiver.spool_counts() == {"received": 6}


def test_cluster_survives_processor_and_receiver_kills_and_a_database_restart(
        tmp_path: Path, database: PostgresServer, cluster: Cluster, orthanc: Any) -> None:
    """Every acknowledged instance reaches Orthanc exactly once, none unmasked, nothing is
    left claimed."""
    files = _instances(tmp_path / "in")
    receivers = [cluster.node(f"receiver{n}", "receive") for n in range(2)]
    processors = [cluster.node(f"processor{n}", "process") for n in range(3)]
    for server in receivers + processors:
        server.start(wait_ready=False)
    for server in receivers + processors:
        wait_until(server.ready, 120, f"{server.folder.name} to be ready")

    acked: list[str] = []
    lock = threading.Lock()

    def send(receiver: DmaskServer, share: list[Path]) -> None:
        """Like a modality behind a load balancer: what was not acknowledged is sent again."""
        deadline = time.monotonic() + 240
        for start in range(0, len(share), 5):
            pending = [str(path) for path in share[start:start + 5]]
            while pending and time.monotonic() < deadline:
                done = acknowledged(storescu(receiver.port, pending))
                with lock:
                    acked.extend(done)
                pending = [path for path in pending if path not in done]
                if pending:
                    time.sleep(0.5)

    senders = [threading.Thread(target=send, args=(receivers[n], files[n::2])) for n in range(2)]
    for sender in senders:
        sender.start()

    def after(fraction: float) -> None:
        wait_until(lambda: len(acked) >= fraction * len(files)
                   or not any(s.is_alive() for s in senders), 240, f"{fraction:.0%} acknowledged")

    after(0.2)
    processors[0].kill()
    processors[0].start(wait_ready=False)
    after(0.35)
    receivers[1].kill()  # mid-association: its sender keeps sending
    receivers[1].start()
    after(0.5)
    database.stop("fast")
    database.start()
    after(0.7)
    processors[0].kill()  # again, before it may even be ready
    processors[0].start(wait_ready=False)
    for sender in senders:
        sender.join()
    assert len(set(acked)) == len(files)

    wait_until(lambda: receivers[0].spool_counts().keys() <= {"done"}, 240,
               "the queue to finish every job")
    numbers = [int(orthanc.tags(instance["ID"])["InstanceNumber"])
               for instance in orthanc.instances()]
    assert len(numbers) == len(set(numbers)), "an instance reached Orthanc twice"
    assert {int(Path(path).stem) for path in acked} <= set(numbers), \
        "an acknowledged instance never reached Orthanc"
    for instance in orthanc.instances():
        tags = orthanc.tags(instance["ID"])
        assert tags["PatientName"] != "Hopper^Grace^Brewster"
        if tags["Modality"] != "OT":
            assert tags["RecognizableVisualFeatures"] == "NO", "an unmasked photo reached the PACS"
    assert len(list((tmp_path / "shared" / "outputs").iterdir())) == 0
