"""The spool's state machine, crash recovery, retention, limits and file hygiene, asserted on
every backend: the embedded folder + SQLite, and the scale-out one on a real PostgreSQL server
(one per run, a fresh database per test) with its payloads in a shared folder or in an S3
endpoint (moto's server).

The tests that stay on the embedded spool say why in their docstrings: its file layout, its
schema versions and its own disk are what they assert (the scale-out queue's schema, leases and
outages are in :mod:`tests.test_postgres_spool`).
"""

from __future__ import annotations

import inspect
import os
import sqlite3
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from gateway.cli import app
from gateway.config import FolderPayloads, S3Payloads
from gateway.errors import SpoolFull, SpoolSchemaError
from gateway.store import queue
from gateway.store.payload_store import FolderStore, Payloads, S3Store
from gateway.store.postgres_spool import PostgresSpool, upgrade_schema
from gateway.store.queue import HeldInstance, Job, JobState, Spool
from gateway.store.sqlite_spool import SCHEMA_VERSION, FolderSpool
from tests.support.small_disk import fill, small_disk
from tests.support.spools import receive, received_file

#: Every backend and where it keeps originals: the embedded spool as files (large instances) or
#: in its database (small ones); the scale-out one in a shared folder or an S3 bucket.
BACKENDS = ["sqlite-file", "sqlite-database", "postgresql-folder", "postgresql-s3"]
SpoolFactory = Callable[..., Spool]


def payload_store(request: pytest.FixtureRequest, kind: str, folder: Path) -> Payloads:
    """A payload store of ``kind`` (folder or s3) on real servers started for the run."""
    if kind == "folder":
        return FolderStore(FolderPayloads(type="folder", path=folder))
    s3 = request.getfixturevalue("s3")
    from tests.support.s3 import ACCESS_KEY, SECRET_KEY

    os.environ.setdefault("DMASK_TEST_S3_KEY", ACCESS_KEY)
    os.environ.setdefault("DMASK_TEST_S3_SECRET", SECRET_KEY)
    bucket = s3.new_bucket(f"spool-{time.monotonic_ns()}")
    return S3Store(S3Payloads(type="s3", bucket=bucket, endpoint_url=s3.url,
                              access_key_id={"env": "DMASK_TEST_S3_KEY"},  # type: ignore[arg-type]
                              secret_access_key={"env": "DMASK_TEST_S3_SECRET"}))  # type: ignore[arg-type]


@pytest.fixture(params=BACKENDS)
def make_spool(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SpoolFactory]:
    """Opens spools of one backend on shared state (one folder, or one database and store).

    Each call is another process on that state: on PostgreSQL another node with a local folder
    of its own, or with ``restart_of=spool`` the same node started again (after a crash).
    ``inline_max_bytes`` is the embedded spool's own and is fixed by the parameter.
    """
    backend, storage = request.param.split("-")
    opened: list[Spool] = []
    if backend == "sqlite":
        inline = 0 if storage == "file" else 1 << 20

        def factory(*, restart_of: Spool | None = None, **options: Any) -> Spool:
            spool = FolderSpool(tmp_path / "spool", inline_max_bytes=inline, **options)
            opened.append(spool)
            return spool
    else:
        dsn = request.getfixturevalue("postgres").new_database()
        upgrade_schema(dsn)
        payloads = payload_store(request, storage, tmp_path / "shared")

        def factory(*, restart_of: Spool | None = None, **options: Any) -> Spool:
            if isinstance(restart_of, PostgresSpool):
                node, path = restart_of.node, restart_of.path
            else:
                node, path = f"node{len(opened)}", tmp_path / f"node{len(opened)}"
            spool = PostgresSpool(dsn, payloads, path, node=node, **options)
            opened.append(spool)
            return spool
    yield factory
    for spool in opened:
        spool.close()


def _user_version(spool_path: Path) -> int:
    db = sqlite3.connect(spool_path / "state.sqlite")
    try:
        return int(db.execute("PRAGMA user_version").fetchone()[0])
    finally:
        db.close()


