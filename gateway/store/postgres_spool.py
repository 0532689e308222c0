"""The scale-out spool: job rows in one PostgreSQL database, payloads in a shared store.

Many receivers admit into it and many processors claim from it; each node keeps only partial
receives and the files it is working on in its local folder (``spool.path``), so a node can be
replaced at any time.

- Admission: the payload is stored (:mod:`gateway.store.payload_store`) and only then its row
  is committed with a synchronous commit; receive answers Success after both. When PostgreSQL
  or the store is down, :class:`~gateway.errors.SpoolUnavailable` (a :class:`SpoolFull`) makes
  receive answer 0xA700, never Success.
- Claims are leases: ``SELECT ... FOR UPDATE SKIP LOCKED`` hands each due job to one processor,
  which renews the lease of every job it holds from a heartbeat thread. A processor that dies
  stops renewing; once its lease ran out, any other processor claims the job. An outcome is
  recorded only by the lease's holder, so no job is finished by two processors.
- Deliveries form a ledger (one row per job and destination): a destination marked delivered is
  never sent that job again, whoever processes it next.
- A done job keeps its original for ``retention`` seconds and its row (with its ledger and
  UIDs) for ``history`` seconds: nothing is sent for a done job again, so its ledger is only a
  record by then (``dmask queue``, storage commitment).
- Times of leases come from the database's clock, so nodes need not agree on theirs.

The tables carry a version (``dmask_schema``); ``dmask db upgrade`` creates or migrates them,
and a spool refuses to open a database whose version it does not know.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import psycopg

from gateway.config import DEFAULT_HISTORY_S
from gateway.errors import SpoolFull, SpoolSchemaError, SpoolUnavailable
from gateway.store.payload_files import secure_delete
from gateway.store.payload_store import Payloads, new_key
from gateway.store.queue import HeldInstance, Job, JobState, held_by_uid

log = logging.getLogger("dmask.spool")

#: The version :data:`MIGRATIONS` lead to; a database at another version is refused.
SCHEMA_VERSION = 3
#: Statements that bring a database from the version before to the key's version.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE jobs (
    id BIGSERIAL PRIMARY KEY,
    state TEXT NOT NULL,
    reason TEXT,
    original TEXT NOT NULL,
    output TEXT,
    calling_ae TEXT NOT NULL,
    called_ae TEXT NOT NULL,
    size BIGINT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    received_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    next_at DOUBLE PRECISION NOT NULL DEFAULT 0,
    first_failure_at DOUBLE PRECISION,
    received_by TEXT NOT NULL,
    lease_owner TEXT,
    lease_until DOUBLE PRECISION
)""",
        "CREATE INDEX jobs_due ON jobs (state, next_at, id)",
        "CREATE INDEX jobs_lease ON jobs (lease_owner) WHERE state = 'processing'",
        """CREATE TABLE deliveries (
    job_id BIGINT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    destination TEXT NOT NULL,
    position INTEGER NOT NULL,
    delivered_at DOUBLE PRECISION,
    attempts INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    PRIMARY KEY (job_id, destination)
)""",
    ),
    2: (  # the original SOP UIDs of each job, for storage commitment
        """CREATE TABLE instances (
    job_id BIGINT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    sop_instance_uid TEXT NOT NULL,
    sop_class_uid TEXT NOT NULL
)""",
        "CREATE INDEX instances_uid ON instances (sop_instance_uid)",
    ),
    3: (  # the done jobs due for purge (originals, then rows) without reading every done job
        "CREATE INDEX jobs_done_holding ON jobs (updated_at) WHERE state = 'done' AND original != ''",
        "CREATE INDEX jobs_done_purged ON jobs (updated_at) WHERE state = 'done' AND original = ''",
    ),
}
_VERSION_TABLE = "dmask_schema"
#: Serialises concurrent ``dmask db upgrade`` runs (an arbitrary, fixed advisory lock key).
_UPGRADE_LOCK = 0x646D61736B
_JOB_COLUMNS = ("id, state, reason, original, output, calling_ae, called_ae, size, attempts,"
                " received_at, updated_at, next_at, first_failure_at")
