"""Which spool a configuration names: the one place that picks a backend.

``sqlite`` (the default) is the embedded folder + SQLite spool of one process; ``postgresql``
is the scale-out queue shared by many receivers and processors, with its payloads in a shared
folder or an S3 bucket. Their callers (the serve loop, the admin commands) do not change.
"""

from __future__ import annotations

import socket

from gateway.config import Spool as SpoolSettings
from gateway.errors import ConfigError
from gateway.store.queue import Spool
from gateway.store.sqlite_spool import FolderSpool


def read_dsn(settings: SpoolSettings) -> str:
    """The queue database's connection string, from its file or environment variable.

    Raises
    ------
    ConfigError
        The DSN cannot be read (named by its source, never by its value).
    """
    assert settings.dsn is not None
    try:
        return settings.dsn.read()
    except ValueError as exc:
        raise ConfigError(f"spool.dsn: {exc}") from None


def open_spool(settings: SpoolSettings, *, receiver: bool = False, node: str | None = None) -> Spool:
    """Open the spool of the configuration's ``spool`` section.

    ``receiver`` is for the one process that receives into it (``dmask serve``): what an
    earlier run left half-received is removed before anything else needs the disk. ``node``
    names this node's claims on a shared queue (default: the host name).

    Raises
    ------
    SpoolFull
        The disk is too full to open the spool's state; SpoolUnavailable (a SpoolFull): the
        shared queue or its payload store cannot be reached.
    SpoolSchemaError
        The spool's state was written by a newer dmask, or is not a spool's (or, for
        PostgreSQL, has no queue tables yet: ``dmask db upgrade``).
    ConfigError
        The queue database's DSN cannot be read.
    """
    if settings.backend == "postgresql":
        from gateway.store.payload_store import open_payloads
        from gateway.store.postgres_spool import PostgresSpool

        assert settings.payloads is not None
        return PostgresSpool(read_dsn(settings), open_payloads(settings.payloads), settings.path,
                             node=node or socket.gethostname(), lease=settings.lease,
                             min_free_bytes=settings.min_free_bytes, max_bytes=settings.max_bytes,
                             retention=settings.retention, history=settings.history)
    return FolderSpool(settings.path, min_free_bytes=settings.min_free_bytes,
                       max_bytes=settings.max_bytes, retention=settings.retention,
                       history=settings.history, receiver=receiver)