def _set_user_version(spool_path: Path, version: int) -> None:
    db = sqlite3.connect(spool_path / "state.sqlite")
    db.execute(f"PRAGMA user_version = {version}")
    db.close()


def _has_original(spool: Spool, job: Job) -> bool:
    if job.original is not None:
        return job.original.exists()
    try:
        return bool(spool.original(job))
    except LookupError:
        return False


def _deliver_all(spool: Spool, job_id: int, destinations: tuple[str, ...] = ("pacs",)) -> JobState:
    """Record a claimed job's round in which every destination took the result."""
    return spool.record_deliveries(job_id, list(destinations), {}, None,
                                   output=spool.output_path(job_id), destinations=list(destinations))


def test_admit_moves_a_large_file_into_the_spool_with_0600(tmp_path: Path) -> None:
    """The embedded spool's own file layout (a PostgreSQL node keeps originals in the payload
    store, not in its folder)."""
    spool = FolderSpool(tmp_path / "spool", inline_max_bytes=100)
    job_id = receive(spool)
    (job,) = spool.jobs()
    assert job.id == job_id and job.state is JobState.RECEIVED
    assert job.original is not None and spool.original(job) == job.original
    assert stat.S_IMODE(job.original.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "spool").stat().st_mode) == 0o700
    for database_file in (tmp_path / "spool").glob("state.sqlite*"):
        assert stat.S_IMODE(database_file.stat().st_mode) == 0o600
    assert not list(spool.incoming_dir().iterdir())


def test_admit_keeps_a_small_instance_in_the_database(tmp_path: Path) -> None:
    """Small originals inside SQLite are the embedded spool's own (PostgreSQL rows never hold
    payloads)."""
    spool = FolderSpool(tmp_path / "spool", inline_max_bytes=400)
    job_id = receive(spool, b"DICM" * 100)
    (job,) = spool.jobs()
    assert job.id == job_id and job.original is None
    assert spool.original(job) == b"DICM" * 100
    assert not list((spool.path / "originals").iterdir())
    assert not list(spool.incoming_dir().iterdir())


def test_full_round_trip_deletes_original_and_output(make_spool: SpoolFactory) -> None:
    spool = make_spool()
    job_id = receive(spool)
    job = spool.claim()
    assert job is not None and job.id == job_id and job.state is JobState.PROCESSING
    assert spool.claim() is None
    output = spool.output_path(job_id)
    output.write_bytes(b"out")
    assert spool.record_deliveries(job_id, ["folder"], {"pacs": "forward-failed"},
                                   next_at=time.time() + 60, output=output,
                                   destinations=["pacs", "folder"]) is JobState.RETRY
    assert spool.claim() is None  # not due yet
    job = spool.claim(now=time.time() + 61)
    assert job is not None and job.pending == ("pacs",) and job.output == output
    assert spool.record_deliveries(job_id, ["pacs"], {}, None) is JobState.DONE
    assert not output.exists() and _has_original(spool, job)
    assert spool.purge() == 1  # no retention: the next purge removes the original
    assert not _has_original(spool, job) and spool.purge() == 0
    assert spool.counts() == {("done", None): 1}


def test_dead_letter_and_requeue(make_spool: SpoolFactory) -> None:
    spool = make_spool()
    job_id = receive(spool)
    spool.claim()
    assert spool.record_deliveries(job_id, [], {"pacs": "forward-failed"}, None,
                                   output=spool.output_path(job_id), destinations=["pacs"]) \
        is JobState.QUARANTINED
    other = receive(spool)
    spool.claim()
    spool.quarantine(other, "no-face")
    assert spool.counts() == {("quarantined", "forward-failed"): 1, ("quarantined", "no-face"): 1}
    assert spool.requeue() == 0
    assert spool.requeue(reason="no-face") == 1
    assert [j.id for j in spool.jobs(JobState.RECEIVED)] == [other]
    assert spool.requeue(all_failed=True) == 1
    job = spool.jobs(JobState.RECEIVED)[0]
    assert job.destinations == () and job.output is None and _has_original(spool, job)


