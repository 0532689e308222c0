"""The embedded spool: a folder of files plus an SQLite (WAL) table, one process's queue.

A job's state is a row (:mod:`gateway.store.queue` draws its life). Where its original bytes
live depends on their size. A small instance's bytes go into the database, in the same
transaction as its row, so one fsync of the write-ahead log makes both durable; a tags-only
instance of 40 KB would otherwise pay three (file, directory, commit), most of its time at the
gateway. A large instance is written as a file (0600), fsynced and renamed into the spool before
its row is committed: three fsyncs are small beside its transfer, and multi-megabyte blobs would
bloat the write-ahead log. Every destination of a job is tracked separately (``deliveries``), so
a fan-out that reached one PACS and not the other retries only the missing one.

The database carries the version of its tables (``PRAGMA user_version``), checked when the
spool opens: a new database gets the current version, one written before the tables had a
version (0, with the current tables) is adopted, one of version 1 gets the ``instances`` table
(its jobs have no UIDs: storage commitment does not know them), one of version 2 the indexes of
done jobs, and one of a newer dmask is refused with :class:`~gateway.errors.SpoolSchemaError`
rather than misread.

A delivered (done) job is kept in two steps: its original for ``retention`` seconds, then its
row (state, delivery ledger, original UIDs) until ``history`` seconds have passed, so that
``dmask queue`` and storage commitment still know it. Nothing is sent for a done job again, so
its ledger protects nothing once it is done; the ledger of every unfinished job stays with it.

A full disk is a state, not a failure of the job at hand. Every write (a file, a transaction)
that fails for lack of space raises :class:`~gateway.errors.SpoolFull` and leaves the job as it
was; the spool then refuses new instances until the file system's free space has grown by
:data:`RESUME_MARGIN_BYTES` (or a purge freed originals), so receive does not take bytes it
will most likely fail to keep.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from gateway.config import DEFAULT_HISTORY_S
from gateway.errors import OUT_OF_SPACE_ERRNOS, SpoolFull, SpoolSchemaError
from gateway.store.payload_files import fsync_dir, secure_delete
from gateway.store.queue import HeldInstance, Job, JobState, held_by_uid

#: Version of the tables below, kept in the database's ``PRAGMA user_version``. A change of the
#: tables raises it and adds the step from the previous version to ``FolderSpool._open_schema``.
SCHEMA_VERSION = 3
_TABLES = (
    """CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    state TEXT NOT NULL,
    reason TEXT,
    original TEXT NOT NULL,
    output TEXT,
    calling_ae TEXT NOT NULL,
    called_ae TEXT NOT NULL,
    size INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    received_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    next_at REAL NOT NULL DEFAULT 0,
    first_failure_at REAL
)""",
    "CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, next_at)",
    """CREATE TABLE IF NOT EXISTS deliveries (
    job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    destination TEXT NOT NULL,
    delivered_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    PRIMARY KEY (job_id, destination)
)""",
    """CREATE TABLE IF NOT EXISTS original_data (
    job_id INTEGER PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    data BLOB NOT NULL
)""",
    # Version 2: the original UIDs of a job, for storage commitment (kept after purge: a
    # delivered instance stays committed).
    """CREATE TABLE IF NOT EXISTS instances (
    job_id INTEGER PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    sop_instance_uid TEXT NOT NULL,
    sop_class_uid TEXT NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS instances_uid ON instances (sop_instance_uid)",
    # Version 3: the done jobs due for purge, first their originals, then their rows, found
    # without reading every done job (named by the purge's queries: without statistics, the
    # planner would take jobs_state for them).
    "CREATE INDEX IF NOT EXISTS jobs_done_holding ON jobs (updated_at)"
    " WHERE state = 'done' AND original != ''",
    "CREATE INDEX IF NOT EXISTS jobs_done_purged ON jobs (updated_at)"
    " WHERE state = 'done' AND original = ''",
)