#: A job's destinations and those still pending, in route order, read with its row (``jobs``
#: names the row: of a SELECT, or the updated one in a RETURNING).
_DESTINATION_COLUMNS = (
    "ARRAY(SELECT destination FROM deliveries WHERE job_id = jobs.id ORDER BY position),"
    " ARRAY(SELECT destination FROM deliveries WHERE job_id = jobs.id AND delivered_at IS NULL"
    " ORDER BY position)")
_DB_NOW = "extract(epoch FROM clock_timestamp())"
_PURGE_BATCH = 100
#: How often a receiver re-reads the queue's size for ``max_bytes`` (seconds).
_SIZE_REFRESH_S = 2.0
_CONNECT_TIMEOUT_S = 5
#: Every commit of a spool's session skips the wait for the WAL flush unless it asks for it
#: (admission, see :meth:`PostgresSpool._run`): a statement on its own then needs no
#: transaction around it to set that.
_ASYNCHRONOUS_COMMIT = "-c synchronous_commit=off"

T = TypeVar("T")


def _connect(dsn: str, options: str = "") -> psycopg.Connection[Any]:
    """A connection that fails fast when the server is gone, rather than hang a sender."""
    try:
        return psycopg.connect(dsn, autocommit=True, connect_timeout=_CONNECT_TIMEOUT_S,
                               keepalives=1, keepalives_idle=10, keepalives_interval=5,
                               keepalives_count=3, options=options)
    except psycopg.Error as exc:
        raise SpoolUnavailable(f"the queue database cannot be reached: {_why(exc)}") from None


def _one(cursor: psycopg.Cursor[Any]) -> Any:
    """The first column of a statement's one row (an aggregate, a RETURNING id)."""
    row = cursor.fetchone()
    assert row is not None
    return row[0]


def _why(error: psycopg.Error) -> str:
    """The kind of a database failure (its first line; never a DSN or a value)."""
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"


def _version(db: psycopg.Connection[Any]) -> int | None:
    """The schema version of a database; None when it has no version table."""
    exists = db.execute("SELECT to_regclass(%s)", (_VERSION_TABLE,)).fetchone()
    if exists is None or exists[0] is None:
        return None
    row = db.execute(f"SELECT version FROM {_VERSION_TABLE}").fetchone()
    return 0 if row is None else int(row[0])


def upgrade_schema(dsn: str) -> tuple[int, int]:
    """Create or migrate the queue's tables; return (version before, version after).

    Each step and the new version commit together, so an interrupted upgrade leaves the last
    complete version. Concurrent upgrades wait for each other (an advisory lock).

    Raises
    ------
    SpoolSchemaError
        The database is at a version newer than this dmask knows.
    SpoolUnavailable
        The database cannot be reached.
    """
    db = _connect(dsn)
    try:
        with db.transaction():
            db.execute("SELECT pg_advisory_xact_lock(%s)", (_UPGRADE_LOCK,))
            before = _version(db)
            current = before or 0
            if current > SCHEMA_VERSION:
                raise SpoolSchemaError(
                    f"the queue database's schema version is {current}; this dmask knows"
                    f" versions up to {SCHEMA_VERSION}")
            if before is None:
                db.execute(f"CREATE TABLE {_VERSION_TABLE} (version INTEGER NOT NULL)")
                db.execute(f"INSERT INTO {_VERSION_TABLE} (version) VALUES (0)")
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[version]:
                    db.execute(statement)
                db.execute(f"UPDATE {_VERSION_TABLE} SET version = %s", (version,))
        return before or 0, SCHEMA_VERSION
    except psycopg.Error as exc:
        raise SpoolUnavailable(f"the schema upgrade failed: {_why(exc)}") from None
    finally:
        db.close()