def test_a_delivered_destination_is_never_pending_again(make_spool: SpoolFactory) -> None:
    """The delivery ledger outlives the result: a round that had to run the pipeline again
    (its kept result lost) reports every destination of the route, and the one that had the
    result already stays delivered, on another process (PostgreSQL: another node) too."""
    first, second = make_spool(), make_spool()
    job_id = receive(first)
    assert first.claim() is not None
    output = first.output_path(job_id)
    output.write_bytes(b"result")
    assert first.record_deliveries(job_id, ["a"], {"b": "forward-failed"}, time.time() - 1,
                                   output=output, destinations=["a", "b"]) is JobState.RETRY
    retry = second.claim()
    assert retry is not None and retry.pending == ("b",) and retry.output is not None
    assert retry.output.read_bytes() == b"result"  # on a PostgreSQL node: fetched from the store
    assert second.record_deliveries(job_id, ["b"], {}, None, output=second.output_path(job_id),
                                    destinations=["a", "b"]) is JobState.DONE
    (job,) = second.jobs()
    assert job.destinations == ("a", "b") and job.pending == ()


def test_done_jobs_are_forgotten_after_their_history(make_spool: SpoolFactory) -> None:
    """A done job keeps its original for ``retention``, then its row (state, ledger, UIDs)
    until ``history``: listed and committed (storage commitment) until then, gone after."""
    spool = make_spool(retention=60, history=3600)
    job_id = spool.admit(received_file(spool), calling_ae="CAMERA1", called_ae="DMASK",
                         sop_class_uid="1.2.3", sop_instance_uid="1.2.3.4")
    job = spool.claim()
    assert job is not None
    _deliver_all(spool, job_id)
    now = time.time()
    assert spool.purge(now=now + 61) == 1
    assert not _has_original(spool, job)
    assert spool.counts() == {("done", None): 1}
    assert spool.held_instances(["1.2.3.4"]) == {"1.2.3.4": HeldInstance("1.2.3", JobState.DONE)}
    assert spool.purge(now=now + 3601) == 0
    assert spool.counts() == {} and spool.jobs() == []
    assert spool.held_instances(["1.2.3.4"]) == {}
    assert spool.requeue([job_id]) == 0


def test_a_done_row_outlives_its_original(make_spool: SpoolFactory) -> None:
    """A history shorter than the retention counts as the retention: a row never goes while it
    still names an original, which would then be left behind."""
    spool = make_spool(retention=3600, history=0)
    job_id = receive(spool)
    job = spool.claim()
    assert job is not None
    _deliver_all(spool, job_id)
    now = time.time()
    assert spool.purge(now=now + 60) == 0
    assert [j.id for j in spool.jobs(JobState.DONE)] == [job_id] and _has_original(spool, job)
    assert spool.purge(now=now + 3601) == 1
    assert spool.jobs() == [] and not _has_original(spool, job)


def test_forgetting_done_jobs_keeps_the_ledger_of_unfinished_ones(make_spool: SpoolFactory) -> None:
    """Only done jobs go: a job still retrying keeps its ledger through every purge, so when it
    is redone after a crash (the pipeline again) the destination that had it is not sent it."""
    spool = make_spool(history=0)
    done, retrying, quarantined = receive(spool), receive(spool), receive(spool)
    for _ in range(3):
        assert spool.claim() is not None
    _deliver_all(spool, done, ("a", "b"))
    spool.record_deliveries(retrying, ["a"], {"b": "forward-failed"}, time.time() + 60,
                            output=spool.output_path(retrying), destinations=["a", "b"])
    spool.quarantine(quarantined, "no-face")
    assert spool.purge(now=time.time() + 86400) == 1
    assert {j.id: j.state for j in spool.jobs()} == {retrying: JobState.RETRY,
                                                     quarantined: JobState.QUARANTINED}
    assert spool.claim(now=time.time() + 61) is not None
    spool.close()  # a crash while the round runs

    restarted = make_spool(restart_of=spool, history=0)
    assert restarted.recover() == 1
    redo = restarted.claim(now=time.time() + 61)
    assert redo is not None and redo.id == retrying and redo.pending == ("b",)
    assert restarted.record_deliveries(retrying, ["b"], {}, None,
                                       output=restarted.output_path(retrying),
                                       destinations=["a", "b"]) is JobState.DONE
    restarted.purge(now=time.time() + 1)
    assert [(j.id, j.state) for j in restarted.jobs()] == [(quarantined, JobState.QUARANTINED)]
    assert restarted.requeue(reason="no-face") == 1


