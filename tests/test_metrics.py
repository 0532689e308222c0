"""The metrics endpoint and the probes over real HTTP."""

from __future__ import annotations

from gateway.ops.metrics import GatewayMetrics, serve_metrics
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
