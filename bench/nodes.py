"""Gateway nodes for the scale-out benchmarks: a queue database, nodes on it, and what they cost.

``bench.cluster`` and ``bench.scale`` both start ``dmask serve`` nodes (receivers, processors, or
the embedded single node) forwarding to a folder, and read what a node's process tree spent in
CPU time and what PostgreSQL ran and wrote; the set-up lives here once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

from gateway.store.postgres_spool import upgrade_schema
from tests.support.peers import DmaskServer, gateway_settings, wait_until
from tests.support.postgres import PostgresServer


def _ticks(pid: int) -> int:
    """User and system clock ticks of one process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and its live descendants (the worker pool), from /proc."""
    ticks = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            ticks += _ticks(current)
            for task in Path(f"/proc/{current}/task").iterdir():
                pending.extend(int(c) for c in (task / "children").read_text().split())
        except (OSError, ValueError):
            continue
    return ticks / 100  # USER_HZ


def serve_cpu_seconds(node: DmaskServer) -> float:
    """CPU time of a node's serve process alone (its loop and threads: the spool's work), not
    of its workers."""
    assert node.process is not None
    return _ticks(node.process.pid) / 100


def postmaster_pid(server: PostgresServer) -> int:
    """The process id of a running PostgreSQL server (its backends are its children)."""
    return int((server.data / "postmaster.pid").read_text().split()[0])


def node_cpu_seconds(node: DmaskServer) -> float:
    """CPU time a running node's process tree has used so far."""
    assert node.process is not None
    return cpu_seconds(node.process.pid)


def new_queue(server: PostgresServer, folder: Path) -> Path:
    """A fresh queue database with its tables and pg_stat_statements; the file holding its DSN."""
    dsn = server.new_database()
    upgrade_schema(dsn)
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    folder.mkdir(parents=True, exist_ok=True)
    dsn_file = folder / "dsn"
    dsn_file.write_text(dsn)
    return dsn_file


def statistics(dsn: str) -> tuple[int, int]:
    """Statements run (pg_stat_statements) and WAL bytes written, cluster-wide, so far."""
    with psycopg.connect(dsn, autocommit=True) as db:
        calls = db.execute("SELECT COALESCE(SUM(calls), 0) FROM pg_stat_statements").fetchone()
        wal = db.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()
    assert calls is not None and wal is not None
    return int(calls[0]), int(wal[0])


def reset_statistics(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute("SELECT pg_stat_statements_reset()")


def node_settings(folder: Path, output: Path, *, workers: int = 1,
                  dsn_file: Path | None = None, shared: Path | None = None,
                  node: str | None = None) -> dict[str, Any]:
    """A node's configuration, forwarding to the folder ``output``: on the embedded spool, or
    with ``dsn_file`` on the PostgreSQL queue with payloads in the shared folder ``shared``."""
    settings = gateway_settings(folder, {"out": {"type": "folder", "path": str(output)}},
                                workers=workers)
    settings["logging"]["level"] = "WARNING"
    if node is not None:
        settings["node"] = node
    if dsn_file is not None:
        assert shared is not None
        settings["spool"].update({"backend": "postgresql", "dsn": {"file": str(dsn_file)},
                                  "payloads": {"type": "folder", "path": str(shared)}})
    return settings


def start_nodes(nodes: list[DmaskServer]) -> None:
    """Start nodes together (their models load at the same time), then wait for all to be ready."""
    for node in nodes:
        node.start(wait_ready=False)
    for node in nodes:
        wait_until(node.ready, 180, f"{node.folder.name} to be ready")
