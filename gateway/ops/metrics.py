"""Prometheus metrics and the /healthz and /readyz probes, served over HTTP.

All metrics live in the serve process: workers report how long their stages took in their
outcome and the serve loop observes them here, so there is no multi-process collector to set up.
``/healthz`` says the process answers; ``/readyz`` says it should get traffic (listener up, spool
writable, workers running), and ``dmask_ready`` says the same to Prometheus. Readiness and the
spool's free space are read when Prometheus scrapes, not when the serve loop last looked. The
alert rules and the Grafana dashboard in ``deploy/`` use these names (``tests/test_monitoring.py``
holds them to it).
"""

from __future__ import annotations

import math
import shutil
import threading
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric

from gateway.errors import StartupError
from gateway.store.queue import JobState

_STAGE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000)
#: Quarantine reason of a dead letter: a destination did not take the instance until its max age.
DEAD_LETTER_REASON = "forward-expired"


class _NodeLabelled:
    """A registry's metrics with a ``node`` label on every sample, so that the nodes of a
    cluster can be told apart (and summed) whatever the scraper adds."""

    def __init__(self, registry: CollectorRegistry, node: str) -> None:
        self.registry = registry
        self.node = node

    def collect(self) -> Iterator[Metric]:
        for family in self.registry.collect():
            family.samples = [sample._replace(labels={**sample.labels, "node": self.node})
                              for sample in family.samples]
            yield family


class GatewayMetrics:
    """The gateway's metrics, in their own registry (so tests can create several).

    ``node`` (the configuration's node name) labels every sample that is served.
    """

    def __init__(self, node: str | None = None) -> None:
        self.registry = CollectorRegistry()
        self.exposed: CollectorRegistry | _NodeLabelled = (
            self.registry if node is None else _NodeLabelled(self.registry, node))
        self.received = Counter("dmask_received_instances", "Instances admitted into the spool",
                                registry=self.registry)
        self.refused = Counter("dmask_refused_instances",
                               "C-STORE requests answered with a failure status", ["status"],
                               registry=self.registry)
        self.forwarded = Counter("dmask_forwarded_instances",
                                 "Instances delivered to a destination", ["destination"],
                                 registry=self.registry)
        self.quarantined = Counter("dmask_quarantined_instances",
                                   "Instances quarantined (never forwarded)", ["reason"],
                                   registry=self.registry)
        self.retries = Counter("dmask_forward_retries",
                               "Deliveries that failed and were scheduled again", ["destination"],
                               registry=self.registry)
        self.queue_depth = Gauge("dmask_queue_depth", "Jobs in the spool by state", ["state"],
                                 registry=self.registry)
        self.spool_full = Gauge("dmask_spool_full",
                                "1 while the spool refuses new instances (0xA700): its disk ran"
                                " out, is below its free-space floor or it holds its size cap",
                                registry=self.registry)
        self.spool_full_writes = Counter("dmask_spool_full_writes",
                                         "Spool writes that failed for lack of space",
                                         ["operation"], registry=self.registry)
        self.duplicates = Counter("dmask_duplicate_instances",
                                  "Instances whose SOP Instance UID a destination already had"
                                  " with other content, by the policy applied", ["policy"],
                                  registry=self.registry)
        self.stage_seconds = Histogram("dmask_stage_duration_seconds",
                                       "Time spent per pipeline stage", ["stage"],
                                       buckets=_STAGE_BUCKETS, registry=self.registry)
        self.stow_request_instances = Histogram(
            "dmask_stow_request_instances",
            "Instances per STOW-RS request of a batching DICOMweb destination: near 1 under its"
            " max_instances_per_request means batch_wait expires before batches fill",
            ["destination"], buckets=_BATCH_BUCKETS, registry=self.registry)
        self.ready = Gauge("dmask_ready", "1 when the gateway should get traffic (as /readyz), else 0",
                           registry=self.registry)
        self.spool_free_bytes = Gauge("dmask_spool_free_bytes", "Free disk space where the spool is",
                                      registry=self.registry)
        self.spool_min_free_bytes = Gauge("dmask_spool_min_free_bytes",
                                          "spool.min_free_bytes: below this free space instances are refused",
                                          registry=self.registry)
        # A series that first appears at 1 has no increase() to alert on: start dead letters at 0.
        self.quarantined.labels(DEAD_LETTER_REASON)

    def watch_spool(self, path: Path, min_free_bytes: int) -> None:
        """Report the free space of the spool's file system at each scrape, and its floor."""
        self.spool_free_bytes.set_function(lambda: _free_bytes(path))
        self.spool_min_free_bytes.set(min_free_bytes)

    def observe_stages(self, stage_seconds: Mapping[str, float]) -> None:
        """Record the durations a worker measured for one instance."""
        for stage, seconds in stage_seconds.items():
            self.stage_seconds.labels(stage).observe(seconds)

    def set_queue_depth(self, counts: Mapping[str, int]) -> None:
        """Set the queue depth gauge from jobs per state (states absent from ``counts`` are 0)."""
        for state in JobState:
            self.queue_depth.labels(state.value).set(counts.get(state.value, 0))


def _free_bytes(path: Path) -> float:
    """Free bytes of the file system holding ``path``; NaN when it cannot be read."""
    try:
        return float(shutil.disk_usage(path).free)
    except OSError:
        return math.nan


def serve_metrics(metrics: GatewayMetrics, host: str, port: int,
                  ready: Callable[[], bool]) -> ThreadingHTTPServer:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` in a daemon thread; return the server.
    ``dmask_ready`` asks ``ready`` at each scrape, as ``/readyz`` does.
    Raises :class:`StartupError` when the port cannot be bound."""
    metrics.ready.set_function(lambda: float(ready()))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            if self.path == "/metrics":
                self._reply(200, generate_latest(metrics.exposed), CONTENT_TYPE_LATEST)
            elif self.path == "/healthz":
                self._reply(200, b"ok\n")
            elif self.path == "/readyz":
                is_ready = ready()
                self._reply(200 if is_ready else 503, b"ready\n" if is_ready else b"not ready\n")
            else:
                self._reply(404, b"not found\n")

        def _reply(self, code: int, body: bytes, content_type: str = "text/plain") -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            """Probes every few seconds would drown the gateway's own log."""

    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as error:
        raise StartupError.cannot_bind(host, port, error) from error
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
