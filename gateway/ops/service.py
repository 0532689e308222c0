"""``dmask serve``: the listener, the spool, the worker pool and the loop that connects them.

The serve process receives (threads, I/O only) and keeps the books: it claims due jobs from the
spool, hands them to the workers and records their outcomes (processed, delivered, retried,
quarantined) in the spool, the metrics and the audit trail. It is the spool's only writer.

Signals: SIGHUP reloads the configuration, refusing a broken one and keeping the running one;
SIGTERM (and SIGINT) stop accepting associations, let the in-flight jobs finish and exit.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import FrameType

from gateway.codec.pixels import DECODABLE_TRANSFER_SYNTAXES
from gateway.config import DicomDestination, DicomWebDestination, GatewayConfig, RetryPolicy, load_config
from gateway.deliver.forward import next_attempt
from gateway.errors import ConfigError, SpoolFull, StartupError
from gateway.ingest.listener import Receiver
from gateway.ingest.stow import StowReceiver
from gateway.ops.audit_trail import InstanceEvent, InstanceRecord, audit
from gateway.ops.audit_trail import Outcome as AuditOutcome
from gateway.ops.logs import NativeOutput, configure_logging
from gateway.ops.metrics import GatewayMetrics, serve_metrics
from gateway.process.workers import Outcome, Ticket, WorkerPool
from gateway.store.backends import open_spool
from gateway.store.queue import Job, JobState, Spool

log = logging.getLogger("dmask.service")

#: A job in flight when a worker process died (or failed outside the pipeline) this many times
#: is quarantined: it is likely the one that kills workers (a codec crash on malformed data).
MAX_WORKER_CRASHES = 3
_HOUSEKEEPING_S = 5.0
_GIL_SWITCH_INTERVAL_S = 0.0005
_EXPIRED = "forward-expired"


class Gateway:
    """The running gateway.

    Parameters
    ----------
    config_path
        The YAML configuration; read again on SIGHUP.

    Raises
    ------
    ConfigError
        The configuration or its secret cannot be loaded.
    SpoolSchemaError
        The spool's state was written by a newer dmask, or is not a spool's.
    """

    def __init__(self, config_path: Path) -> None:
        self.config_path = Path(config_path)
        self.config: GatewayConfig = load_config(self.config_path)
        self.secret = self.config.load_secret()
        self.spool: Spool = open_spool(self.config.spool)
        self._native_output = NativeOutput()
        configure_logging(self.config.logging)
        self.metrics = GatewayMetrics()
        self.metrics.watch_spool(self.config.spool.path, self.config.spool.min_free_bytes)
        self._wake = threading.Event()
        self._stopping = False
        self._reload_requested = False
        self._inflight: dict[Future[Outcome], tuple[Job, Ticket]] = {}
        self._crashes: dict[int, int] = {}
        self._pool: WorkerPool | None = None
        self._receiver: Receiver | None = None
        self._stow: StowReceiver | None = None
        self._listening = False

    # -- readiness and signals --------------------------------------------------------------

    def ready(self) -> bool:
        """Listener up, workers started (models loaded) and the spool able to take an instance."""
        if not self._listening or self._pool is None or self._stopping:
            return False
        if not self._pool.started():
            return False
        try:
            self.spool.check_capacity()
        except SpoolFull:
            return False
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

    def _start_receiver(self) -> None:
        self._receiver = Receiver(self.config.listener, self.spool, DECODABLE_TRANSFER_SYNTAXES,
                                  on_admitted=self._admitted, on_refused=self._refused)
        self._receiver.start()
        if self.config.stow is not None:
            self._stow = StowReceiver(self.config.stow, self.spool, self.config.listener.sop_classes,
                                      DECODABLE_TRANSFER_SYNTAXES,
                                      self.config.stow.called_ae_title or self.config.listener.ae_title,
                                      on_admitted=self._admitted, on_refused=self._refused)
            self._stow.start()
        self._listening = True

    def _stop_receivers(self) -> None:
        self._listening = False
        if self._receiver is not None:
            self._receiver.stop()
        if self._stow is not None:
            self._stow.stop()
            self._stow = None

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> None:
        """Serve until SIGTERM/SIGINT (or :meth:`stop`); must run in the main thread.

        Raises :class:`StartupError` when a port cannot be bound; nothing is left running then.
        """
        # The association threads answer C-STOREs while this thread keeps the books; with the
        # default 5 ms GIL switch interval a response can wait that long for the interpreter.
        sys.setswitchinterval(_GIL_SWITCH_INTERVAL_S)
        recovered = self.spool.recover()
        if recovered:
            log.info("jobs left in processing were put back", extra={"jobs": recovered})
        http = self._open_ports()
        self._pool = WorkerPool(self.config, self.secret, partial(configure_logging, self.config.logging))
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_signal)
        housekeeping = 0.0
        while not self._stopping:
            if self._reload_requested:
                self._reload_requested = False
                self._reload()
            self._dispatch()
            self._wake.wait(0.5)
            self._wake.clear()
            self._collect()
            if time.monotonic() - housekeeping > _HOUSEKEEPING_S:
                housekeeping = time.monotonic()
                self._housekeeping()
        self._drain()
        if http is not None:
            http.shutdown()

    def _open_ports(self) -> ThreadingHTTPServer | None:
        """Serve the metrics (when enabled) and start the listener; return the metrics server.

        Both ports are bound before any worker process starts: a port that cannot be bound
        ends the start at once, with no output of loading models after the reason, and with
        nothing left running. Until the workers are up, ``/readyz`` answers not ready and
        received instances wait in the spool.
        """
        http = None
        try:
            if self.config.metrics.enabled:
                http = serve_metrics(self.metrics, self.config.metrics.host, self.config.metrics.port,
                                     self.ready)
            self._start_receiver()
        except StartupError as error:
            log.error("cannot start: %s", error)
            if http is not None:
                http.shutdown()
                http.server_close()
            self.spool.close()
            self._native_output.close()
            raise
        return http

    def _drain(self) -> None:
        """Stop receiving, finish the jobs the workers have, stop the workers."""
        log.info("stopping: draining in-flight work", extra={"jobs": len(self._inflight)})
        self._stop_receivers()
        while self._inflight:
            self._wake.wait(0.5)
            self._wake.clear()
            self._collect()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self._housekeeping()
        self.spool.close()
        log.info("stopped")
        self._native_output.close()

    def _dispatch(self) -> None:
        assert self._pool is not None
        capacity = 2 * self._pool.count
        while len(self._inflight) < capacity and not self._stopping:
            job = self.spool.claim()
            if job is None:
                return
            try:
                original = self.spool.original(job)
            except LookupError:
                log.exception("a claimed job has no original", extra={"job": job.id})
                self._quarantine(job, "internal-error")
                continue
            ticket = Ticket(job_id=job.id, original=original,
                            output=self.spool.output_path(job.id), calling_ae=job.calling_ae,
                            called_ae=job.called_ae, processed=job.output is not None,
                            pending=job.pending)
            try:
                future = self._pool.submit(ticket)
            except BrokenProcessPool:  # a worker died while the pool was idle
                self.spool.release(job.id)
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
            self._record(job, ticket, outcome)
        if broken and not self._stopping:
            self._replace_broken_pool()

    def _replace_broken_pool(self) -> None:
        log.error("a worker process died; starting a new pool")
        self._pool = WorkerPool(self.config, self.secret, partial(configure_logging, self.config.logging))

    def _worker_died(self, job: Job) -> None:
        self._crashes[job.id] = self._crashes.get(job.id, 0) + 1
        if self._crashes[job.id] >= MAX_WORKER_CRASHES:
            self._quarantine(job, "worker-crashed")
        else:
            self.spool.release(job.id)

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
        """When to retry the failed deliveries, or (None, expired reasons) for a dead letter."""
        now = time.time()
        first = job.first_failure_at or now
        times = [next_attempt(self._retry_policy(name), job.attempts + 1, first, now)
                 for name in failed]
        if any(at is None for at in times):
            return None, {name: _EXPIRED for name in failed}
        return min(t for t in times if t is not None), failed

    def _record(self, job: Job, ticket: Ticket, outcome: Outcome) -> None:
        self._crashes.pop(job.id, None)
        if outcome.quarantine_reason is not None:
            self._quarantine(job, outcome.quarantine_reason)
            return
        record = InstanceRecord(job.id, outcome.sop_class_uid, outcome.study_instance_uid,
                                outcome.patient_id)
        gateway_ae = self.config.listener.ae_title
        if not ticket.processed:
            self.metrics.observe_stages(outcome.stage_seconds)
            if outcome.masked:
                audit(InstanceEvent.MASKED, record, source_ae=gateway_ae, destination=gateway_ae)
        next_at: float | None = None
        failed: dict[str, str] = {}
        if outcome.failed:
            next_at, failed = self._next_round(job, outcome.failed)
        state = self.spool.record_deliveries(
            job.id, outcome.delivered, failed, next_at,
            output=None if ticket.processed else ticket.output,
            destinations=outcome.destinations)
        for name in outcome.delivered:
            self.metrics.forwarded.labels(name).inc()
            audit(InstanceEvent.FORWARDED, record, source_ae=gateway_ae, destination=name)
        if state is JobState.RETRY:
            for name in failed:
                self.metrics.retries.labels(name).inc()
        elif state is JobState.QUARANTINED:
            self.metrics.quarantined.labels(_EXPIRED).inc()
            log.error("delivery given up (dead letter)",
                      extra={"job": job.id, "destinations": sorted(failed)})
            audit(InstanceEvent.QUARANTINED, record, source_ae=gateway_ae,
                  destination=",".join(sorted(failed)), outcome=AuditOutcome.SERIOUS_FAILURE,
                  reason=_EXPIRED)

    def _housekeeping(self) -> None:
        self.spool.purge()
        counts: dict[str, int] = {}
        for (state, _reason), count in self.spool.counts().items():
            counts[state] = counts.get(state, 0) + count
        self.metrics.set_queue_depth(counts)

    # -- reload -----------------------------------------------------------------------------

    def _reload(self) -> None:
        """Apply a new configuration, or keep the running one if the new one is broken.

        Workers are replaced (the old ones finish what they have); the listener restarts only
        when its section changed. Spool settings need a restart.
        """
        try:
            config = load_config(self.config_path)
            secret = config.load_secret()
        except ConfigError as exc:
            log.error("configuration reload refused; the running configuration stays",
                      extra={"error": str(exc)})
            return
        old_pool, self._pool = self._pool, WorkerPool(config, secret, partial(configure_logging, config.logging))
        if old_pool is not None:
            old_pool.shutdown(wait=False)
        listener_changed = config.listener != self.config.listener or config.stow != self.config.stow
        if config.spool != self.config.spool:
            log.warning("spool settings change only on restart")
        self.config, self.secret = config, secret
        configure_logging(config.logging)
        if listener_changed and self._receiver is not None:
            self._stop_receivers()
            self._start_receiver()
        log.info("configuration reloaded", extra={"listener_restarted": listener_changed})