class PostgresSpool:
    """A node's view of the shared queue (see the module's docstring).

    Parameters
    ----------
    dsn
        libpq connection string of the queue's database.
    payloads
        The shared payload store.
    path
        This node's local working folder (created 0700): ``incoming/`` for receives,
        ``originals/`` for originals fetched from an object store, ``outputs/`` for results.
    node
        This node's name (unique in the cluster); claims are held as ``node/pid-token``.
    lease
        Seconds a claim lasts without renewal.
    min_free_bytes, max_bytes, retention, history
        As for the embedded spool; ``max_bytes`` counts every unfinished job of the cluster.

    Raises
    ------
    SpoolSchemaError
        The database has no queue tables (run ``dmask db upgrade``) or a version this dmask
        does not know.
    SpoolUnavailable
        The database cannot be reached.
    """

    def __init__(self, dsn: str, payloads: Payloads, path: Path, *, node: str,
                 lease: float = 60, min_free_bytes: int = 0, max_bytes: int | None = None,
                 retention: float = 0, history: float = DEFAULT_HISTORY_S) -> None:
        self.path = Path(path)
        self.payloads = payloads
        self.node = node
        self.owner = f"{node}/{os.getpid()}-{secrets.token_hex(4)}"
        self.lease = lease
        self.min_free_bytes = min_free_bytes
        self.max_bytes = max_bytes
        self.retention = retention
        self.history = history
        for folder in (self.path, self.path / "incoming", self.path / "originals",
                       self.path / "outputs"):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._dsn = dsn
        self._lock = threading.Lock()
        self._db: psycopg.Connection[Any] | None = _connect(dsn, _ASYNCHRONOUS_COMMIT)
        self._reachable = True
        self._queued_bytes = (0, 0.0)  # (bytes, monotonic time read)
        self._exhausted = False
        try:
            version = _version(self._db)
        except psycopg.Error as exc:
            self.close()
            raise SpoolUnavailable(f"the queue database cannot be read: {_why(exc)}") from None
        if version != SCHEMA_VERSION:
            self.close()
            found = "no queue tables" if version is None else f"schema version {version}"
            raise SpoolSchemaError(
                f"the queue database has {found}; this dmask needs version {SCHEMA_VERSION}"
                " (run 'dmask db upgrade' with a dmask of the right version)")
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    # -- plumbing ---------------------------------------------------------------------------

    def _run(self, work: Callable[[psycopg.Connection[Any]], T], *, durable: bool = False,
             single: bool = False) -> T:
        """Run ``work`` in one transaction, reconnecting after an outage.

        Only admission must be on disk before it returns (the sender is told Success); later
        state changes commit without waiting for the WAL flush: a lost one means the job runs
        again, and the destinations get the same result once more. ``single`` work is one
        statement, a transaction of its own: it is sent without BEGIN and COMMIT, each a round
        trip to the server.

        Raises
        ------
        SpoolUnavailable
            The database cannot be reached or the transaction failed; nothing was committed
            (or, when the connection broke during COMMIT, it is unknown: the caller treats it
            as not committed).
        """
        with self._lock:
            try:
                if self._db is None or self._db.closed:
                    self._db = psycopg.connect(self._dsn, autocommit=True,
                                               connect_timeout=_CONNECT_TIMEOUT_S,
                                               options=_ASYNCHRONOUS_COMMIT)
                if single and not durable:
                    result = work(self._db)
                else:
                    with self._db.transaction():
                        if durable:
                            self._db.execute("SET LOCAL synchronous_commit = on")
                        result = work(self._db)
            except psycopg.Error as exc:
                if self._db is not None and (self._db.closed or self._db.broken):
                    self._db.close()
                    self._db = None
                if self._reachable:
                    log.error("the queue database failed", extra={"error": _why(exc)})
                self._reachable = False
                raise SpoolUnavailable(f"the queue database failed: {_why(exc)}") from None
        if not self._reachable:
            log.info("the queue database answers again")
        self._reachable = True
        return result

    def note_out_of_space(self) -> None:
        """The node's local folder ran out of space: refuse new instances until it has room."""
        self._exhausted = True

    def close(self) -> None:
        """Stop the heartbeat and close the connection (claims run out with their leases)."""
        if getattr(self, "_heartbeat", None) is not None:
            self._stop.set()
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _job(self, row: Sequence[Any]) -> Job:
        """A job from its columns followed by its destination columns."""
        (job_id, state, reason, original, output, calling_ae, called_ae, size, attempts,
         received_at, updated_at, next_at, first_failure_at, destinations, pending) = row
        in_place = self.payloads.in_place(original) if original else None
        return Job(id=job_id, state=JobState(state), reason=reason, original=in_place,
                   output=self.output_path(job_id) if output else None, calling_ae=calling_ae,
                   called_ae=called_ae, size=size, attempts=attempts, received_at=received_at,
                   updated_at=updated_at, next_at=next_at, first_failure_at=first_failure_at,
                   destinations=tuple(destinations), pending=tuple(pending))

    # -- receive side -----------------------------------------------------------------------

    def incoming_dir(self) -> Path:
        """This node's folder for bytes being received."""
        return self.path / "incoming"

    def check_capacity(self, expected_bytes: int = 0) -> None:
        """Raise SpoolFull when this node's disk, the cluster's queue size or the database
        cannot take an instance (SpoolUnavailable while the database does not answer)."""
        free = shutil.disk_usage(self.path).free
        if self._exhausted:
            if free < expected_bytes + (1 << 20) + self.min_free_bytes:
                raise SpoolFull("the node's disk ran out of space; waiting for space to be freed")
            self._exhausted = False
        # As the SQLite spool: not a byte free takes no instance, whatever the floor (readiness
        # asks with no size).
        if free == 0:
            self.note_out_of_space()
            raise SpoolFull("the node's disk is full")
        if free - expected_bytes < self.min_free_bytes:
            raise SpoolFull("free disk space is below the spool's floor")
        queued, read_at = self._queued_bytes
        if not self._reachable or time.monotonic() - read_at > _SIZE_REFRESH_S:
            queued = self._run(lambda db: int(_one(db.execute(
                "SELECT COALESCE(SUM(size), 0) FROM jobs WHERE state != 'done'"))), single=True)
            self._queued_bytes = (queued, time.monotonic())
        if self.max_bytes is not None and queued + expected_bytes > self.max_bytes:
            raise SpoolFull("the spool holds its configured maximum")

    def admit(self, received: Path, *, calling_ae: str, called_ae: str,
              sop_class_uid: str | None = None, sop_instance_uid: str | None = None) -> int:
        """Store the payload, then commit its row (synchronously); return the job id.

        The original UIDs, when both are given, are committed with the job
        (:meth:`held_instances`).

        Raises
        ------
        SpoolFull
            Over a limit, or the store or the database failed (SpoolUnavailable); the local
            file is removed, and so is a payload stored for a row that was not committed.
        """
        key = new_key("originals")
        try:
            size = received.stat().st_size
            self.check_capacity(size)
            self.payloads.put(received, key)
        except OSError as exc:
            secure_delete(received)
            raise SpoolFull(f"cannot store the instance: {exc.strerror}") from None
        except SpoolFull:
            secure_delete(received)
            raise
        secure_delete(received)
        now = time.time()

        def insert(db: psycopg.Connection[Any]) -> int:
            job_id = int(_one(db.execute(
                "INSERT INTO jobs (state, original, calling_ae, called_ae, size, received_at,"
                " updated_at, received_by) VALUES ('received', %s, %s, %s, %s, %s, %s, %s)"
                " RETURNING id", (key, calling_ae, called_ae, size, now, now, self.node))))
            if sop_class_uid and sop_instance_uid:
                db.execute("INSERT INTO instances (job_id, sop_instance_uid, sop_class_uid)"
                           " VALUES (%s, %s, %s)", (job_id, sop_instance_uid, sop_class_uid))
            return job_id

        try:
            job_id = self._run(insert, durable=True)
        except SpoolFull:
            self._delete_payload(key)
            raise
        queued, read_at = self._queued_bytes
        self._queued_bytes = (queued + size, read_at)
        return job_id

    def held_instances(self, sop_instance_uids: Iterable[str]) -> dict[str, HeldInstance]:
        """The admitted instances among ``sop_instance_uids`` (original UIDs), with their state.

        An instance received more than once is reported by a job that is not quarantined when
        it has one, else by its latest job.
        """
        uids = sorted(set(sop_instance_uids))
        rows = self._run(lambda db: db.execute(
            "SELECT instances.sop_instance_uid, instances.sop_class_uid, jobs.state"
            " FROM instances JOIN jobs ON jobs.id = instances.job_id"
            " WHERE instances.sop_instance_uid = ANY(%s) ORDER BY jobs.id", (uids,)).fetchall())
        return held_by_uid(rows)

    def _delete_payload(self, key: str) -> None:
        """Remove a payload; an unreachable store leaves it to the operator (logged)."""
        try:
            self.payloads.delete(key)
        except SpoolFull:
            log.warning("a payload could not be deleted from the store", extra={"key": key})

    # -- processing side --------------------------------------------------------------------

    def claim(self, now: float | None = None) -> Job | None:
        """Lease the oldest due job: received, a due retry, or one whose lease ran out."""
        now = time.time() if now is None else now

        def take(db: psycopg.Connection[Any]) -> tuple[Job, str | None] | None:
            row = db.execute(  # one statement: the claim and the job's deliveries
                f"UPDATE jobs SET state = 'processing', lease_owner = %s,"
                f" lease_until = {_DB_NOW} + %s, updated_at = %s WHERE id = ("
                " SELECT id FROM jobs WHERE state = 'received'"
                " OR (state = 'retry' AND next_at <= %s)"
                f" OR (state = 'processing' AND lease_until < {_DB_NOW})"
                " ORDER BY next_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)"
                f" RETURNING {_JOB_COLUMNS}, {_DESTINATION_COLUMNS}",
                (self.owner, self.lease, now, now)).fetchone()
            return None if row is None else (self._job(row), row[4])

        taken = self._run(take, single=True)
        if taken is None:
            return None
        self._start_heartbeat()
        job, output_key = taken
        if output_key is not None:
            job = self._fetch_output(job, output_key)
        return job

    def _fetch_output(self, job: Job, key: str) -> Job:
        """Bring a kept result to this node; without it, the pipeline runs again."""
        try:
            self.payloads.fetch(key, self.output_path(job.id))
            return job
        except (LookupError, SpoolFull):
            return Job(**{**job.__dict__, "output": None})

    def _start_heartbeat(self) -> None:
        if self._heartbeat is None:
            self._heartbeat = threading.Thread(target=self._renew_leases, name="lease-heartbeat",
                                               daemon=True)
            self._heartbeat.start()

    def _renew_leases(self) -> None:
        """Extend the lease of every job this process holds, a few times per lease."""
        while not self._stop.wait(self.lease / 4):
            try:
                self._run(lambda db: db.execute(
                    f"UPDATE jobs SET lease_until = {_DB_NOW} + %s"
                    " WHERE lease_owner = %s AND state = 'processing'", (self.lease, self.owner)),
                    single=True)
            except SpoolFull:
                continue  # logged once by _run; the leases may run out meanwhile

    def original(self, job: Job) -> Path | bytes:
        """The original as a file: in place on a shared folder, else fetched to this node.

        Raises
        ------
        LookupError
            The job has no original (purged) or the store does not have it.
        SpoolUnavailable
            The store cannot be reached.
        """
        if job.original is not None:
            if not job.original.exists():
                raise LookupError(f"job {job.id} has no original in the store")
            return job.original
        key = self._run(lambda db: db.execute("SELECT original FROM jobs WHERE id = %s",
                                              (job.id,)).fetchone(), single=True)
        if key is None or not key[0]:
            raise LookupError(f"job {job.id} has no original in the spool")
        local = self.path / "originals" / f"{job.id}.dcm"
        self.payloads.fetch(key[0], local)
        return local

    def output_path(self, job_id: int) -> Path:
        """Where this node writes (or fetched) the processed instance of a job."""
        return self.path / "outputs" / f"{job_id}.dcm"

    def _forget_local(self, job_id: int) -> None:
        """Remove this node's working copies of a job (its fetched original and result)."""
        secure_delete(self.path / "originals" / f"{job_id}.dcm")
        self.output_path(job_id).unlink(missing_ok=True)

    def record_deliveries(self, job_id: int, delivered: Iterable[str], failed: dict[str, str],
                          next_at: float | None, *, output: Path | None = None,
                          destinations: Sequence[str] = ()) -> JobState:
        """Record one round: the ledger first, then the job's state if this process holds it.

        A result kept for retry rounds goes to the payload store first, so that any processor
        can run the next round. Deliveries are recorded whoever holds the lease (they
        happened); a process whose lease was taken over records no state and gets
        ``processing`` back, also when the job was finished and its row deleted meanwhile.
        """
        delivered = list(delivered)
        output_key: str | None = None
        # A result is kept only for a destination that does not have it yet: a round that
        # delivered to every destination finishes the job.
        if output is not None and output.exists() and set(destinations) - set(delivered):
            output_key = new_key("outputs")
            self.payloads.put(output, output_key)
        now = time.time()

        def record(db: psycopg.Connection[Any]) -> tuple[JobState, str | None, str | None]:
            if db.execute("SELECT 1 FROM jobs WHERE id = %s FOR KEY SHARE", (job_id,)).fetchone() is None:
                return JobState.PROCESSING, None, output_key  # finished by another, forgotten
            if output is not None:
                db.execute("WITH gone AS (DELETE FROM deliveries WHERE job_id = %(job)s"
                           " AND NOT destination = ANY(%(names)s))"
                           " INSERT INTO deliveries (job_id, destination, position)"
                           " SELECT %(job)s, name, number - 1"
                           " FROM unnest(%(names)s::text[]) WITH ORDINALITY AS d(name, number)"
                           " ON CONFLICT DO NOTHING", {"job": job_id, "names": list(destinations)})
            if delivered:
                db.execute("UPDATE deliveries SET delivered_at = COALESCE(delivered_at, %s),"
                           " attempts = attempts + 1, reason = NULL"
                           " WHERE job_id = %s AND destination = ANY(%s)", (now, job_id, delivered))
            if failed:
                db.execute("UPDATE deliveries SET attempts = attempts + 1, reason = f.reason"
                           " FROM unnest(%s::text[], %s::text[]) AS f(destination, reason)"
                           " WHERE job_id = %s AND deliveries.destination = f.destination"
                           " AND delivered_at IS NULL", (list(failed), list(failed.values()), job_id))
            held = db.execute("SELECT output, (SELECT COUNT(*) FROM deliveries WHERE job_id = jobs.id"
                              " AND delivered_at IS NULL) FROM jobs WHERE id = %s"
                              " AND state = 'processing' AND lease_owner = %s FOR UPDATE",
                              (job_id, self.owner)).fetchone()
            if held is None:
                return JobState.PROCESSING, None, output_key
            previous_output, pending = held
            reason: str | None
            if not pending:
                state, reason = JobState.DONE, None
            elif next_at is None:
                state, reason = JobState.QUARANTINED, sorted(set(failed.values()))[0]
            else:
                state, reason = JobState.RETRY, sorted(set(failed.values()))[0]
            keep = output_key if output_key is not None and state is not JobState.DONE else None
            new_output = keep if output is not None else previous_output
            if state is JobState.DONE:
                new_output = None
            db.execute(
                "UPDATE jobs SET state = %s, reason = %s, attempts = attempts + 1, updated_at = %s,"
                " next_at = COALESCE(%s, next_at), output = %s, lease_owner = NULL,"
                " lease_until = NULL, first_failure_at = CASE WHEN %s"
                " THEN COALESCE(first_failure_at, %s) ELSE first_failure_at END WHERE id = %s",
                (state.value, reason, now, next_at, new_output, bool(failed), now, job_id))
            stale = previous_output if previous_output != new_output else None
            unused = output_key if output_key != new_output else None
            return state, stale, unused

        try:
            state, stale, unused = self._run(record)
        except SpoolFull:
            if output_key is not None:
                self._delete_payload(output_key)
            raise
        for key in (stale, unused):
            if key:
                self._delete_payload(key)
        if state is JobState.PROCESSING:
            log.warning("the job's lease was taken over; its outcome is left to the new holder",
                        extra={"job": job_id})
        self._forget_local(job_id)
        return state

    def quarantine(self, job_id: int, reason: str) -> None:
        """Stop a job with a reason; its original stays until it is requeued or purged."""
        self._run(lambda db: db.execute(
            "UPDATE jobs SET state = 'quarantined', reason = %s, updated_at = %s,"
            " lease_owner = NULL, lease_until = NULL WHERE id = %s", (reason, time.time(), job_id)),
            single=True)
        self._forget_local(job_id)

    def release(self, job_id: int) -> None:
        """Give a claimed job back untouched."""
        self._run(lambda db: db.execute(
            "UPDATE jobs SET state = CASE WHEN first_failure_at IS NULL THEN 'received'"
            " ELSE 'retry' END, lease_owner = NULL, lease_until = NULL"
            " WHERE id = %s AND state = 'processing' AND lease_owner = %s", (job_id, self.owner)),
            single=True)
        self._forget_local(job_id)

    def recover(self) -> int:
        """At start: clear this node's working folder and give back its earlier claims.

        Claims held under this node's name by an earlier process (which crashed) are released
        at once instead of after their lease; node names must therefore be unique.
        """
        for folder in ("incoming", "originals", "outputs"):
            for path in (self.path / folder).iterdir():
                secure_delete(path)
        return int(self._run(lambda db: db.execute(
            "UPDATE jobs SET state = CASE WHEN first_failure_at IS NULL THEN 'received'"
            " ELSE 'retry' END, lease_owner = NULL, lease_until = NULL"
            " WHERE state = 'processing' AND starts_with(lease_owner, %s) AND lease_owner != %s",
            (f"{self.node}/", self.owner)).rowcount, single=True))

    def purge(self, now: float | None = None) -> int:
        """Delete originals of done jobs past the retention time, then the rows of done jobs
        past their history, cluster-wide; return how many originals.

        Each batch is marked purged (committed durably) before its payloads are deleted, so no
        job that still needs its original is left without one; processors purging at the same
        time take different batches (SKIP LOCKED). A row goes only after its original (a
        ``history`` shorter than ``retention`` counts as ``retention``), its deliveries and
        UIDs with it (cascade).
        """
        now = time.time() if now is None else now
        cutoff = now - self.retention
        total = 0
        while True:
            purged = self._run(lambda db: db.execute(
                "UPDATE jobs SET original = '' WHERE id IN (SELECT id FROM jobs WHERE"
                " state = 'done' AND original != '' AND updated_at <= %s LIMIT %s"
                " FOR UPDATE SKIP LOCKED) RETURNING id, (SELECT j.original FROM jobs j"
                " WHERE j.id = jobs.id)", (cutoff, _PURGE_BATCH)).fetchall(), durable=True)
            for job_id, key in purged:
                self._delete_payload(key)
                self._forget_local(job_id)
            total += len(purged)
            if len(purged) < _PURGE_BATCH:
                break
        forget_before, deleted = now - max(self.retention, self.history), _PURGE_BATCH
        while deleted == _PURGE_BATCH:
            deleted = self._run(lambda db: db.execute(
                "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE state = 'done'"
                " AND original = '' AND updated_at <= %s LIMIT %s FOR UPDATE SKIP LOCKED)",
                (forget_before, _PURGE_BATCH)).rowcount)
        return total

    # -- administration ---------------------------------------------------------------------

    def counts(self) -> dict[tuple[str, str | None], int]:
        """Number of jobs per (state, reason), cluster-wide."""
        rows = self._run(lambda db: db.execute(
            "SELECT state, reason, COUNT(*) FROM jobs GROUP BY state, reason").fetchall(),
            single=True)
        return {(state, reason): count for state, reason, count in rows}

    def jobs(self, state: JobState | None = None, reason: str | None = None,
             limit: int = 1000) -> list[Job]:
        """Jobs filtered by state and reason, oldest first."""
        query, args = f"SELECT {_JOB_COLUMNS}, {_DESTINATION_COLUMNS} FROM jobs WHERE TRUE", []
        if state is not None:
            query += " AND state = %s"
            args.append(state.value)
        if reason is not None:
            query += " AND reason = %s"
            args.append(reason)

        def read(db: psycopg.Connection[Any]) -> list[Job]:
            rows = db.execute(query + " ORDER BY id LIMIT %s", (*args, limit)).fetchall()
            return [self._job(row) for row in rows]

        return self._run(read, single=True)

    def requeue(self, ids: Sequence[int] = (), *, reason: str | None = None,
                all_failed: bool = False) -> int:
        """Send quarantined (or retrying) jobs through the pipeline again; return how many."""
        condition = "state IN ('quarantined', 'retry') AND original != ''"
        args: list[Any] = []
        if ids:
            condition += " AND id = ANY(%s)"
            args.append(list(ids))
        elif reason is not None:
            condition += " AND reason = %s"
            args.append(reason)
        elif not all_failed:
            return 0

        def requeue(db: psycopg.Connection[Any]) -> list[tuple[int, str | None]]:
            rows = db.execute(
                "UPDATE jobs SET state = 'received', reason = NULL, output = NULL, next_at = 0,"
                f" first_failure_at = NULL, updated_at = %s WHERE {condition}"
                " RETURNING id, (SELECT j.output FROM jobs j WHERE j.id = jobs.id)",
                (time.time(), *args)).fetchall()
            db.execute("DELETE FROM deliveries WHERE job_id = ANY(%s)", ([r[0] for r in rows],))
            return rows

        rows = self._run(requeue)
        for _, output_key in rows:
            if output_key:
                self._delete_payload(output_key)
        return len(rows)