def test_recover_after_crash(make_spool: SpoolFactory) -> None:
    """A restarted process puts back what it held and removes the files no job owns: on the
    embedded spool an original renamed but never committed, on a PostgreSQL node its working
    copies; partial receives on both."""
    spool = make_spool()
    first, second = receive(spool), receive(spool)
    spool.claim()
    spool.claim()
    spool.record_deliveries(second, [], {"pacs": "forward-failed"}, time.time() + 10,
                            output=spool.output_path(second), destinations=["pacs"])
    spool.claim(now=time.time() + 11)
    orphan = spool.incoming_dir().parent / "originals" / "orphan.dcm"
    orphan.write_bytes(b"renamed but never committed")
    partial = spool.incoming_dir() / "partial.dcm"
    partial.write_bytes(b"half")
    spool.close()

    reopened = make_spool(restart_of=spool)
    assert reopened.recover() == 2
    states = {job.id: job.state for job in reopened.jobs()}
    assert states == {first: JobState.RECEIVED, second: JobState.RETRY}
    assert not orphan.exists() and not partial.exists()


def test_capacity_limits_raise_spool_full_and_remove_the_file(make_spool: SpoolFactory) -> None:
    spool = make_spool(max_bytes=1000)
    receive(spool, b"x" * 600)
    with pytest.raises(SpoolFull):
        receive(spool, b"x" * 600)
    assert not list(spool.incoming_dir().iterdir())
    huge_floor = make_spool(min_free_bytes=1 << 62)
    with pytest.raises(SpoolFull):
        huge_floor.check_capacity()


def test_retention_keeps_original_until_purged(make_spool: SpoolFactory, tmp_path: Path) -> None:
    spool = make_spool(retention=3600)
    job_id = receive(spool, b"secret pixels")
    job = spool.claim()
    assert job is not None
    spool.record_deliveries(job_id, ["folder"], {}, None, output=spool.output_path(job_id),
                            destinations=["folder"])
    assert _has_original(spool, job)
    assert spool.purge() == 0
    assert spool.purge(now=time.time() + 3601) == 1
    assert not _has_original(spool, job)
    spool.close()  # checkpoints the write-ahead log into the database file
    for path in tmp_path.rglob("*"):
        assert not path.is_file() or b"secret pixels" not in path.read_bytes()


