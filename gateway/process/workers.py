"""The process pool that runs the pipeline and forwards its results.

Decoding, masking, scrubbing and encoding are CPU work; in the serve process they would share
one GIL with every open association. Each worker process therefore owns what is expensive to
create - one :class:`~gateway.mask.FaceMasker` per mask profile (mediapipe graphs, render
context) and one :class:`~gateway.deliver.forward.Forwarder` (open associations) - created once, when the
process starts. A worker gets a :class:`Ticket` (a spool job, by path) and returns an
:class:`Outcome`; it never touches the spool's state, so the serve loop stays its only writer.
Results for a DICOMweb destination that takes several instances per request are left to a
:class:`~gateway.deliver.batching.Batch`, which the serve loop hands back to a worker
(:func:`deliver`) once it is full or has waited long enough.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from multiprocessing.util import Finalize
from pathlib import Path

from pydicom import dcmread

from gateway.config import DuplicatePolicy, GatewayConfig
from gateway.deliver.batching import Batch, batched
from gateway.deliver.forward import Forwarder, Outgoing
from gateway.errors import OUT_OF_SPACE_ERRNOS, DmaskError, DuplicateInstance, ForwardError, SpoolFull
from gateway.process.pipeline import Masker, process_instance, quarantine_reason

log = logging.getLogger("dmask.workers")

_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Ticket:
    """One job for a worker: its original (a file, or the bytes of a small one), where its
    result goes and what is left to do."""

    job_id: int
    original: Path | bytes
    output: Path
    calling_ae: str
    called_ae: str
    processed: bool = False
    pending: tuple[str, ...] = ()
    #: Destinations the delivery ledger says have the result: never sent it again.
    delivered: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outcome:
    """What a worker did with a ticket.

    ``destinations`` is set when the pipeline ran in this round (the route's destinations);
    ``delivered`` and ``failed`` (destination -> reason) describe the forwarding round.
    ``duplicates`` names, per destination, the policy applied when it already held another
    instance with the result's SOP Instance UID. ``batched`` names the DICOMweb destinations left
    to a batched STOW-RS request (:mod:`gateway.deliver.batching`), ``result`` the processed
    instance they get, kept at the ticket's output until then. ``out_of_space``: the spool's
    disk had no room for the result; without ``destinations`` the pipeline's output was not
    written and the job goes back to the queue as it was, otherwise only the copy kept for
    retrying the failed (or batched) deliveries was lost (their next round runs the pipeline
    again).
    Identifiers are the pseudonymous ones of the result, for the audit trail.
    """

    job_id: int
    quarantine_reason: str | None = None
    destinations: tuple[str, ...] = ()
    delivered: tuple[str, ...] = ()
    failed: dict[str, str] = field(default_factory=dict)
    duplicates: dict[str, str] = field(default_factory=dict)
    batched: tuple[str, ...] = ()
    result: Outgoing | None = None
    out_of_space: bool = False
    masked: bool = False
    sop_class_uid: str | None = None
    study_instance_uid: str | None = None
    patient_id: str | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)


class _WorkerState:
    """Per-process resources, created once by :func:`_initialize`."""

    config: GatewayConfig
    secret: bytes
    maskers: dict[str, Masker]
    forwarder: Forwarder


_state = _WorkerState()


def _die_with_parent() -> None:
    """Ask Linux to kill this worker when the serve process dies (even by SIGKILL).

    An orphaned worker would otherwise go on forwarding jobs that the restarted gateway also
    runs; the output is deterministic so the PACS would not get duplicates, but two writers of
    one output file are still a mess to reason about.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: the pool notices the broken pipe on its next call instead


def _initialize(config: GatewayConfig, secret: bytes, configure_logging: Callable[[], None]) -> None:
    _die_with_parent()
    configure_logging()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the serve process decides when to stop
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    _state.config = config
    _state.secret = secret
    _state.maskers = {}
    mask_profiles = {name: p.mask for name, p in config.profiles.items() if p.mask is not None}
    if mask_profiles:
        from gateway.mask import FaceMasker  # mediapipe and EGL only where a profile masks

        _state.maskers = {name: FaceMasker(settings, key=secret) for name, settings in mask_profiles.items()}
    _state.forwarder = Forwarder(config.destinations, config.listener.ae_title)
    # Release the open associations when the pool stops this process, rather than leave the
    # PACS holding them until its own timeout.
    Finalize(_state.forwarder, _state.forwarder.close, exitpriority=10)


def _process(ticket: Ticket) -> tuple[Outgoing, Outcome]:
    """Run the pipeline and write the result to a temporary file in the spool's outputs.

    Not fsynced yet: :func:`_settle` makes it durable only if a later round will read it.
    """
    original = ticket.original
    data = original if isinstance(original, bytes) else original.read_bytes()
    processed = process_instance(data, _state.config, _state.secret,
                                 calling_ae=ticket.calling_ae, called_ae=ticket.called_ae,
                                 maskers=_state.maskers)
    temporary = ticket.output.with_suffix(".tmp")
    try:
        with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as handle:
            handle.write(processed.encoded)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        if exc.errno in OUT_OF_SPACE_ERRNOS:
            raise SpoolFull("no room in the spool for the processed instance") from None
        raise
    outgoing = Outgoing(temporary, processed.sop_class_uid, processed.sop_instance_uid,
                        processed.transfer_syntax_uid)
    outcome = Outcome(job_id=ticket.job_id, destinations=processed.destinations,
                      masked=processed.masked, sop_class_uid=processed.sop_class_uid,
                      study_instance_uid=processed.study_instance_uid,
                      patient_id=processed.patient_id, stage_seconds=processed.stage_seconds)
    return outgoing, outcome


def _already_processed(ticket: Ticket) -> tuple[Outgoing, Outcome]:
    """A retry round: the result is on disk; only its header is read (for the audit trail)."""
    header = dcmread(ticket.output, stop_before_pixels=True,
                     specific_tags=["StudyInstanceUID", "PatientID"])
    meta = header.file_meta
    outgoing = Outgoing(ticket.output, str(meta.MediaStorageSOPClassUID),
                        str(meta.MediaStorageSOPInstanceUID), str(meta.TransferSyntaxUID))
    return outgoing, Outcome(job_id=ticket.job_id, destinations=ticket.pending,
                             sop_class_uid=outgoing.sop_class_uid,
                             study_instance_uid=str(header.get("StudyInstanceUID", "")),
                             patient_id=str(header.get("PatientID", "")))


def _settle(result: Path, output: Path, *, keep: bool) -> None:
    """Keep a fresh result for the retry rounds, or drop it once every destination has it.

    A kept result is fsynced before it is renamed to the job's output, so the output a retry
    round reads is never torn by a power cut (a lost rename only means the pipeline runs
    again). When every delivery succeeded no round reads it, and it is removed unsynced.
    """
    if not keep:
        result.unlink(missing_ok=True)
        return
    with open(result, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(result, output)


def _started() -> int:
    """A no-op call whose completion shows that a worker's initializer has run."""
    return os.getpid()


def run(ticket: Ticket) -> Outcome:
    """Process (unless done earlier) and forward one job; never raises for a bad instance."""
    try:
        if ticket.processed and ticket.output.exists():
            outgoing, outcome = _already_processed(ticket)
            pending = ticket.pending
        else:
            outgoing, outcome = _process(ticket)
            pending = tuple(name for name in outcome.destinations if name not in ticket.delivered)
    except SpoolFull:  # the gateway's disk, not the instance: the job waits for space
        return Outcome(job_id=ticket.job_id, out_of_space=True)
    except Exception as exc:  # every failure of one instance is a quarantine, never a crash
        if not isinstance(exc, DmaskError):
            log.exception("pipeline failed unexpectedly", extra={"job": ticket.job_id})
        return Outcome(job_id=ticket.job_id, quarantine_reason=quarantine_reason(exc))
    delivered: list[str] = []
    failed: dict[str, str] = {}
    duplicates: dict[str, str] = {}
    later = tuple(name for name in pending if batched(_state.config.destinations.get(name)))
    for name in pending:
        if name in later:
            continue
        try:
            applied = _state.forwarder.send(name, outgoing)
            if applied is not None:
                duplicates[name] = applied.value
            delivered.append(name)
        except DuplicateInstance as exc:
            duplicates[name] = DuplicatePolicy.QUARANTINE.value
            failed[name] = exc.reason
        except DmaskError as exc:
            log.warning("delivery failed: %s", exc,
                        extra={"job": ticket.job_id, "destination": name})
            failed[name] = exc.reason
        except Exception:  # a defect in forwarding must not lose the job: retry it
            log.exception("delivery failed unexpectedly",
                          extra={"job": ticket.job_id, "destination": name})
            failed[name] = "forward-failed"
    out_of_space = False
    if outgoing.path != ticket.output:
        try:
            _settle(outgoing.path, ticket.output, keep=bool(failed or later))
        except OSError as exc:
            outgoing.path.unlink(missing_ok=True)
            if exc.errno not in OUT_OF_SPACE_ERRNOS:
                raise
            out_of_space = True
            # Nothing is left to send: the batched destinations wait for the next round.
            failed.update((name, SpoolFull.reason) for name in later)
            later = ()
    result = replace(outgoing, path=ticket.output) if later else None
    return Outcome(**{**outcome.__dict__, "delivered": tuple(delivered), "failed": failed,
                      "duplicates": duplicates, "batched": later, "result": result,
                      "out_of_space": out_of_space})


def deliver(batch: Batch) -> dict[int, str]:
    """Send a batch of processed instances to its DICOMweb destination; return the failure
    reason of each job whose instance was not stored (the others were)."""
    name = batch.destination
    try:
        failures = _state.forwarder.store(name, [parcel.outgoing for parcel in batch.parcels])
    except DmaskError as exc:
        log.warning("delivery failed: %s", exc, extra={"destination": name, "jobs": len(batch.parcels)})
        return {parcel.job_id: exc.reason for parcel in batch.parcels}
    except Exception:  # a defect in forwarding must not lose the jobs: retry them
        log.exception("delivery failed unexpectedly", extra={"destination": name})
        return {parcel.job_id: ForwardError.reason for parcel in batch.parcels}
    failed: dict[int, str] = {}
    for parcel in batch.parcels:
        error = failures.get(parcel.outgoing.sop_instance_uid)
        if error is not None:
            log.warning("delivery failed: %s", error, extra={"job": parcel.job_id, "destination": name})
            failed[parcel.job_id] = error.reason
    return failed


class WorkerPool:
    """A pool of worker processes sharing one configuration and key.

    Processes are started with ``spawn``: the serve process runs pynetdicom threads, and a
    forked child would inherit their locks in whatever state they were. ``configure_logging``
    (picklable, such as a :func:`functools.partial`) runs first in each process, so that the
    serve loop decides how workers log without this stage depending on operations.
    """

    def __init__(self, config: GatewayConfig, secret: bytes, configure_logging: Callable[[], None],
                 count: int | None = None) -> None:
        self.count = count or config.workers.count
        self._executor = ProcessPoolExecutor(
            max_workers=self.count, mp_context=multiprocessing.get_context("spawn"),
            initializer=_initialize, initargs=(config, secret, configure_logging))
        # The executor starts a process per submitted call while none is idle: one call per
        # worker starts them all now, so models load before the first instance arrives.
        self._warm_up = [self._executor.submit(_started) for _ in range(self.count)]

    def started(self) -> bool:
        """Whether every worker process has started and loaded its models."""
        return all(future.done() and future.exception() is None for future in self._warm_up)

    def submit(self, ticket: Ticket) -> Future[Outcome]:
        """Queue a ticket; the future raises BrokenProcessPool if its worker died."""
        return self._executor.submit(run, ticket)

    def submit_batch(self, batch: Batch) -> Future[dict[int, str]]:
        """Queue a batch for its destination (:func:`deliver`); raises like :meth:`submit`."""
        return self._executor.submit(deliver, batch)

    def shutdown(self, wait: bool = True) -> None:
        """Stop the workers once the submitted tickets are done; ``wait`` blocks until then."""
        self._executor.shutdown(wait=wait)
