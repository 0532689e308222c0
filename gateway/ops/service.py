"""``dmask serve``: the listener, the spool, the worker pool and the loop that connects them.

The serve process receives (threads, I/O only) and keeps the books: it claims due jobs from the
spool, hands them to the workers and records their outcomes (processed, delivered, retried,
quarantined) in the spool, the metrics and the audit trail. It is the spool's only writer.
Results bound for a DICOMweb destination that takes several instances per request are gathered
into batches (:mod:`gateway.deliver.batching`) and handed back to the workers; each job is
recorded once every batch it is in has been answered.

Signals: SIGHUP reloads the configuration, refusing a broken one and keeping the running one;
SIGTERM (and SIGINT) stop accepting associations, let the in-flight jobs finish and exit.

A full spool disk never ends the process (:mod:`gateway.ops.spool_space`): it opens, recovers,
receives and records as soon as space is freed, and is not ready meanwhile. A shared queue
that does not answer (PostgreSQL, its payload store) is waited out the same way.

Roles (scale-out, on a shared queue): ``receive`` only listens and admits, ``process`` only
claims, processes and forwards, ``all`` (the default, and the only one that makes sense on the
embedded spool) does both.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from functools import partial
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Literal, Protocol

from gateway.codec.pixels import DECODABLE_TRANSFER_SYNTAXES
from gateway.config import (
    DicomDestination,
    DicomWebDestination,
    GatewayConfig,
    Listener,
    RetryPolicy,
    StowListener,
    load_config,
)
from gateway.deliver.batching import Batch, Batcher, Parcel
from gateway.deliver.forward import next_attempt
from gateway.deliver.outgoing import Outgoing
from gateway.errors import ConfigError, DuplicateInstance, ForwardError, SpoolFull, StartupError
from gateway.ingest.listener import Receiver
from gateway.ingest.stow import StowReceiver
from gateway.ops.audit_trail import InstanceEvent, InstanceRecord, audit
from gateway.ops.audit_trail import Outcome as AuditOutcome
from gateway.ops.logs import NativeOutput, configure_logging
from gateway.ops.metrics import DEAD_LETTER_REASON, GatewayMetrics, serve_metrics
from gateway.ops.spool_space import LONGEST_PAUSE_S, SpoolSpace
from gateway.process.workers import Outcome, Ticket, WorkerPool
from gateway.store.backends import open_spool
from gateway.store.queue import Job, JobState, Spool

log = logging.getLogger("dmask.service")

#: A job in flight when a worker process died (or failed outside the pipeline) this many times
#: is quarantined: it is likely the one that kills workers (a codec crash on malformed data).
MAX_WORKER_CRASHES = 3
_HOUSEKEEPING_S = 5.0
_GIL_SWITCH_INTERVAL_S = 0.0005

Role = Literal["receive", "process", "all"]


class _Listening(Protocol):
    """What a reload starts and stops: the DICOM listener or the STOW-RS endpoint."""

    def start(self) -> tuple[str, int]: ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class _Swap:
    """One listener replaced by another in a reload (``new`` None: no longer configured)."""

    old: _Listening | None
    new: _Listening | None
    same_address: bool


def _swap_all(swaps: list[_Swap]) -> None:
    """Start every new listener and stop every old one.

    An old listener on the new one's address stops first (the port cannot be bound twice);
    the others stop only once every new one listens. On a failure the new ones that started
    stop again and the error is raised; old ones stopped to free their port stay stopped.
    """
    started: list[_Listening] = []
    try:
        for swap in swaps:
            if swap.same_address and swap.old is not None:
                swap.old.stop()
            if swap.new is not None:
                swap.new.start()
                started.append(swap.new)
    except BaseException:
        for listening in started:
            listening.stop()
        raise
    for swap in swaps:
        if not swap.same_address and swap.old is not None:
            swap.old.stop()


@dataclass
class _Held:
    """A job whose outcome waits for its batched STOW-RS deliveries (``waiting``) before it is
    recorded; each answered batch adds its destination to the outcome's delivered or failed."""

    job: Job
    ticket: Ticket
    outcome: Outcome
    waiting: set[str]

    def answered(self, destination: str, failure: str | None) -> None:
        self.waiting.discard(destination)
        if failure is None:
            self.outcome = replace(self.outcome, delivered=(*self.outcome.delivered, destination))
        else:
            self.outcome = replace(self.outcome, failed={**self.outcome.failed, destination: failure})


