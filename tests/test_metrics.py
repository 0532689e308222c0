"""The metrics endpoint and the probes over real HTTP."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from prometheus_client.exposition import generate_latest

from gateway.ops.metrics import DEAD_LETTER_REASON, GatewayMetrics, serve_metrics
from tests.support.loopback import free_port, http_get


def test_metrics_and_probes() -> None:
    metrics = GatewayMetrics()
    ready = {"value": False}
    port = free_port()
    server = serve_metrics(metrics, "127.0.0.1", port, lambda: ready["value"])
    try:
        metrics.received.inc()
        metrics.quarantined.labels("no-face").inc(2)
        metrics.observe_stages({"mask": 0.2, "scrub": 0.004})
        metrics.set_queue_depth({"retry": 3})
        status, text = http_get(port, "/metrics")
        assert status == 200
        assert "dmask_received_instances_total 1.0" in text
        assert 'dmask_quarantined_instances_total{reason="no-face"} 2.0' in text
        assert 'dmask_stage_duration_seconds_count{stage="mask"} 1.0' in text
        assert 'dmask_queue_depth{state="retry"} 3.0' in text
        assert 'dmask_queue_depth{state="received"} 0.0' in text
        assert http_get(port, "/healthz") == (200, "ok\n")
        assert http_get(port, "/readyz") == (503, "not ready\n")
        ready["value"] = True
        assert http_get(port, "/readyz") == (200, "ready\n")
        assert http_get(port, "/nothing")[0] == 404
    finally:
        server.shutdown()


def sample(text: str, name: str) -> float:
    """The value of the unlabelled sample ``name`` in an exposition."""
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert found, f"{name} not exposed"
    return float(found.group(1))


def test_readiness_and_spool_space_are_read_at_each_scrape(tmp_path: Path) -> None:
    metrics = GatewayMetrics()
    metrics.watch_spool(tmp_path, 1 << 30)
    ready = {"value": False}
    port = free_port()
    server = serve_metrics(metrics, "127.0.0.1", port, lambda: ready["value"])
    try:
        text = http_get(port, "/metrics")[1]
        assert sample(text, "dmask_ready") == 0
        assert sample(text, "dmask_spool_min_free_bytes") == 1 << 30
        free = shutil.disk_usage(tmp_path).free
        assert abs(sample(text, "dmask_spool_free_bytes") - free) < 64 << 20  # others write meanwhile
        ready["value"] = True
        assert sample(http_get(port, "/metrics")[1], "dmask_ready") == 1
    finally:
        server.shutdown()


def test_dead_letters_start_at_zero_so_the_first_one_is_an_increase() -> None:
    text = generate_latest(GatewayMetrics().registry).decode()
    assert f'dmask_quarantined_instances_total{{reason="{DEAD_LETTER_REASON}"}} 0.0' in text