def test_second_process_sees_committed_jobs(make_spool: SpoolFactory) -> None:
    spool = make_spool()
    job_id = receive(spool)
    pid = os.fork()
    if pid == 0:  # a separate process, like `dmask queue` next to `dmask serve`
        other = make_spool()
        os._exit(0 if [j.id for j in other.jobs()] == [job_id] else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.parametrize("backend", [FolderSpool, PostgresSpool])
def test_every_backend_implements_every_method_of_the_spool_protocol(tmp_path: Path,
                                                                    backend: type) -> None:
    if backend is FolderSpool:
        spool: Spool = FolderSpool(tmp_path / "spool")  # mypy checks the structure here
        spool.close()
    protocols = [cls for cls in Spool.__mro__ if cls.__module__ == queue.__name__]
    methods = {name for cls in protocols for name in vars(cls) if not name.startswith("_")}
    assert {"admit", "claim", "release", "purge", "counts", "jobs", "requeue", "close"} <= methods
    for name in methods:
        assert inspect.signature(getattr(backend, name)) == inspect.signature(getattr(Spool, name)), name


def test_a_new_database_gets_the_current_schema_version(tmp_path: Path) -> None:
    """SQLite's schema versions (PostgreSQL's are tests.test_postgres_spool's)."""
    FolderSpool(tmp_path / "spool").close()
    assert _user_version(tmp_path / "spool") == SCHEMA_VERSION


@pytest.mark.parametrize("missing_table", [None, "original_data"], ids=["current", "no-inline-originals"])
def test_an_unversioned_spool_database_is_adopted(tmp_path: Path, missing_table: str | None) -> None:
    """Spools written before the schema had a version (0), also from before small originals were
    kept in the database, keep their jobs (SQLite's own history: PostgreSQL queues always had
    a version)."""
    spool = FolderSpool(tmp_path / "spool", inline_max_bytes=0)
    job_id = receive(spool)
    spool.close()
    _set_user_version(tmp_path / "spool", 0)
    if missing_table is not None:
        db = sqlite3.connect(tmp_path / "spool" / "state.sqlite")
        db.execute(f"DROP TABLE {missing_table}")
        db.close()

    reopened = FolderSpool(tmp_path / "spool", inline_max_bytes=0)
    assert [job.id for job in reopened.jobs()] == [job_id]
    assert reopened.claim() is not None
    reopened.close()
    assert _user_version(tmp_path / "spool") == SCHEMA_VERSION


def test_a_version_2_database_gets_the_indexes_of_done_jobs(tmp_path: Path) -> None:
    """SQLite's own upgrade path (PostgreSQL's: ``dmask db upgrade``, tests.test_postgres_spool)."""
    FolderSpool(tmp_path / "spool").close()
    db = sqlite3.connect(tmp_path / "spool" / "state.sqlite")
    db.execute("DROP INDEX jobs_done_holding")
    db.execute("DROP INDEX jobs_done_purged")
    db.execute("PRAGMA user_version = 2")
    db.close()

    reopened = FolderSpool(tmp_path / "spool")
    assert reopened.purge() == 0  # its queries name the indexes
    reopened.close()
    db = sqlite3.connect(tmp_path / "spool" / "state.sqlite")
    indexes = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    db.close()
    assert {"jobs_done_holding", "jobs_done_purged"} <= indexes
    assert _user_version(tmp_path / "spool") == SCHEMA_VERSION == 3


def test_a_version_1_database_gets_the_instances_table(tmp_path: Path) -> None:
    """A spool of version 1 keeps its jobs; they are unknown to storage commitment (no UIDs).
    SQLite's own upgrade path (PostgreSQL's: ``dmask db upgrade``, tests.test_postgres_spool)."""
    spool = FolderSpool(tmp_path / "spool")
    job_id = receive(spool)
    spool.close()
    db = sqlite3.connect(tmp_path / "spool" / "state.sqlite")
    db.execute("DROP TABLE instances")
    db.execute("PRAGMA user_version = 1")
    db.close()

    reopened = FolderSpool(tmp_path / "spool")
    assert [job.id for job in reopened.jobs()] == [job_id]
    reopened.admit(received_file(reopened), calling_ae="CAMERA1", called_ae="DMASK",
                   sop_class_uid="1.2.3", sop_instance_uid="1.2.3.4")
    assert reopened.held_instances(["1.2.3.4"]) == {"1.2.3.4": HeldInstance("1.2.3", JobState.RECEIVED)}
    reopened.close()
    assert _user_version(tmp_path / "spool") == SCHEMA_VERSION


def test_held_instances_are_found_by_their_original_uid(make_spool: SpoolFactory) -> None:
    spool = make_spool()

    def admit(uid: str) -> int:
        return spool.admit(received_file(spool), calling_ae="CAMERA1", called_ae="DMASK",
                           sop_class_uid="1.2.840.10008.5.1.4.1.1.77.1.4", sop_instance_uid=uid)

    delivered, quarantined, again = admit("2.2"), admit("2.3"), admit("2.4")
    for _ in range(3):
        assert spool.claim() is not None
    admit("2.1")
    receive(spool)  # admitted without its UIDs
    spool.record_deliveries(delivered, ["pacs"], {}, None, destinations=["pacs"],
                            output=spool.output_path(delivered))
    spool.purge(now=time.time() + 1)
    spool.quarantine(quarantined, "NO_FACE")
    spool.quarantine(again, "NO_FACE")
    admit("2.4")  # sent again after its quarantine: held now

    states = {uid: held.state for uid, held in spool.held_instances(["2.1", "2.2", "2.3", "2.4", "9.9"]).items()}
    assert states == {"2.1": JobState.RECEIVED, "2.2": JobState.DONE,
                      "2.3": JobState.QUARANTINED, "2.4": JobState.RECEIVED}
    assert spool.held_instances([]) == {}
    many = [f"3.{n}" for n in range(1200)]
    assert spool.held_instances(many + ["2.1"]).keys() == {"2.1"}


def test_an_unversioned_database_of_other_tables_is_refused(tmp_path: Path) -> None:
    """Adopting an unversioned file is SQLite's own (a PostgreSQL queue without a version is
    refused outright: tests.test_postgres_spool)."""
    (tmp_path / "spool").mkdir()
    db = sqlite3.connect(tmp_path / "spool" / "state.sqlite")
    db.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY, payload BLOB)")
    db.close()
    with pytest.raises(SpoolSchemaError, match="table 'jobs' is not the spool's"):
        FolderSpool(tmp_path / "spool")
    assert _user_version(tmp_path / "spool") == 0


