"""The queue's interface: jobs, their states, and what each stage may ask of a spool.

A received instance becomes a *job* whose state moves
``received -> processing -> done | retry | quarantined``. Receive, the serve loop and the admin
commands see a spool only through the protocols here, so that a distributed backend
(PostgreSQL rows, payloads in a shared folder) can replace the embedded folder + SQLite one
(:class:`gateway.store.sqlite_spool.FolderSpool`) without touching them:

- :class:`Intake`: what receive needs (a place to write, capacity, durable admission);
- :class:`QueueAdmin`: what ``dmask queue`` and ``dmask requeue`` need;
- :class:`Spool`: both, plus claiming jobs and recording their outcomes (the serve loop).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


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

    ``original`` is the original's file, or None when the spool holds its bytes
    (:meth:`Spool.original`). ``destinations`` is empty until the pipeline has routed the job;
    ``pending`` lists those that do not have the result yet. ``output`` is the processed
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


@dataclass(frozen=True)
class HeldInstance:
    """What the spool knows of an instance by its original SOP Instance UID (storage commitment).

    ``state`` is that of the instance's job; when it was received more than once, the job that
    is furthest from failing (held or delivered before quarantined).
    """

    sop_class_uid: str
    state: JobState


def held_by_uid(rows: Iterable[tuple[str, str, str]]) -> dict[str, HeldInstance]:
    """What a backend's rows of (original SOP Instance UID, SOP Class UID, job state), oldest job
    first, say of each instance: an instance received more than once is reported by a job that
    is not quarantined when it has one, else by its latest job."""
    held: dict[str, HeldInstance] = {}
    for uid, sop_class, state in rows:
        known = held.get(uid)
        if known is None or known.state is JobState.QUARANTINED or state != JobState.QUARANTINED:
            held[uid] = HeldInstance(sop_class, JobState(state))
    return held


class Intake(Protocol):
    """What receive needs from a spool: a place to write, a capacity check, durable admission."""

    def incoming_dir(self) -> Path:
        """Folder where receive writes the bytes of an instance before :meth:`admit`."""

    def check_capacity(self, expected_bytes: int = 0) -> None:
        """Raise :class:`~gateway.errors.SpoolFull` when a new instance cannot be taken."""

    def admit(self, received: Path, *, calling_ae: str, called_ae: str,
              sop_class_uid: str | None = None, sop_instance_uid: str | None = None) -> int:
        """Make a received file durable and queue it; return the job id.

        Receive answers a C-STORE with Success only after this returned: from then on the
        instance survives a crash of the gateway. Raises
        :class:`~gateway.errors.SpoolFull` (the file is removed) when it cannot. The original
        SOP Class and Instance UIDs, when given, are kept with the job for
        :meth:`held_instances`.
        """

    def held_instances(self, sop_instance_uids: Iterable[str]) -> dict[str, HeldInstance]:
        """The instances among ``sop_instance_uids`` (original UIDs) that the spool admitted.

        A UID the spool never admitted (or admitted without its UIDs) is not in the result.
        """


class QueueAdmin(Protocol):
    """What an administrator's commands need: counts, listings, requeueing."""

    def counts(self) -> dict[tuple[str, str | None], int]:
        """Number of jobs per (state, reason)."""

    def jobs(self, state: JobState | None = None, reason: str | None = None,
             limit: int = 1000) -> list[Job]:
        """Jobs filtered by state and reason, oldest first."""

    def requeue(self, ids: Sequence[int] = (), *, reason: str | None = None,
                all_failed: bool = False) -> int:
        """Send quarantined (or retrying) jobs through the pipeline again; return how many."""

    def close(self) -> None:
        """Release the connection to the queue's state."""


class Spool(Intake, QueueAdmin, Protocol):
    """Everything the serve loop needs from a durable queue (receive and admin included).

    Every method that writes raises :class:`~gateway.errors.SpoolFull` when the disk (or
    quota) is full, and then leaves the job as it was: the caller tries again later.
    """

    def recover(self) -> int:
        """Put back jobs left in processing by a crash; return how many."""

    def claim(self, now: float | None = None) -> Job | None:
        """Take the oldest job that is due and mark it processing."""

    def release(self, job_id: int) -> None:
        """Give a claimed job back untouched (e.g. its worker died before running it)."""

    def original(self, job: Job) -> Path | bytes:
        """The received instance of a job: its file, or its bytes when the spool holds them.

        Raises :class:`LookupError` when the spool holds no original for the job.
        """

    def output_path(self, job_id: int) -> Path:
        """Where the processed instance of a job is kept until every destination has it."""

    def record_deliveries(self, job_id: int, delivered: Iterable[str], failed: dict[str, str],
                          next_at: float | None, *, output: Path | None = None,
                          destinations: Sequence[str] = ()) -> JobState:
        """Record one round (the pipeline's result on the first); done, retry or dead letter."""

    def quarantine(self, job_id: int, reason: str) -> None:
        """Stop a job for good (until requeued) with a reason code."""

    def purge(self, now: float | None = None) -> int:
        """Delete originals of done jobs past the retention time; return how many."""

    def note_out_of_space(self) -> None:
        """A write to the spool's disk failed for lack of space outside the spool (a worker's
        result): refuse new instances, as after a failed write of its own, until space is freed."""
