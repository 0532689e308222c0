"""The scale-out queue on a real PostgreSQL server: leases, takeovers, late outcomes, schema
versions and outages (what :mod:`tests.test_spool` cannot say for every backend; the state
machine, the delivery ledger and retention are asserted there on both)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import yaml
from typer.testing import CliRunner

from gateway.cli import app
from gateway.config import FolderPayloads
from gateway.errors import SpoolSchemaError, SpoolUnavailable
from gateway.store.payload_store import FolderStore
from gateway.store.postgres_spool import SCHEMA_VERSION, PostgresSpool, upgrade_schema
from gateway.store.queue import JobState
from tests.support.postgres import PostgresServer
from tests.support.spools import receive

LEASE = 1.0


@pytest.fixture
def dsn(postgres: PostgresServer) -> str:
    database = postgres.new_database()
    upgrade_schema(database)
    return database


@pytest.fixture
def nodes(dsn: str, tmp_path: Path) -> Iterator[list[PostgresSpool]]:
    """Two processors (and receivers) on one queue and one shared payload folder."""
    payloads = FolderStore(FolderPayloads(type="folder", path=tmp_path / "shared"))
    opened = [PostgresSpool(dsn, payloads, tmp_path / name, node=name, lease=LEASE)
              for name in ("first", "second")]
    yield opened
    for spool in opened:
        spool.close()


def _taken_over(first: PostgresSpool, second: PostgresSpool, dsn: str) -> int:
    """A job claimed by ``first``, which then stalls past its lease, and taken over by
    ``second``; its id."""
    job_id = receive(first)
    assert first.claim() is not None
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute("UPDATE jobs SET lease_until = 0 WHERE id = %s", (job_id,))
    taken = second.claim()
    assert taken is not None and taken.id == job_id
    return job_id


def test_a_live_processor_keeps_its_jobs_past_the_lease(nodes: list[PostgresSpool]) -> None:
    first, second = nodes
    job_id = receive(first)
    assert (job := first.claim()) is not None and job.id == job_id
    time.sleep(2.5 * LEASE)  # the heartbeat renews the lease meanwhile
    assert second.claim() is None
    assert first.record_deliveries(job_id, ["pacs"], {}, None, destinations=["pacs"],
                                   output=first.output_path(job_id)) is JobState.DONE


def test_a_dead_processors_job_is_taken_over_after_its_lease(nodes: list[PostgresSpool]) -> None:
    first, second = nodes
    job_id = receive(second)
    assert first.claim() is not None
    first.close()  # dies: no heartbeat, no release
    assert second.claim() is None  # the lease still runs
    time.sleep(1.5 * LEASE)
    taken = second.claim()
    assert taken is not None and taken.id == job_id and taken.state is JobState.PROCESSING
    assert second.claim() is None  # one holder at a time
    assert second.record_deliveries(job_id, ["pacs"], {}, None, destinations=["pacs"],
                                    output=second.output_path(job_id)) is JobState.DONE
    assert second.counts() == {("done", None): 1}


def test_an_outcome_from_a_processor_that_lost_its_lease_changes_no_state(
        nodes: list[PostgresSpool], dsn: str, tmp_path: Path) -> None:
    first, second = nodes
    job_id = _taken_over(first, second, dsn)
    # first sent to "a" before it stalled: the ledger keeps that, the state stays second's.
    assert first.record_deliveries(job_id, ["a"], {"b": "forward-failed"}, time.time(),
                                   destinations=["a", "b"], output=first.output_path(job_id)) \
        is JobState.PROCESSING
    (job,) = second.jobs()
    assert job.state is JobState.PROCESSING and job.pending == ("b",) and job.destinations == ("a", "b")


def test_a_late_outcome_for_a_job_finished_and_forgotten_changes_nothing(
        nodes: list[PostgresSpool], dsn: str, tmp_path: Path) -> None:
    """A processor that stalled past its lease reports after another one finished the job and
    a purge deleted its row: nothing is recorded (no ledger row without its job), nothing
    fails, and the result it kept for a retry is not left in the store."""
    first, second = nodes
    job_id = _taken_over(first, second, dsn)
    assert second.record_deliveries(job_id, ["a", "b"], {}, None, destinations=["a", "b"],
                                    output=second.output_path(job_id)) is JobState.DONE
    second.history = 0
    second.purge(now=time.time() + 1)
    assert second.jobs() == []
    output = first.output_path(job_id)
    output.write_bytes(b"late result")
    assert first.record_deliveries(job_id, ["a"], {"b": "forward-failed"}, time.time(),
                                   destinations=["a", "b"], output=output) is JobState.PROCESSING
    assert second.jobs() == []
    assert not list((tmp_path / "shared" / "outputs").iterdir())


def test_a_version_2_database_is_upgraded_to_the_indexes_of_done_jobs(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute("DROP INDEX jobs_done_holding")
        db.execute("DROP INDEX jobs_done_purged")
        db.execute("UPDATE dmask_schema SET version = 2")
    assert upgrade_schema(dsn) == (2, SCHEMA_VERSION)
    with psycopg.connect(dsn, autocommit=True) as db:
        indexes = {row[0] for row in db.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'jobs'")}
    assert {"jobs_done_holding", "jobs_done_purged"} <= indexes


def test_a_round_that_reached_every_destination_keeps_no_result_in_the_store(
        nodes: list[PostgresSpool], tmp_path: Path) -> None:
    """Only a result some destination still needs is copied to the shared store."""
    first, _ = nodes
    job_id = receive(first)
    assert first.claim() is not None
    output = first.output_path(job_id)
    output.write_bytes(b"result")
    assert first.record_deliveries(job_id, ["a", "b"], {}, None, output=output,
                                   destinations=["a", "b"]) is JobState.DONE
    assert not output.exists()
    assert list((tmp_path / "shared" / "outputs").iterdir()) == []
    (job,) = first.jobs()
    assert job.destinations == ("a", "b") and job.pending == () and job.output is None


def test_a_database_without_tables_or_of_another_version_is_refused(
        postgres: PostgresServer, tmp_path: Path) -> None:
    payloads = FolderStore(FolderPayloads(type="folder", path=tmp_path / "shared"))
    empty = postgres.new_database()
    with pytest.raises(SpoolSchemaError, match="no queue tables"):
        PostgresSpool(empty, payloads, tmp_path / "node", node="n")
    assert upgrade_schema(empty) == (0, SCHEMA_VERSION)
    assert upgrade_schema(empty) == (SCHEMA_VERSION, SCHEMA_VERSION)
    with psycopg.connect(empty, autocommit=True) as db:
        db.execute("UPDATE dmask_schema SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(SpoolSchemaError, match=f"schema version {SCHEMA_VERSION + 1}"):
        PostgresSpool(empty, payloads, tmp_path / "node", node="n")
    with pytest.raises(SpoolSchemaError, match="knows versions up to"):
        upgrade_schema(empty)


def test_db_upgrade_and_serve_read_the_dsn_from_the_environment(
        postgres: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.ops.service import Gateway

    monkeypatch.setattr(Gateway, "run", lambda _: None)
    monkeypatch.setenv("DMASK_TEST_KEY", "0123456789abcdef0123456789abcdef")
    monkeypatch.setenv("DMASK_TEST_DSN", postgres.new_database())
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump({
        "listener": {"allowed_callers": [{"ae_title": "CAMERA1"}]},
        "spool": {"backend": "postgresql", "path": str(tmp_path / "node"),
                  "dsn": {"env": "DMASK_TEST_DSN"},
                  "payloads": {"type": "folder", "path": str(tmp_path / "shared")}},
        "destinations": {"out": {"type": "folder", "path": str(tmp_path / "out")}},
        "profiles": {"tags-only": {"mask": None}},
        "routes": [{"name": "all", "profile": "tags-only", "destinations": ["out"]}],
        "secret": {"env": "DMASK_TEST_KEY"},
    }))
    runner = CliRunner()
    refused = runner.invoke(app, ["serve", "--role", "process", "--config", str(config)])
    assert refused.exit_code == 2 and "dmask db upgrade" in refused.stderr
    upgraded = runner.invoke(app, ["db", "upgrade", "--config", str(config)])
    assert upgraded.exit_code == 0 and upgraded.stdout == f"schema version {SCHEMA_VERSION} (was 0)\n"
    assert runner.invoke(app, ["serve", "--role", "process", "--config", str(config)]).exit_code == 0
    assert runner.invoke(app, ["queue", "--config", str(config)]).exit_code == 0
    monkeypatch.delenv("DMASK_TEST_DSN")
    missing = runner.invoke(app, ["queue", "--config", str(config)])
    assert missing.exit_code == 2 and "environment variable DMASK_TEST_DSN" in missing.stderr


def test_admission_fails_while_the_database_is_down_and_resumes_after(tmp_path: Path) -> None:
    """A separate server: stopping the run's shared one would fail other tests."""
    from tests.support import postgres as support

    if not support.available():
        pytest.skip("PostgreSQL 15 binaries are not installed")
    server = PostgresServer()
    server.start()
    try:
        dsn = server.new_database()
        upgrade_schema(dsn)
        payloads = FolderStore(FolderPayloads(type="folder", path=tmp_path / "shared"))
        spool = PostgresSpool(dsn, payloads, tmp_path / "node", node="n")
        first = receive(spool)
        server.stop()
        with pytest.raises(SpoolUnavailable):
            receive(spool)
        assert not list(spool.incoming_dir().iterdir())
        assert not list((tmp_path / "shared" / "originals").iterdir())[1:]  # only the first
        with pytest.raises(SpoolUnavailable):
            spool.check_capacity()
        server.start()
        second = receive(spool)
        assert [job.id for job in spool.jobs()] == [first, second]
        spool.close()
    finally:
        server.close()


def test_a_restarted_node_gives_back_its_earlier_claims_at_once(
        nodes: list[PostgresSpool], dsn: str, tmp_path: Path) -> None:
    first, second = nodes
    mine, theirs = receive(first), receive(first)
    assert first.claim() is not None and second.claim() is not None
    first.close()  # killed
    restarted = PostgresSpool(dsn, first.payloads, tmp_path / "first", node="first", lease=LEASE)
    try:
        assert restarted.recover() == 1
        states = {job.id: job.state for job in restarted.jobs()}
        assert states == {mine: JobState.RECEIVED, theirs: JobState.PROCESSING}
    finally:
        restarted.close()
