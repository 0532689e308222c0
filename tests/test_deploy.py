"""The deploy files that cannot run here (containers) are at least well-formed and consistent
with the configuration schema and the command line."""

from __future__ import annotations

from pathlib import Path

import yaml

from gateway.config import parse_config

CLUSTER = Path(__file__).resolve().parent.parent / "deploy" / "cluster"


def test_the_cluster_configuration_is_valid_for_every_node() -> None:
    compose = yaml.safe_load((CLUSTER / "compose.yaml").read_text())
    text = (CLUSTER / "gateway.yaml").read_text()
    gateways = {name: service for name, service in compose["services"].items()
                if service.get("image") == "dmask-gateway:cluster"}
    roles = {name: service["command"][service["command"].index("--role") + 1]
             for name, service in gateways.items() if "--role" in service["command"]}
    assert sorted(roles.values()) == ["process"] * 3 + ["receive"] * 2
    for name in roles:
        config = parse_config(text, "gateway.yaml", environ=gateways[name]["environment"],
                              check_secret=False)
        assert config.node == name and config.spool.backend == "postgresql"
    assert gateways["schema"]["command"][:2] == ["db", "upgrade"]
    haproxy = (CLUSTER / "haproxy.cfg").read_text()
    assert "mode tcp" in haproxy
    assert [name for name, role in roles.items() if role == "receive"] == \
        [line.split()[1] for line in haproxy.splitlines() if line.strip().startswith("server ")]
