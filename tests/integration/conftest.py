"""Fixtures that start the real peers (see ``tests.support.peers``) and stop them by process id,
and the spool backend a gateway test runs on."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.peers import ORTHANC, DmaskServer, Orthanc, on_postgresql

#: A gateway configuration -> the same on the backend under test.
OnBackend = Callable[[dict[str, Any]], dict[str, Any]]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/integration needs real peers."""
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[Orthanc]:
    """A running Orthanc, the research PACS."""
    if not Path(ORTHANC).exists():
        pytest.skip("Orthanc is not installed")
    server = Orthanc(tmp_path / "orthanc")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def dmask_server(tmp_path: Path) -> Iterator[Callable[..., DmaskServer]]:
    """Factory of ``dmask serve`` processes; every one started is stopped at teardown."""
    started: list[DmaskServer] = []

    def start(settings: dict[str, Any]) -> DmaskServer:
        server = DmaskServer(tmp_path / f"dmask{len(started)}", settings)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def spool_backend(request: pytest.FixtureRequest, tmp_path: Path) -> OnBackend:
    """Puts a gateway's spool on each backend in turn: the embedded folder + SQLite as
    configured, then a fresh database of the run's PostgreSQL server (``dmask db upgrade``
    done) with the payloads in a shared folder. The gateway is one node of role ``all``;
    restarted, it keeps its node name, so it takes its earlier claims back at once."""
    if request.param == "sqlite":
        return lambda settings: settings
    from gateway.store.postgres_spool import upgrade_schema

    dsn = request.getfixturevalue("postgres").new_database()
    upgrade_schema(dsn)
    (tmp_path / "dsn").write_text(dsn)
    return lambda settings: on_postgresql(settings, tmp_path / "dsn", tmp_path / "shared")