def test_a_newer_schema_version_is_refused(tmp_path: Path) -> None:
    """SQLite's schema versions (PostgreSQL's are tests.test_postgres_spool's)."""
    FolderSpool(tmp_path / "spool").close()
    _set_user_version(tmp_path / "spool", SCHEMA_VERSION + 1)
    with pytest.raises(SpoolSchemaError, match=f"schema version is {SCHEMA_VERSION + 1}") as caught:
        FolderSpool(tmp_path / "spool")
    assert caught.value.reason == "spool-schema"
    assert _user_version(tmp_path / "spool") == SCHEMA_VERSION + 1


@pytest.mark.parametrize("command", [["serve"], ["queue"], ["requeue", "--all-failed"]])
def test_commands_report_a_spool_of_a_newer_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    command: list[str]) -> None:
    """SQLite's schema versions; for PostgreSQL, serve and db upgrade are in
    tests.test_postgres_spool."""
    from gateway.ops.service import Gateway

    monkeypatch.setattr(Gateway, "run", lambda _: pytest.fail("serve started on a spool it cannot read"))
    monkeypatch.setenv("DMASK_SPOOL_TEST_SECRET", "0123456789abcdef0123456789abcdef")
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump({
        "listener": {"allowed_callers": [{"ae_title": "CAMERA1"}]},
        "spool": {"path": str(tmp_path / "spool")},
        "destinations": {"out": {"type": "folder", "path": str(tmp_path / "out")}},
        "profiles": {"tags-only": {"mask": None}},
        "routes": [{"name": "all", "profile": "tags-only", "destinations": ["out"]}],
        "secret": {"env": "DMASK_SPOOL_TEST_SECRET"},
    }))
    FolderSpool(tmp_path / "spool").close()
    _set_user_version(tmp_path / "spool", SCHEMA_VERSION + 1)

    result = CliRunner().invoke(app, [*command, "--config", str(config)], catch_exceptions=False)
    assert result.exit_code == 2
    assert result.stderr.startswith("spool-schema: ")
    assert f"schema version is {SCHEMA_VERSION + 1}" in result.stderr


# -- a full disk: every write refused for lack of space is SpoolFull, and nothing is lost -----
# The embedded spool keeps its state and originals on this disk. A PostgreSQL node's state is
# on the database server and its payloads in the shared store: its local disk holds only what
# it is receiving and working on, so these tests are the embedded spool's.


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB file system of its own, to fill up."""
    with small_disk(tmp_path / "disk", 4 << 20) as folder:
        yield folder


def test_a_full_disk_refuses_instances_until_space_is_freed(disk: Path) -> None:
    """On the embedded spool's own disk (see above)."""
    spool = FolderSpool(disk / "spool")
    first = receive(spool)
    received = received_file(spool, b"x" * 100_000)
    # Room for the instance as the free-space check counts it, not for the database's log.
    filler = fill(disk, leave=100_000 + 4096)
    with pytest.raises(SpoolFull, match="disk is full"):
        spool.admit(received, calling_ae="CAMERA1", called_ae="DMASK")
    assert not received.exists() and not list((spool.path / "originals").iterdir())
    assert [job.id for job in spool.jobs()] == [first]
    # The bytes it could not keep are gone again, but that is no room for the next instance.
    with pytest.raises(SpoolFull, match="waiting for space to be freed"):
        spool.check_capacity()
    filler.unlink()
    spool.check_capacity()
    second = receive(spool, b"x" * 100_000)
    assert [job.id for job in spool.jobs()] == [first, second]