_DATABASE = "state.sqlite"
_ORIGINALS = "originals"
_OUTPUTS = "outputs"
_INCOMING = "incoming"
#: ``jobs.original`` of a job whose original bytes are in ``original_data`` ('' once purged).
_IN_DATABASE = ":database:"
#: Instances up to this size are kept in the database (one fsync to admit), larger ones as files.
INLINE_MAX_BYTES = 256 * 1024
#: Originals purged per transaction: receive waits for the spool's lock at most one batch.
_PURGE_BATCH = 100
#: Once the disk ran out, new instances are refused until this much more space is free.
RESUME_MARGIN_BYTES = 1 << 20
#: UIDs looked up per query (below SQLite's limit on bound parameters).
_LOOKUP_BATCH = 500


def _out_of_space(error: BaseException, folder: Path) -> bool:
    """Whether a failed write means the file system (or the quota) holding ``folder`` is full.

    SQLite says SQLITE_FULL for most of it, but growing its shared-memory index (opening the
    database on a full disk) fails as an I/O error: one while nearly no space is left counts.
    """
    if isinstance(error, OSError):
        return error.errno in OUT_OF_SPACE_ERRNOS
    if isinstance(error, sqlite3.Error):
        code = getattr(error, "sqlite_errorcode", None)
        if code == sqlite3.SQLITE_FULL:
            return True
        if code is not None and code & 0xFF == sqlite3.SQLITE_IOERR:
            return shutil.disk_usage(folder).free < RESUME_MARGIN_BYTES
    return False


