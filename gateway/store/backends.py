"""Which spool a configuration names: the one place that picks a backend.

Today every configuration gets the embedded folder + SQLite spool; a distributed backend is one
more branch here, and its callers (the serve loop, the admin commands) do not change.
"""

from __future__ import annotations

from gateway.config import Spool as SpoolSettings
from gateway.store.queue import Spool
from gateway.store.sqlite_spool import FolderSpool


def open_spool(settings: SpoolSettings, *, receiver: bool = False) -> Spool:
    """Open the spool of the configuration's ``spool`` section.

    ``receiver`` is for the one process that receives into it (``dmask serve``): what an
    earlier run left half-received is removed before anything else needs the disk.

    Raises
    ------
    SpoolFull
        The disk is too full to open the spool's state.
    SpoolSchemaError
        The spool's state was written by a newer dmask, or is not a spool's.
    """
    return FolderSpool(settings.path, min_free_bytes=settings.min_free_bytes,
                       max_bytes=settings.max_bytes, retention=settings.retention,
                       receiver=receiver)
