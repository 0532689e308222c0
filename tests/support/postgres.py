"""A real PostgreSQL server for the tests of the scale-out queue, on a loopback port.

Debian's ``postgresql-15`` binaries run as the ``postgres`` user (``initdb`` refuses root) on a
temporary data folder that user owns, trusting local connections, listening on 127.0.0.1 only
and with its own Unix socket folder. Each test gets a database of its own.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

from tests.support.loopback import free_port

BINARIES = Path("/usr/lib/postgresql/15/bin")
_USER = "postgres"


def available() -> bool:
    """Whether the server's binaries and its user are installed."""
    try:
        pwd.getpwnam(_USER)
    except KeyError:
        return False
    return (BINARIES / "initdb").exists() and shutil.which("runuser") is not None


class PostgresServer:
    """One PostgreSQL cluster in a temporary folder; :meth:`stop` and :meth:`start` again keep
    its data (a restart, as an outage test needs)."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="dmask-pg-"))
        self.data = self.folder / "data"
        self.sockets = self.folder / "sockets"
        self.sockets.mkdir()
        self.port = free_port()
        user = pwd.getpwnam(_USER)
        for path in (self.folder, self.sockets):
            os.chown(path, user.pw_uid, user.pw_gid)
        os.chmod(self.folder, 0o755)
        self._as_postgres(BINARIES / "initdb", "-D", self.data, "-A", "trust", "-U", _USER,
                          "--no-sync", "-E", "UTF8")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write("shared_preload_libraries = 'pg_stat_statements'\n")
        self._names = itertools.count(1)

    def _as_postgres(self, *args: str | Path) -> None:
        subprocess.run(["runuser", "-u", _USER, "--", *map(str, args)], check=True,
                       capture_output=True, timeout=120)

    def start(self) -> None:
        self._as_postgres(
            BINARIES / "pg_ctl", "-D", self.data, "-l", self.folder / "server.log", "-w", "-t", "60",
            "-o", f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.sockets}", "start")

    def stop(self, mode: str = "fast") -> None:
        self._as_postgres(BINARIES / "pg_ctl", "-D", self.data, "-m", mode, "-w", "stop")

    def dsn(self, database: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={_USER} dbname={database}"

    def new_database(self) -> str:
        """A fresh, empty database; its DSN."""
        name = f"dmask_test_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.dsn(), autocommit=True) as db:
            db.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]  # generated name
        return self.dsn(name)

    def close(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(self.folder, ignore_errors=True)