def _address(settings: Listener | StowListener) -> tuple[str, int]:
    return settings.host, settings.port


def _why(error: OSError | StartupError) -> str:
    """Why a listener did not start, as a log says it: its kind and the system's words (never a
    path or data)."""
    if isinstance(error, StartupError):
        return str(error)
    return f"{type(error).__name__}: {error.strerror or error}"


class Gateway:
    """The running gateway.

    Parameters
    ----------
    config_path
        The YAML configuration; read again on SIGHUP.
    role
        What this process does: ``receive``, ``process`` or ``all``.

    Raises
    ------
    ConfigError
        The configuration or its secret cannot be loaded.
    SpoolSchemaError
        The spool's state was written by a newer dmask, or is not a spool's.
    """

    def __init__(self, config_path: Path, role: Role = "all") -> None:
        self.config_path = Path(config_path)
        self.role = role
        self.config: GatewayConfig = load_config(self.config_path)
        self.secret = self.config.load_secret()
        opened: Spool | SpoolFull
        try:
            opened = open_spool(self.config.spool, receiver=True, node=self.config.node)
        except SpoolFull as exc:
            opened = exc
        self._native_output = NativeOutput()
        configure_logging(self.config.logging)
        self.spool: Spool = self._wait_for_spool(opened) if isinstance(opened, SpoolFull) else opened
        self.metrics = GatewayMetrics(node=self.config.node)
        self._space = SpoolSpace(self.metrics)
        self.metrics.watch_spool(self.config.spool.path, self.config.spool.min_free_bytes)
        self._wake = threading.Event()
        self._stopping = False
        self._reload_requested = False
        self._inflight: dict[Future[Outcome], tuple[Job, Ticket]] = {}
        self._batcher = Batcher()
        self._held: dict[int, _Held] = {}
        self._sending: dict[Future[dict[int, str]], Batch] = {}
        self._crashes: dict[int, int] = {}
        self._pool: WorkerPool | None = None
        self._receiver: Receiver | None = None
        self._stow: StowReceiver | None = None
        self._listening = False
        self._ports_open = False

    @property
    def _receives(self) -> bool:
        return self.role != "process"

    @property
    def _processes(self) -> bool:
        return self.role != "receive"

    def _wait_for_spool(self, error: SpoolFull) -> Spool:
        """Open the spool whose disk was too full (or whose shared queue did not answer): wait
        and retry, never exit.

        Nothing listens yet, so probes find the gateway not ready; SIGTERM ends the wait.
        """
        log.error("the spool cannot be opened (%s); trying again until it can", error)
        pause = 1.0
        while True:
            time.sleep(pause)
            pause = min(2 * pause, LONGEST_PAUSE_S)
            try:
                return open_spool(self.config.spool, receiver=True, node=self.config.node)
            except SpoolFull:
                continue

    # -- readiness and signals --------------------------------------------------------------

    def ready(self) -> bool:
        """Listener up (receive), workers started with their models loaded (process) and the
        spool able to take an instance."""
        if self._stopping or (self._receives and not self._listening):
            return False
        if self._processes and (self._pool is None or not self._pool.started()):
            return False
        return self._spool_has_room()

    def _spool_has_room(self) -> bool:
        """Whether the spool takes an instance now (the same check receive makes)."""
        try:
            self.spool.check_capacity()
        except SpoolFull:
            self.metrics.spool_full.set(1)
            return False
        self.metrics.spool_full.set(0)
        return True

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self._reload_requested = True
        else:
            self._stopping = True
        self._wake.set()

    def stop(self) -> None:
        """Ask the loop to drain and return (what SIGTERM does; usable from another thread)."""
        self._stopping = True
        self._wake.set()

    # -- receive callbacks (association threads) --------------------------------------------

    def _admitted(self, job_id: int, calling_ae: str, sop_class_uid: str) -> None:
        self.metrics.received.inc()
        audit(InstanceEvent.RECEIVED, InstanceRecord(job_id, sop_class_uid=sop_class_uid),
              source_ae=calling_ae, destination=self.config.listener.ae_title)
        self._wake.set()

    def _refused(self, status: int) -> None:
        self.metrics.refused.labels(f"0x{status:04X}").inc()

    def _new_receiver(self, listener: Listener) -> Receiver:
        return Receiver(listener, self.spool, DECODABLE_TRANSFER_SYNTAXES,
                        on_admitted=self._admitted, on_refused=self._refused)

    def _new_stow(self, settings: StowListener) -> StowReceiver:
        return StowReceiver(settings, self.spool, self.config.listener.sop_classes,
                            DECODABLE_TRANSFER_SYNTAXES,
                            settings.called_ae_title or self.config.listener.ae_title,
                            on_admitted=self._admitted, on_refused=self._refused)

    def _start_receivers(self) -> None:
        """Listen (DICOM, and STOW-RS when configured) with the running configuration.

        Raises
        ------
        StartupError
            A port cannot be bound; nothing of this call listens.
        OSError
            TLS files cannot be loaded; nothing of this call listens.
        """
        receiver = self._new_receiver(self.config.listener)
        receiver.start()
        if self.config.stow is not None:
            stow = self._new_stow(self.config.stow)
            try:
                stow.start()
            except OSError as exc:
                receiver.stop()
                raise StartupError.cannot_bind(stow.settings.host, stow.settings.port, exc) from exc
            self._stow = stow
        self._receiver = receiver
        self._listening = True

    def _stop_receivers(self) -> None:
        self._listening = False
        if self._receiver is not None:
            self._receiver.stop()
            self._receiver = None
        if self._stow is not None:
            self._stow.stop()
            self._stow = None

    def _listen_again(self) -> None:
        """Housekeeping's retry of listeners lost in a reload: say why while it fails."""
        try:
            self._start_receivers()
        except (StartupError, OSError) as exc:
            log.error("the listener cannot start; trying again", extra={"error": _why(exc)})

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> None:
        """Serve until SIGTERM/SIGINT (or :meth:`stop`); must run in the main thread.

        Recovery comes first (it removes partial receives, so nothing may receive yet), then
        the ports, then the workers.

        Raises :class:`StartupError` when a port cannot be bound; nothing is left running then.
        """
        # The association threads answer C-STOREs while this thread keeps the books; with the
        # default 5 ms GIL switch interval a response can wait that long for the interpreter.
        sys.setswitchinterval(_GIL_SWITCH_INTERVAL_S)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_signal)
        if not self._recover():
            self._drain()
            return
        http = self._open_ports()
        self._ports_open = True
        if self._processes:
            self._pool = WorkerPool(self.config, self.secret, partial(configure_logging, self.config.logging))
        housekeeping = 0.0
        while not self._stopping:
            if self._reload_requested:
                self._reload_requested = False
                self._reload()
            self._dispatch()
            batch_due = self._batcher.next_due(self.config.destinations)
            self._wake.wait(min(0.5, self._space.pause_seconds() or 0.5,
                                0.5 if batch_due is None else batch_due))
            self._wake.clear()
            self._collect()
            self._send_batches()
            if time.monotonic() - housekeeping > _HOUSEKEEPING_S:
                housekeeping = time.monotonic()
                self._housekeeping()
        self._drain()
        if http is not None:
            http.shutdown()

    def _open_ports(self) -> ThreadingHTTPServer | None:
        """Serve the metrics (when enabled) and start the listeners; return the metrics server.

        Every port is bound before any worker process starts: a port that cannot be bound
        ends the start at once, with no output of loading models after the reason, and with
        nothing left running. Until the workers are up, ``/readyz`` answers not ready and
        received instances wait in the spool.
        """
        http = None
        try:
            if self.config.metrics.enabled:
                http = serve_metrics(self.metrics, self.config.metrics.host, self.config.metrics.port,
                                     self.ready)
            if self._receives:
                self._start_receivers()
        except StartupError as error:
            log.error("cannot start: %s", error)
            if http is not None:
                http.shutdown()
                http.server_close()
            self.spool.close()
            self._native_output.close()
            raise
        return http

    def _recover(self) -> bool:
        """Put back what an earlier run left in processing, before anything receives.

        On a disk too full to commit that, wait (not ready) and try again rather than exit.
        Return False when asked to stop meanwhile.
        """
        while not self._stopping:
            try:
                recovered = self.spool.recover()
            except SpoolFull:
                self._space.ran_out("recover")
                self._wake.wait(self._space.pause_seconds())
                self._wake.clear()
                continue
            if recovered:
                log.info("jobs left in processing were put back", extra={"jobs": recovered})
            return True
        return False

    def _drain(self) -> None:
        """Stop receiving, finish the jobs the workers have (batches go without waiting for
        more), stop the workers."""
        log.info("stopping: draining in-flight work", extra={"jobs": len(self._inflight) + len(self._held)})
        self._stop_receivers()
        while self._inflight or self._held:
            self._send_batches(everything=True)
            self._wake.wait(0.5)
            self._wake.clear()
            self._collect()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self._housekeeping()
        if self._space.unwritten():
            log.warning("the spool's disk is full: jobs whose outcome could not be recorded run"
                        " again after the restart", extra={"jobs": self._space.unwritten()})
        self.spool.close()
        log.info("stopped")
        self._native_output.close()

    def _dispatch(self) -> None:
        if self._pool is None or not self._space.writable(self.spool):
            return
        capacity = 2 * self._pool.count
        while len(self._inflight) + len(self._sending) < capacity and not self._stopping:
            try:
                job = self.spool.claim()
            except SpoolFull:
                self._space.ran_out("claim")
                return
            if job is None:
                return
            try:
                original = self.spool.original(job)
            except LookupError:
                log.exception("a claimed job has no original", extra={"job": job.id})
                self._space.write("quarantine", partial(self._quarantine, job, "internal-error"))
                continue
            except SpoolFull:  # the payload store does not answer: wait for it
                self._space.write("release", partial(self.spool.release, job.id))
                self._space.ran_out("original")
                return
            ticket = Ticket(job_id=job.id, original=original,
                            output=self.spool.output_path(job.id), calling_ae=job.calling_ae,
                            called_ae=job.called_ae, processed=job.output is not None,
                            pending=job.pending,
                            delivered=tuple(d for d in job.destinations if d not in job.pending))
            try:
                future = self._pool.submit(ticket)
            except BrokenProcessPool:  # a worker died while the pool was idle
                self._space.write("release", partial(self.spool.release, job.id))
                self._replace_broken_pool()
                return
            self._inflight[future] = (job, ticket)
            future.add_done_callback(lambda _: self._wake.set())

    def _collect(self) -> None:
        broken = False
        for future in [f for f in self._inflight if f.done()]:
            job, ticket = self._inflight.pop(future)
            try:
                outcome = future.result()
            except BrokenProcessPool:
                broken = True
                self._worker_died(job)
                continue
            except Exception:  # a defect in a worker: the job is retried, then quarantined
                log.exception("a worker failed on a job", extra={"job": job.id})
                self._worker_died(job)
                continue
            self._crashes.pop(job.id, None)
            if outcome.out_of_space:
                self.spool.note_out_of_space()
                self._space.ran_out("output")
                if not outcome.destinations:  # nothing was written or sent: back to the queue
                    self._space.write("release", partial(self.spool.release, job.id))
                    continue
            if outcome.batched and outcome.result is not None:
                self._hold(job, ticket, outcome, outcome.result)
                continue
            self._space.write("record", partial(self._record, job, ticket, outcome))
        for sent in [f for f in self._sending if f.done()]:
            batch = self._sending.pop(sent)
            try:
                failed = sent.result()
            except Exception as exc:  # a worker died or failed outside the delivery: retry them
                broken = broken or isinstance(exc, BrokenProcessPool)
                log.error("a batch delivery failed in its worker", extra={"destination": batch.destination,
                                                                          "error": type(exc).__name__})
                failed = {parcel.job_id: ForwardError.reason for parcel in batch.parcels}
            self._answered(batch, failed)
        if broken and not self._stopping:
            self._replace_broken_pool()

    # -- batched STOW-RS deliveries ---------------------------------------------------------

    def _hold(self, job: Job, ticket: Ticket, outcome: Outcome, result: Outgoing) -> None:
        """Keep a worker's outcome unrecorded while its result waits for batched deliveries."""
        self._held[job.id] = _Held(job, ticket, outcome, set(outcome.batched))
        for name in outcome.batched:
            self._batcher.add(name, Parcel(job.id, result))

    def _send_batches(self, *, everything: bool = False) -> None:
        """Hand the batches that are due to the workers (all waiting ones with ``everything``)."""
        if self._pool is None:
            return
        for batch in self._batcher.due(self.config.destinations, everything=everything):
            try:
                future = self._pool.submit_batch(batch)
            except BrokenProcessPool:  # a worker died while the pool was idle: retry the batch
                self._answered(batch, {parcel.job_id: ForwardError.reason for parcel in batch.parcels})
                if not self._stopping:
                    self._replace_broken_pool()
                continue
            self._sending[future] = batch
            self.metrics.stow_request_instances.labels(batch.destination).observe(len(batch.parcels))
            future.add_done_callback(lambda _: self._wake.set())

    def _answered(self, batch: Batch, failed: dict[int, str]) -> None:
        """Apply a batch's answer to its jobs; record each job whose batches are all answered."""
        for parcel in batch.parcels:
            held = self._held.get(parcel.job_id)
            if held is None:
                continue
            held.answered(batch.destination, failed.get(parcel.job_id))
            if not held.waiting:
                del self._held[parcel.job_id]
                self._space.write("record", partial(self._record_held, held))

    def _record_held(self, held: _Held) -> None:
        """Record a held job; a fresh result kept only for its batches goes first when every
        destination has it (a spool would otherwise keep, or upload, a copy nobody reads)."""
        if not held.outcome.failed and not held.ticket.processed:
            held.ticket.output.unlink(missing_ok=True)
        self._record(held.job, held.ticket, held.outcome)

    def _replace_broken_pool(self) -> None:
        log.error("a worker process died; starting a new pool")
        self._pool = WorkerPool(self.config, self.secret, partial(configure_logging, self.config.logging))

    def _worker_died(self, job: Job) -> None:
        self._crashes[job.id] = self._crashes.get(job.id, 0) + 1
        if self._crashes[job.id] >= MAX_WORKER_CRASHES:
            self._space.write("quarantine", partial(self._quarantine, job, "worker-crashed"))
        else:
            self._space.write("release", partial(self.spool.release, job.id))

    # -- outcomes ---------------------------------------------------------------------------

    def _quarantine(self, job: Job, reason: str) -> None:
        self.spool.quarantine(job.id, reason)
        self.metrics.quarantined.labels(reason).inc()
        log.warning("instance quarantined", extra={"job": job.id, "reason": reason})
        audit(InstanceEvent.QUARANTINED, InstanceRecord(job.id), source_ae=job.calling_ae,
              destination=self.config.listener.ae_title, outcome=AuditOutcome.MINOR_FAILURE,
              reason=reason)

    def _retry_policy(self, destination: str) -> RetryPolicy:
        settings = self.config.destinations.get(destination)
        return settings.retry if isinstance(settings, (DicomDestination, DicomWebDestination)) else RetryPolicy()

    def _next_round(self, job: Job, failed: dict[str, str]) -> tuple[float | None, dict[str, str]]:
        """When to retry the failed deliveries, or (None, reasons) for a dead letter: at once
        for a duplicate a destination's policy quarantines (trying again changes nothing),
        after ``max_age`` otherwise (reason ``forward-expired``)."""
        if DuplicateInstance.reason in failed.values():
            return None, failed
        now = time.time()
        first = job.first_failure_at or now
        times = [next_attempt(self._retry_policy(name), job.attempts + 1, first, now)
                 for name in failed]
        if any(at is None for at in times):
            return None, {name: DEAD_LETTER_REASON for name in failed}
        return min(t for t in times if t is not None), failed

    def _record(self, job: Job, ticket: Ticket, outcome: Outcome) -> None:
        """Record a worker's outcome in the spool, then count and audit it.

        Raises
        ------
        SpoolFull
            Nothing was recorded (nor counted): the job stays in processing.
        """
        if outcome.quarantine_reason is not None:
            self._quarantine(job, outcome.quarantine_reason)
            return
        next_at: float | None = None
        failed: dict[str, str] = {}
        if outcome.failed:
            next_at, failed = self._next_round(job, outcome.failed)
        state = self.spool.record_deliveries(
            job.id, outcome.delivered, failed, next_at,
            output=None if ticket.processed else ticket.output,
            destinations=outcome.destinations)
        record = InstanceRecord(job.id, outcome.sop_class_uid, outcome.study_instance_uid,
                                outcome.patient_id)
        gateway_ae = self.config.listener.ae_title
        if not ticket.processed:
            self.metrics.observe_stages(outcome.stage_seconds)
            if outcome.masked:
                audit(InstanceEvent.MASKED, record, source_ae=gateway_ae, destination=gateway_ae)
        for name in outcome.delivered:
            self.metrics.forwarded.labels(name).inc()
            audit(InstanceEvent.FORWARDED, record, source_ae=gateway_ae, destination=name)
        if state is JobState.RETRY:
            for name in failed:
                self.metrics.retries.labels(name).inc()
        elif state is JobState.QUARANTINED:
            reason = min(failed.values())  # the spool's reason for the job, too
            self.metrics.quarantined.labels(reason).inc()
            log.error("delivery given up (dead letter)",
                      extra={"job": job.id, "destinations": sorted(failed), "reason": reason})
            audit(InstanceEvent.QUARANTINED, record, source_ae=gateway_ae,
                  destination=",".join(sorted(failed)), outcome=AuditOutcome.SERIOUS_FAILURE,
                  reason=reason)
        for name, policy in outcome.duplicates.items():
            self.metrics.duplicates.labels(policy).inc()
            log.warning("the destination held another instance with this SOP Instance UID",
                        extra={"job": job.id, "destination": name, "policy": policy})

    def _housekeeping(self) -> None:
        if self._receives and self._receiver is None and self._ports_open and not self._stopping:
            self._listen_again()
        if self._processes:
            try:
                self.spool.purge()
            except SpoolFull:
                self._space.ran_out("purge")
        self._spool_has_room()
        counts: dict[str, int] = {}
        try:
            for (state, _reason), count in self.spool.counts().items():
                counts[state] = counts.get(state, 0) + count
        except SpoolFull:  # a shared queue that does not answer: the depth is unknown for now
            return
        self.metrics.set_queue_depth(counts)

    # -- reload -----------------------------------------------------------------------------

    def _reload(self) -> None:
        """Apply a new configuration entirely, or keep the running one entirely.

        What can fail comes first, while nothing running was touched: loading the file, then
        the listeners when their sections changed (:meth:`_replace_listeners`). Only then are the
        workers replaced (the old ones finish what they have) and the configuration swapped.
        Spool settings need a restart.
        """
        try:
            config = load_config(self.config_path)
            secret = config.load_secret()
        except ConfigError as exc:
            log.error("configuration reload refused; the running configuration stays",
                      extra={"error": str(exc)})
            return
        listener_changed = config.listener != self.config.listener or config.stow != self.config.stow
        if listener_changed and self._receiver is not None:
            try:
                self._replace_listeners(config)
            except (StartupError, OSError) as exc:
                log.error("configuration reload failed: the new listener cannot start; the"
                          " running configuration stays", extra={"error": _why(exc)})
                return
        if self._processes:
            old_pool, self._pool = self._pool, WorkerPool(config, secret, partial(configure_logging, config.logging))
            if old_pool is not None:
                old_pool.shutdown(wait=False)
        if config.spool != self.config.spool:
            log.warning("spool settings change only on restart")
        self.config, self.secret = config, secret
        configure_logging(config.logging)
        log.info("configuration reloaded", extra={"listener_restarted": listener_changed})

    def _replace_listeners(self, config: GatewayConfig) -> None:
        """Put the listeners of ``config`` (DICOM, STOW-RS) in place of the running ones, all or
        nothing.

        On a new address a new listener binds before the old one stops, so a port that is taken
        (or TLS files that do not load) costs nothing. On the same address the port cannot be
        bound twice: the old listener stops (finishing its associations) and the new one binds
        the freed port. If any new listener fails, the new ones that started stop and the old
        ones listen again. SO_REUSEPORT would let both listen at once, but it lets any process
        of the same user bind the port too and take a share of the associations, and
        connections queued on the old socket are reset when it closes.

        Raises
        ------
        StartupError, OSError
            A new listener did not start: the old ones listen again (unless a port was taken
            meanwhile: then housekeeping keeps trying).
        """
        receiver, stow = self._receiver, self._stow
        swaps: list[_Swap] = []
        if config.listener != self.config.listener:
            receiver = self._new_receiver(config.listener)
            swaps.append(_Swap(self._receiver, receiver, _address(self.config.listener) == _address(config.listener)))
        if config.stow != self.config.stow:
            stow = self._new_stow(config.stow) if config.stow is not None else None
            swaps.append(_Swap(self._stow, stow, self.config.stow is not None and config.stow is not None
                               and _address(self.config.stow) == _address(config.stow)))
        try:
            _swap_all(swaps)
        except (StartupError, OSError):
            if any(swap.same_address for swap in swaps):  # an old listener was stopped: restart them all
                self._stop_receivers()
                self._listen_again()
            raise
        self._receiver, self._stow = receiver, stow
        self._listening = True