def _schema_version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def _table_layouts(db: sqlite3.Connection) -> dict[str, list[tuple[object, ...]]]:
    """Each table's columns as (name, type, not null, default, primary key position)."""
    names = [row[0] for row in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
    return {name: [tuple(column[1:]) for column in db.execute(
        "SELECT * FROM pragma_table_info(?)", (name,))] for name in names}


def _spool_table_layouts() -> dict[str, list[tuple[object, ...]]]:
    """The layouts :data:`_TABLES` create (read from a scratch in-memory database)."""
    reference = sqlite3.connect(":memory:")
    try:
        for statement in _TABLES:
            reference.execute(statement)
        return _table_layouts(reference)
    finally:
        reference.close()


class FolderSpool:
    """The embedded spool: ``originals/``, ``outputs/``, ``incoming/`` and ``state.sqlite``.

    Parameters
    ----------
    path
        The spool folder; created 0700 when missing.
    min_free_bytes
        Refuse new instances when the file system has less free space than this.
    max_bytes
        Refuse new instances once the originals in the spool add up to this many bytes.
    retention
        Seconds an original is kept after every destination has its result.
    history
        Seconds a done job's row is kept after every destination has its result (never less
        than ``retention``).
    inline_max_bytes
        Originals up to this size are kept in the database, larger ones as files.
    receiver
        This process receives into the spool (``dmask serve``; an admin command does not): the
        files left in ``incoming/`` are partial receives of an earlier run, removed before the
        database opens, since on a full disk they may be what keeps it from opening.

    Raises
    ------
    SpoolFull
        The disk is too full to open the database.
    SpoolSchemaError
        The database is of a newer version, or unversioned with tables that are not ours.
    """

    def __init__(self, path: Path, *, min_free_bytes: int = 0, max_bytes: int | None = None,
                 retention: float = 0, history: float = DEFAULT_HISTORY_S,
                 inline_max_bytes: int = INLINE_MAX_BYTES, receiver: bool = False) -> None:
        self.path = Path(path)
        self.min_free_bytes = min_free_bytes
        self.max_bytes = max_bytes
        self.retention = retention
        self.history = history
        self.inline_max_bytes = inline_max_bytes
        for folder in (self.path, self.path / _ORIGINALS, self.path / _OUTPUTS,
                       self.path / _INCOMING):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if receiver:
            self._discard_partial_receives()
        #: Free bytes when a write last failed for lack of space; None while writes succeed.
        self._exhausted_free: int | None = None
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path / _DATABASE, timeout=30, isolation_level=None,
                                   check_same_thread=False)
        try:
            os.chmod(self.path / _DATABASE, 0o600)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._synchronous = "FULL"
            self._db.execute("PRAGMA foreign_keys=ON")
            # Deleted originals are overwritten with zeros, as secure_delete() does for files.
            self._db.execute("PRAGMA secure_delete=ON")
            self._open_schema()
        except (sqlite3.Error, OSError) as exc:
            self._db.close()
            if _out_of_space(exc, self.path):
                raise SpoolFull("the spool's disk is too full to open its database") from None
            raise
        except (SpoolSchemaError, SpoolFull):
            self._db.close()
            raise
        for journal in self.path.glob(f"{_DATABASE}-*"):  # the WAL and its index
            os.chmod(journal, 0o600)
        self._bytes = self._db.execute(
            "SELECT COALESCE(SUM(size), 0) FROM jobs WHERE state != 'done'").fetchone()[0]

    # -- plumbing ---------------------------------------------------------------------------

    def _open_schema(self) -> None:
        """Create the tables of a new database, adopt those of an unversioned one, refuse others.

        Databases written before the tables had a version have ``user_version`` 0; when the
        tables they have are the current ones they are adopted as they are, and tables added
        since they were made (``original_data``) are created. Version 1 lacks only the
        ``instances`` table (and its index), version 2 the indexes of done jobs, created the
        same way. A newer version was written by a newer dmask, whose rows this one would
        misread.

        Raises
        ------
        SpoolSchemaError
            The database is of a newer version, or unversioned with tables that are not ours.
        """
        database = self.path / _DATABASE
        version = _schema_version(self._db)
        if version > SCHEMA_VERSION:
            raise SpoolSchemaError(
                f"{database}: the spool's schema version is {version}, this dmask knows versions"
                f" up to {SCHEMA_VERSION} (was the spool written by a newer dmask?)")
        if version == SCHEMA_VERSION:
            return
        # One process creates or adopts the tables; one opening the spool at the same time
        # waits for the write lock and then finds them versioned.
        with self._transaction() as db:
            if _schema_version(db) == SCHEMA_VERSION:
                return
            found = _table_layouts(db)
            for table, columns in _spool_table_layouts().items():
                if table in found and found[table] != columns:
                    raise SpoolSchemaError(
                        f"{database}: the unversioned database's table {table!r} is not the"
                        f" spool's (columns {[c[0] for c in found[table]]}, expected"
                        f" {[c[0] for c in columns]})")
            for statement in _TABLES:
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def _transaction(self, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction; ``durable`` ones are fsynced before they return.

        Only admitting an instance must survive a power cut the moment it commits (the sender
        was told Success). Every later state change is cheaper without its own fsync: if one is
        lost, the job runs again and, the output being deterministic, the PACS gets the same
        instance once more. The next durable commit syncs the write-ahead log up to itself,
        which makes every earlier commit durable too.

        Raises
        ------
        SpoolFull
            The disk (or quota) is full; the transaction was rolled back.
        """
        with self._lock:
            synchronous = "FULL" if durable else "NORMAL"
            try:
                if synchronous != self._synchronous:
                    self._db.execute(f"PRAGMA synchronous={synchronous}")
                    self._synchronous = synchronous
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:  # SQLite rolls back by itself on SQLITE_FULL
                        self._db.execute("ROLLBACK")
                    raise
            except (sqlite3.Error, OSError) as exc:
                if not _out_of_space(exc, self.path):
                    raise
                raise self._ran_out_of_space() from None

    def _ran_out_of_space(self) -> SpoolFull:
        """Refuse new instances from now until space is freed; the error to raise."""
        self.note_out_of_space()
        return SpoolFull("the spool's disk is full")

    def note_out_of_space(self) -> None:
        """A write to the spool's disk failed for lack of space (here, or a worker's result):
        refuse new instances until the free space grew by :data:`RESUME_MARGIN_BYTES`."""
        self._exhausted_free = shutil.disk_usage(self.path).free

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()

    def _job(self, row: sqlite3.Row | tuple) -> Job:
        (job_id, state, reason, original, output, calling_ae, called_ae, size, attempts,
         received_at, updated_at, next_at, first_failure_at) = row
        deliveries = self._db.execute(
            "SELECT destination, delivered_at FROM deliveries WHERE job_id = ? ORDER BY rowid",
            (job_id,)).fetchall()
        return Job(id=job_id, state=JobState(state), reason=reason,
                   original=None if original == _IN_DATABASE else Path(original),
                   output=Path(output) if output else None, calling_ae=calling_ae,
                   called_ae=called_ae, size=size, attempts=attempts, received_at=received_at,
                   updated_at=updated_at, next_at=next_at, first_failure_at=first_failure_at,
                   destinations=tuple(d for d, _ in deliveries),
                   pending=tuple(d for d, at in deliveries if at is None))

    # -- receive side -----------------------------------------------------------------------

    def incoming_dir(self) -> Path:
        """Folder for bytes being received (same file system as the spool, so rename is atomic)."""
        return self.path / _INCOMING

    def check_capacity(self, expected_bytes: int = 0) -> None:
        """Raise SpoolFull below the free-disk floor, above the spool's size cap, or while the
        disk that ran out of space has not got room again."""
        free = shutil.disk_usage(self.path).free
        exhausted = self._exhausted_free
        if exhausted is not None:
            if free < exhausted + RESUME_MARGIN_BYTES + expected_bytes:
                raise SpoolFull("the spool's disk ran out of space; waiting for space to be freed")
            self._exhausted_free = None
        # Not a byte free takes no instance, whatever the floor: with a floor of 0 a full disk
        # would otherwise pass for one with room (readiness asks with no size).
        if free < max(expected_bytes, 1):
            raise self._ran_out_of_space()
        if free - expected_bytes < self.min_free_bytes:
            raise SpoolFull("free disk space is below the spool's floor")
        if self.max_bytes is not None and self._bytes + expected_bytes > self.max_bytes:
            raise SpoolFull("the spool holds its configured maximum")

    def admit(self, received: Path, *, calling_ae: str, called_ae: str,
              sop_class_uid: str | None = None, sop_instance_uid: str | None = None) -> int:
        """Make a received file durable and queue it; after this returns it survives a crash.

        The file must be on the spool's file system (e.g. in :meth:`incoming_dir`): a large one
        is renamed into ``originals/``, a small one is read into the database and removed. The
        original UIDs, when both are given, are committed with the job (:meth:`held_instances`).

        Raises
        ------
        SpoolFull
            The spool is over its limits or the disk is full; the file is securely deleted.
        """
        try:
            size = received.stat().st_size
            self.check_capacity(size)
            if size <= self.inline_max_bytes:
                data: bytes | None = received.read_bytes()
                original = _IN_DATABASE
            else:
                data, original = None, str(self._store_file(received))
        except OSError as exc:
            secure_delete(received)
            if _out_of_space(exc, self.path):
                raise self._ran_out_of_space() from None
            raise SpoolFull(f"cannot store the instance: {exc.strerror}") from None
        except SpoolFull:
            secure_delete(received)
            raise
        now = time.time()
        try:
            with self._transaction(durable=True) as db:
                cursor = db.execute(
                    "INSERT INTO jobs (state, original, calling_ae, called_ae, size, received_at,"
                    " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (JobState.RECEIVED.value, original, calling_ae, called_ae, size, now, now))
                if data is not None:
                    db.execute("INSERT INTO original_data (job_id, data) VALUES (?, ?)",
                               (cursor.lastrowid, data))
                if sop_class_uid and sop_instance_uid:
                    db.execute("INSERT INTO instances (job_id, sop_instance_uid, sop_class_uid)"
                               " VALUES (?, ?, ?)", (cursor.lastrowid, sop_instance_uid, sop_class_uid))
        except (sqlite3.Error, SpoolFull) as exc:
            secure_delete(received if data is not None else Path(original))
            if isinstance(exc, SpoolFull):
                raise
            raise SpoolFull("the spool's state database refused the job") from None
        self._bytes += size
        if data is not None:
            # Committed, so the file is a leftover; should a crash bring it back, recover()
            # removes whatever is in incoming/.
            received.unlink(missing_ok=True)
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def held_instances(self, sop_instance_uids: Iterable[str]) -> dict[str, HeldInstance]:
        """The admitted instances among ``sop_instance_uids`` (original UIDs), with their state.

        An instance received more than once is reported by a job that is not quarantined when
        it has one, else by its latest job.
        """
        uids = sorted(set(sop_instance_uids))
        rows: list[tuple[str, str, str]] = []
        with self._lock:
            for start in range(0, len(uids), _LOOKUP_BATCH):
                batch = uids[start:start + _LOOKUP_BATCH]
                rows += self._db.execute(
                    "SELECT instances.sop_instance_uid, instances.sop_class_uid, jobs.state"
                    " FROM instances JOIN jobs ON jobs.id = instances.job_id"
                    f" WHERE instances.sop_instance_uid IN ({','.join('?' * len(batch))})"
                    " ORDER BY jobs.id", batch).fetchall()
        return held_by_uid(rows)

    def _store_file(self, received: Path) -> Path:
        """Write-fsync-rename a large original into ``originals/`` (before its row commits)."""
        os.chmod(received, 0o600)
        with open(received, "rb") as handle:
            os.fsync(handle.fileno())
        target = self.path / _ORIGINALS / f"{secrets.token_hex(16)}.dcm"
        os.rename(received, target)
        fsync_dir(target.parent)
        return target

    # -- processing side --------------------------------------------------------------------

    def claim(self, now: float | None = None) -> Job | None:
        """Take the oldest received job, or the oldest retry that is due, into processing."""
        now = time.time() if now is None else now
        with self._transaction() as db:
            row = db.execute(
                "UPDATE jobs SET state = 'processing', updated_at = ? WHERE id = ("
                " SELECT id FROM jobs WHERE state = 'received'"
                " OR (state = 'retry' AND next_at <= ?) ORDER BY next_at, id LIMIT 1)"
                " RETURNING *", (now, now)).fetchone()
            return None if row is None else self._job(row)

    def original(self, job: Job) -> Path | bytes:
        """The received instance of a job: its file, or its bytes when the database holds them.

        Raises
        ------
        LookupError
            The database holds no original for the job (a defect: only done jobs are purged).
        """
        if job.original is not None:
            return job.original
        with self._lock:
            row = self._db.execute("SELECT data FROM original_data WHERE job_id = ?",
                                   (job.id,)).fetchone()
        if row is None:
            raise LookupError(f"job {job.id} has no original in the spool")
        return bytes(row[0])

    def output_path(self, job_id: int) -> Path:
        """Where the processed instance of a job is written."""
        return self.path / _OUTPUTS / f"{job_id}.dcm"

    def record_deliveries(self, job_id: int, delivered: Iterable[str], failed: dict[str, str],
                          next_at: float | None, *, output: Path | None = None,
                          destinations: Sequence[str] = ()) -> JobState:
        """Record one processing/forwarding round in one transaction.

        On the round that ran the pipeline, ``output`` is the processed instance and
        ``destinations`` the route's destinations (one delivery each); a destination that had
        the result from an earlier round (the pipeline ran again, its result lost) keeps it,
        so it is not sent again. Every destination in ``delivered`` has the result; those in
        ``failed`` (destination -> reason code) are retried at ``next_at``, or the job is
        quarantined (dead letter) when ``next_at`` is None. Once nothing is pending the job is
        done: its output is removed now, its original by :meth:`purge` after the retention time.
        """
        now = time.time()
        with self._transaction() as db:
            if output is not None:
                db.execute("UPDATE jobs SET output = ? WHERE id = ?", (str(output), job_id))
                db.execute("DELETE FROM deliveries WHERE job_id = ? AND destination NOT IN"
                           f" ({','.join('?' * len(destinations))})", (job_id, *destinations))
                db.executemany("INSERT OR IGNORE INTO deliveries (job_id, destination) VALUES (?, ?)",
                               [(job_id, name) for name in destinations])
            db.executemany(
                "UPDATE deliveries SET delivered_at = ?, attempts = attempts + 1, reason = NULL"
                " WHERE job_id = ? AND destination = ?",
                [(now, job_id, name) for name in delivered])
            db.executemany(
                "UPDATE deliveries SET attempts = attempts + 1, reason = ?"
                " WHERE job_id = ? AND destination = ?",
                [(reason, job_id, name) for name, reason in failed.items()])
            pending = db.execute("SELECT COUNT(*) FROM deliveries WHERE job_id = ?"
                                 " AND delivered_at IS NULL", (job_id,)).fetchone()[0]
            if not pending:
                state, reason = JobState.DONE, None
            elif next_at is None:
                state, reason = JobState.QUARANTINED, sorted(set(failed.values()))[0]
            else:
                state, reason = JobState.RETRY, sorted(set(failed.values()))[0]
            row = db.execute(
                "UPDATE jobs SET state = ?, reason = ?, attempts = attempts + 1, updated_at = ?,"
                " next_at = COALESCE(?, next_at),"
                " first_failure_at = CASE WHEN ? THEN COALESCE(first_failure_at, ?)"
                " ELSE first_failure_at END WHERE id = ? RETURNING output, size",
                (state.value, reason, now, next_at, bool(failed), now, job_id)).fetchone()
        if state is JobState.DONE:
            self._bytes -= row[1]
            if row[0]:
                Path(row[0]).unlink(missing_ok=True)
        return state

    def quarantine(self, job_id: int, reason: str) -> None:
        """Stop a job with a reason; its original stays until it is requeued or purged."""
        with self._transaction() as db:
            db.execute("UPDATE jobs SET state = 'quarantined', reason = ?, updated_at = ?"
                       " WHERE id = ?", (reason, time.time(), job_id))

    def release(self, job_id: int) -> None:
        """Give a claimed job back untouched (e.g. the service stops before running it)."""
        with self._transaction() as db:
            db.execute("UPDATE jobs SET state = CASE WHEN first_failure_at IS NULL"
                       " THEN 'received' ELSE 'retry' END WHERE id = ? AND state = 'processing'",
                       (job_id,))

    def recover(self) -> int:
        """After a crash: remove files no committed job owns, then put processing jobs back.

        A file in ``incoming/`` is a partial receive; one in ``originals/`` without a row was
        renamed but never committed, so its sender never got Success and will send it again.
        Files go first: on a disk that filled up, they are what gives the commit its room.

        Raises
        ------
        SpoolFull
            The disk is still too full to commit; the files are gone, the jobs not yet put
            back (call again once space is freed).
        """
        self._discard_partial_receives()
        with self._lock:
            known = {row[0] for row in self._db.execute(
                "SELECT original FROM jobs WHERE original IS NOT NULL")}
            outputs = {row[0] for row in self._db.execute(
                "SELECT output FROM jobs WHERE output IS NOT NULL AND state != 'done'")}
        for path in (self.path / _ORIGINALS).iterdir():
            if str(path) not in known:
                secure_delete(path)
        for path in (self.path / _OUTPUTS).iterdir():
            if str(path) not in outputs:
                path.unlink(missing_ok=True)
        with self._transaction() as db:
            return int(db.execute(
                "UPDATE jobs SET state = CASE WHEN first_failure_at IS NULL"
                " THEN 'received' ELSE 'retry' END WHERE state = 'processing'").rowcount)

    def _discard_partial_receives(self) -> None:
        """Remove what receive left in ``incoming/`` (only while nothing receives)."""
        for path in (self.path / _INCOMING).iterdir():
            secure_delete(path)

    def purge(self, now: float | None = None) -> int:
        """Securely delete originals of done jobs past the retention time, then the rows of
        done jobs past their history; return how many originals.

        Done states are committed without their own fsync; the durable commit here (which marks
        the originals gone) syncs them all before any original is deleted, so a power cut never
        leaves a job that still needs its original without one. One fsync per batch of
        :data:`_PURGE_BATCH` jobs, not per job. Receive can admit between batches: overwriting
        originals held in the database holds the spool's lock, and one transaction for every
        due job would stall every sender for the whole purge.

        A row goes only after its original (a ``history`` shorter than ``retention`` counts as
        ``retention``), with its delivery ledger and original UIDs (:meth:`_forget_done`).
        """
        now = time.time() if now is None else now
        with self._lock:
            rows = self._db.execute(
                "SELECT id, original FROM jobs INDEXED BY jobs_done_holding WHERE state = 'done'"
                " AND original != '' AND updated_at <= ?", (now - self.retention,)).fetchall()
        for start in range(0, len(rows), _PURGE_BATCH):
            batch = rows[start:start + _PURGE_BATCH]
            with self._transaction(durable=True) as db:
                db.executemany("UPDATE jobs SET original = '' WHERE id = ? AND state = 'done'",
                               [(job_id,) for job_id, _ in batch])
                db.executemany("DELETE FROM original_data WHERE job_id = ?",
                               [(job_id,) for job_id, _ in batch])
            for _, original in batch:
                if original != _IN_DATABASE:
                    secure_delete(Path(original))
            # Freed pages inside the database hold new instances without growing its file.
            self._exhausted_free = None
        self._forget_done(now - max(self.retention, self.history))
        return len(rows)

    def _forget_done(self, before: float) -> None:
        """Delete the rows of done jobs whose original is gone and that finished before
        ``before``, a batch per transaction; their deliveries and UIDs go with them (cascade).

        Ids are never reused (AUTOINCREMENT), so a job's output file name stays its own. Losing
        these commits to a power cut only means the rows are deleted again by the next purge.
        """
        while True:
            with self._transaction() as db:
                deleted = db.execute(
                    "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs INDEXED BY jobs_done_purged"
                    " WHERE state = 'done' AND original = '' AND updated_at <= ? LIMIT ?)",
                    (before, _PURGE_BATCH)).rowcount
            if deleted:
                self._exhausted_free = None
            if deleted < _PURGE_BATCH:
                return

    # -- administration ---------------------------------------------------------------------

    def counts(self) -> dict[tuple[str, str | None], int]:
        """Number of jobs per (state, reason)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT state, reason, COUNT(*) FROM jobs GROUP BY state, reason").fetchall()
        return {(state, reason): count for state, reason, count in rows}

    def jobs(self, state: JobState | None = None, reason: str | None = None,
             limit: int = 1000) -> list[Job]:
        """Jobs filtered by state and reason, oldest first."""
        query, args = "SELECT * FROM jobs WHERE 1", []
        if state is not None:
            query += " AND state = ?"
            args.append(state.value)
        if reason is not None:
            query += " AND reason = ?"
            args.append(reason)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY id LIMIT ?", (*args, limit)).fetchall()
            return [self._job(row) for row in rows]

    def requeue(self, ids: Sequence[int] = (), *, reason: str | None = None,
                all_failed: bool = False) -> int:
        """Send quarantined (or retrying) jobs through the pipeline again; return how many.

        The pipeline runs again from the original, so a job quarantined because of a profile
        that has since been fixed gets the new treatment. Jobs whose original is gone (done and
        past retention) cannot be requeued.
        """
        condition = "state IN ('quarantined', 'retry') AND original != ''"
        args: list[int | str] = []
        if ids:
            condition += f" AND id IN ({','.join('?' * len(ids))})"
            args.extend(ids)
        elif reason is not None:
            condition += " AND reason = ?"
            args.append(reason)
        elif not all_failed:
            return 0
        with self._transaction() as db:
            selected = [row[0] for row in db.execute(
                f"SELECT id FROM jobs WHERE {condition}", args)]
            for job_id in selected:
                db.execute("DELETE FROM deliveries WHERE job_id = ?", (job_id,))
                db.execute("UPDATE jobs SET state = 'received', reason = NULL, output = NULL,"
                           " next_at = 0, first_failure_at = NULL, updated_at = ? WHERE id = ?",
                           (time.time(), job_id))
        for job_id in selected:
            self.output_path(job_id).unlink(missing_ok=True)
        return len(selected)