def test_a_disk_without_a_free_byte_is_full_even_without_a_floor(disk: Path) -> None:
    """On the embedded spool's own disk (see above). Readiness asks with no size: with a floor
    of 0, a spool opened before its disk filled up took a full disk for one with room."""
    spool = FolderSpool(disk / "spool", min_free_bytes=0)
    filler = fill(disk)
    with pytest.raises(SpoolFull, match="disk is full"):
        spool.check_capacity()
    filler.unlink()
    spool.check_capacity()
    receive(spool)


def test_state_changes_on_a_full_disk_leave_jobs_as_they_were(disk: Path) -> None:
    """On the embedded spool's own disk (see above)."""
    spool = FolderSpool(disk / "spool")
    ids = [receive(spool) for _ in range(3)]
    delivered, rejected = spool.claim(), spool.claim()
    assert delivered is not None and rejected is not None
    output = spool.output_path(delivered.id)
    output.write_bytes(b"result")
    filler = fill(disk)
    with pytest.raises(SpoolFull):
        spool.record_deliveries(delivered.id, ["pacs"], {}, None, output=output,
                                destinations=["pacs"])
    with pytest.raises(SpoolFull):
        spool.quarantine(rejected.id, "no-face")
    with pytest.raises(SpoolFull):
        spool.release(rejected.id)
    with pytest.raises(SpoolFull):
        spool.claim()
    states = {job.id: job.state for job in spool.jobs()}
    assert states == {ids[0]: JobState.PROCESSING, ids[1]: JobState.PROCESSING,
                      ids[2]: JobState.RECEIVED}
    assert output.exists()

    filler.unlink()
    assert spool.record_deliveries(delivered.id, ["pacs"], {}, None, output=output,
                                   destinations=["pacs"]) is JobState.DONE
    spool.quarantine(rejected.id, "no-face")
    assert spool.purge() == 1
    third = spool.claim()
    assert third is not None and third.id == ids[2]
    assert not output.exists()


def test_a_spool_that_cannot_open_on_a_full_disk_says_so(disk: Path) -> None:
    """On the embedded spool's own disk (see above)."""
    FolderSpool(disk / "spool").close()  # a clean close removes the write-ahead log's index
    filler = fill(disk)
    with pytest.raises(SpoolFull, match="too full to open"):
        FolderSpool(disk / "spool")
    filler.unlink()
    FolderSpool(disk / "spool").close()


def test_recovery_removes_partial_receives_before_it_needs_the_disk(disk: Path) -> None:
    """Partial receives filled the disk: the receiver removes them before opening the
    database, and recovery commits once they are gone; still full, it raises SpoolFull (on the
    embedded spool's own disk, see above)."""
    spool = FolderSpool(disk / "spool")
    job_id = receive(spool)
    assert spool.claim() is not None
    spool.close()
    partial = received_file(spool, b"half" * 100_000)
    fill(disk)
    reopened = FolderSpool(disk / "spool", receiver=True)
    assert not partial.exists()
    assert reopened.recover() == 1
    assert [job.state for job in reopened.jobs()] == [JobState.RECEIVED]

    assert reopened.claim() is not None
    fill(disk)
    partial = reopened.incoming_dir() / "partial.dcm"
    with pytest.raises(SpoolFull):
        reopened.recover()
    assert [(job.id, job.state) for job in reopened.jobs()] == [(job_id, JobState.PROCESSING)]
    (disk / "filler").unlink()
    assert reopened.recover() == 1
