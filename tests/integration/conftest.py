"""Fixtures that start the real peers (see ``tests.support.peers``) and stop them by process id."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.peers import ORTHANC, DmaskServer, Orthanc


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
