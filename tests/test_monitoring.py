"""The monitoring kit in deploy/: alert rules and Grafana dashboard use only metrics the gateway
registers, and every metric it registers is on the dashboard.

Names are taken from a :class:`GatewayMetrics` registry as Prometheus exposes them (a counter
``x`` as ``x_total``, a histogram as ``x_bucket``, ``x_sum``, ``x_count``), and from the
PromQL expressions with a regex: a bare ``dmask_*`` name, or any name right before a ``{``
label matcher. Where the Debian package prometheus is installed, ``promtool check rules``
also parses the alert rules and the dashboard's queries.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.ops.metrics import GatewayMetrics

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
ALERTS = DEPLOY / "prometheus" / "dmask-alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "dmask-dashboard.json"
#: Series Prometheus makes itself for each scrape target.
PROMETHEUS_SERIES = {"up"}
_SUFFIXES = {"counter": ("_total", "_created"), "gauge": ("",),
             "histogram": ("_bucket", "_sum", "_count", "_created")}
_SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{")
_DMASK_NAME = re.compile(r"\bdmask_[a-z0-9_]+\b")


def exposed_names() -> dict[str, str]:
    """Every series name the gateway's registry exposes, mapped to its metric family."""
    names = {}
    for family in GatewayMetrics().registry.collect():
        for suffix in _SUFFIXES[family.type]:
            names[family.name + suffix] = family.name
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects."""
    return set(_DMASK_NAME.findall(expr)) | set(_SELECTOR.findall(expr))


def rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    """The expression of every panel target and the query of every template variable."""
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    exprs += [variable["query"]["query"] for variable in dashboard["templating"]["list"]
              if variable["type"] == "query"]
    return exprs


def test_alert_rules_use_only_registered_metrics() -> None:
    known = exposed_names().keys() | PROMETHEUS_SERIES
    for rule in rules():
        used = metric_names(rule["expr"])
        assert used, f"{rule['alert']}: no metric found in {rule['expr']!r}"
        assert used <= known, f"{rule['alert']}: not registered: {sorted(used - known)}"
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]


def test_alert_rules_cover_what_an_operator_must_hear_of() -> None:
    uses = {rule["alert"]: rule["expr"] for rule in rules()}
    assert 'reason="forward-expired"' in uses["DmaskDeadLetters"]
    assert "dmask_forward_retries_total" in uses["DmaskDestinationFailing"]
    assert "dmask_queue_depth" in uses["DmaskQueueGrowing"]
    assert "dmask_spool_free_bytes" in uses["DmaskSpoolSpaceLow"]
    assert "dmask_ready" in uses["DmaskNotReady"]
    assert "up{" in uses["DmaskDown"]


def test_dashboard_uses_only_registered_metrics_and_shows_every_one() -> None:
    exposed = exposed_names()
    used = set().union(*map(metric_names, dashboard_exprs()))
    assert used <= exposed.keys(), f"not registered: {sorted(used - exposed.keys())}"
    assert {exposed[name] for name in used} == set(exposed.values())


def test_dashboard_panels_are_distinct_and_placed() -> None:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    for panel in panels:
        assert {"x", "y", "w", "h"} <= panel["gridPos"].keys()
        assert panel["type"] == "row" or panel["targets"], panel["title"]


def promtool_check_rules(path: Path) -> None:
    result = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                                    reason="promtool (Debian package prometheus) not installed")


@needs_promtool
def test_promtool_accepts_the_alert_rules() -> None:
    promtool_check_rules(ALERTS)


@needs_promtool
def test_promtool_parses_the_dashboard_queries(tmp_path: Path) -> None:
    """Each panel query, with Grafana's variables filled in, as a recording rule promtool parses."""
    filled = [expr.replace("$__rate_interval", "5m").replace("$instance", ".*")
              for expr in dashboard_exprs() if not expr.startswith("label_values(")]
    recorded = [{"record": f"dashboard:query_{n}", "expr": expr} for n, expr in enumerate(filled)]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": recorded}]}))
    promtool_check_rules(path)
