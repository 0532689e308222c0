"""The durable queue between receive and forward: a folder of files plus an SQLite (WAL) table.

A received instance becomes a *job*. Its state is a row that moves
``received -> processing -> done | retry | quarantined``. Receive answers a C-STORE with Success
only after :meth:`FolderSpool.admit` returned: from then on the instance survives a crash of the
gateway. Where its original bytes live depends on their size. A small instance's bytes go into
the database, in the same transaction as its row, so one fsync of the write-ahead log makes both
durable; a tags-only instance of 40 KB would otherwise pay three (file, directory, commit), most
of its time at the gateway. A large instance is written as a file (0600), fsynced and renamed
into the spool before its row is committed: three fsyncs are small beside its transfer, and
multi-megabyte blobs would bloat the write-ahead log. Every destination of a job is tracked
separately (``deliveries``), so a fan-out that reached one PACS and not the other retries only
the missing one.

Receive and the serve loop use the :class:`Spool` protocol only, so that a distributed queue can
replace this embedded one without touching them.
"""

from __future__ import annotations

import enum
import os
import secrets
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from gateway.errors import SpoolFull

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
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
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, next_at);
CREATE TABLE IF NOT EXISTS deliveries (
    job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    destination TEXT NOT NULL,
    delivered_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    PRIMARY KEY (job_id, destination)
);
CREATE TABLE IF NOT EXISTS original_data (
    job_id INTEGER PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    data BLOB NOT NULL
);
"""

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


class JobState(str, enum.Enum):
    """Where a job is in its life; ``retry`` waits for ``next_at`` before it is claimed again."""

    RECEIVED = "received"
    PROCESSING = "processing"
    DONE = "done"
    RETRY = "retry"
    QUARANTINED = "quarantined"


@dataclass(frozen=True)
class Job:
    """One received instance as the queue knows it (never its attributes: they are not decoded).

    ``original`` is the original's file, or None when its bytes are in the database
    (:meth:`FolderSpool.original`). ``destinations`` is empty until the pipeline has routed the
    job; ``pending`` lists those that do not have the result yet. ``output`` is the processed
    instance once the pipeline ran, so a retry only forwards again.
    """

    id: int
    state: JobState
    reason: str | None
    original: Path | None
    output: Path | None
    calling_ae: str
    called_ae: str
    size: int
    attempts: int
    received_at: float
    updated_at: float
    next_at: float
    first_failure_at: float | None
    destinations: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()


class Spool(Protocol):
    """What receive and the serve loop need from a durable queue."""

    def incoming_dir(self) -> Path:
        """Folder where receive writes the bytes of an instance before :meth:`admit`."""

    def check_capacity(self, expected_bytes: int = 0) -> None:
        """Raise :class:`~gateway.errors.SpoolFull` when a new instance cannot be taken."""

    def admit(self, received: Path, *, calling_ae: str, called_ae: str) -> int:
        """Make a received file durable and queue it; return the job id."""

    def claim(self, now: float | None = None) -> Job | None:
        """Take the oldest job that is due and mark it processing."""

    def original(self, job: Job) -> Path | bytes:
        """The received instance of a job: its file, or its bytes when the spool holds them."""

    def output_path(self, job_id: int) -> Path:
        """Where the processed instance of a job is kept until every destination has it."""

    def record_deliveries(self, job_id: int, delivered: Iterable[str], failed: dict[str, str],
                          next_at: float | None, *, output: Path | None = None,
                          destinations: Sequence[str] = ()) -> JobState:
        """Record one round (the pipeline's result on the first); done, retry or dead letter."""

    def quarantine(self, job_id: int, reason: str) -> None:
        """Stop a job for good (until requeued) with a reason code."""

    def recover(self) -> int:
        """Put back jobs left in processing by a crash; return how many."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def secure_delete(path: Path) -> None:
    """Overwrite a file with zeros, fsync and unlink it, so an original does not linger on disk.

    On journalling or copy-on-write file systems this is best effort; it still keeps the
    bytes out of reach of anything that reads free blocks of the spool's own files.
    """
    try:
        with open(path, "r+b", buffering=0) as handle:
            remaining = os.fstat(handle.fileno()).st_size
            block = b"\0" * min(remaining, 1 << 20)
            while remaining > 0:
                remaining -= handle.write(block[: min(remaining, len(block))])
            os.fsync(handle.fileno())
        path.unlink()
    except FileNotFoundError:
        pass


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
    inline_max_bytes
        Originals up to this size are kept in the database, larger ones as files.
    """

    def __init__(self, path: Path, *, min_free_bytes: int = 0, max_bytes: int | None = None,
                 retention: float = 0, inline_max_bytes: int = INLINE_MAX_BYTES) -> None:
        self.path = Path(path)
        self.min_free_bytes = min_free_bytes
        self.max_bytes = max_bytes
        self.retention = retention
        self.inline_max_bytes = inline_max_bytes
        for folder in (self.path, self.path / _ORIGINALS, self.path / _OUTPUTS,
                       self.path / _INCOMING):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path / _DATABASE, timeout=30, isolation_level=None,
                                   check_same_thread=False)
        os.chmod(self.path / _DATABASE, 0o600)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._synchronous = "FULL"
        self._db.execute("PRAGMA foreign_keys=ON")
        # Deleted originals are overwritten with zeros, as secure_delete() does for files.
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.executescript(_SCHEMA)
        for journal in self.path.glob(f"{_DATABASE}-*"):  # the WAL and its index
            os.chmod(journal, 0o600)
        self._bytes = self._db.execute(
            "SELECT COALESCE(SUM(size), 0) FROM jobs WHERE state != 'done'").fetchone()[0]

    # -- plumbing ---------------------------------------------------------------------------

    @contextmanager
    def _transaction(self, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction; ``durable`` ones are fsynced before they return.

        Only admitting an instance must survive a power cut the moment it commits (the sender
        was told Success). Every later state change is cheaper without its own fsync: if one is
        lost, the job runs again and, the output being deterministic, the PACS gets the same
        instance once more. The next durable commit syncs the write-ahead log up to itself,
        which makes every earlier commit durable too.
        """
        with self._lock:
            synchronous = "FULL" if durable else "NORMAL"
            if synchronous != self._synchronous:
                self._db.execute(f"PRAGMA synchronous={synchronous}")
                self._synchronous = synchronous
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

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
        """Raise SpoolFull below the free-disk floor or above the spool's size cap."""
        free = shutil.disk_usage(self.path).free
        if free - expected_bytes < self.min_free_bytes:
            raise SpoolFull("free disk space is below the spool's floor")
        if self.max_bytes is not None and self._bytes + expected_bytes > self.max_bytes:
            raise SpoolFull("the spool holds its configured maximum")

    def admit(self, received: Path, *, calling_ae: str, called_ae: str) -> int:
        """Make a received file durable and queue it; after this returns it survives a crash.

        The file must be on the spool's file system (e.g. in :meth:`incoming_dir`): a large one
        is renamed into ``originals/``, a small one is read into the database and removed.

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
                self._bytes += size
        except sqlite3.Error:
            secure_delete(received if data is not None else Path(original))
            raise SpoolFull("the spool's state database refused the job") from None
        if data is not None:
            # Committed, so the file is a leftover; should a crash bring it back, recover()
            # removes whatever is in incoming/.
            received.unlink(missing_ok=True)
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def _store_file(self, received: Path) -> Path:
        """Write-fsync-rename a large original into ``originals/`` (before its row commits)."""
        os.chmod(received, 0o600)
        with open(received, "rb") as handle:
            os.fsync(handle.fileno())
        target = self.path / _ORIGINALS / f"{secrets.token_hex(16)}.dcm"
        os.rename(received, target)
        _fsync_dir(target.parent)
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
        ``destinations`` the route's destinations (one delivery each). Every destination in
        ``delivered`` has the result; those in ``failed`` (destination -> reason code) are
        retried at ``next_at``, or the job is quarantined (dead letter) when ``next_at`` is
        None. Once nothing is pending the job is done: its output is removed now, its original
        by :meth:`purge` after the retention time.
        """
        now = time.time()
        with self._transaction() as db:
            if output is not None:
                db.execute("UPDATE jobs SET output = ? WHERE id = ?", (str(output), job_id))
                db.execute("DELETE FROM deliveries WHERE job_id = ?", (job_id,))
                db.executemany("INSERT INTO deliveries (job_id, destination) VALUES (?, ?)",
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
        if state is JobState.DONE and row[0]:
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
        """After a crash: put processing jobs back and remove files no committed job owns.

        A file in ``originals/`` without a row was renamed but never committed, so its sender
        never got Success and will send it again; a file in ``incoming/`` is a partial receive.
        """
        with self._transaction() as db:
            count = db.execute(
                "UPDATE jobs SET state = CASE WHEN first_failure_at IS NULL"
                " THEN 'received' ELSE 'retry' END WHERE state = 'processing'").rowcount
            known = {row[0] for row in db.execute(
                "SELECT original FROM jobs WHERE original IS NOT NULL")}
            outputs = {row[0] for row in db.execute(
                "SELECT output FROM jobs WHERE output IS NOT NULL AND state != 'done'")}
        for path in (self.path / _ORIGINALS).iterdir():
            if str(path) not in known:
                secure_delete(path)
        for path in (self.path / _OUTPUTS).iterdir():
            if str(path) not in outputs:
                path.unlink(missing_ok=True)
        for path in (self.path / _INCOMING).iterdir():
            secure_delete(path)
        return count

    def purge(self, now: float | None = None) -> int:
        """Securely delete originals of done jobs past the retention time; return how many.

        Done states are committed without their own fsync; the durable commit here (which marks
        the originals gone) syncs them all before any original is deleted, so a power cut never
        leaves a job that still needs its original without one. One fsync per batch of
        :data:`_PURGE_BATCH` jobs, not per job. Receive can admit between batches: overwriting
        originals held in the database takes the spool's lock for 20-40 ms per batch of 40 KB.
        """
        now = time.time() if now is None else now
        with self._lock:
            rows = self._db.execute(
                "SELECT id, original FROM jobs WHERE state = 'done' AND original != ''"
                " AND updated_at <= ?", (now - self.retention,)).fetchall()
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
        return len(rows)

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
        condition, args = "state IN ('quarantined', 'retry') AND original != ''", []
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
