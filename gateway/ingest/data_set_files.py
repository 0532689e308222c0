"""The files pynetdicom writes received data sets into, tracked per association so none outlives it.

With ``_config.STORE_RECV_CHUNKED_DATASET`` pynetdicom creates a file in ``incoming/`` as soon as
a C-STORE-RQ command is decoded and deletes it only after the C-STORE handler ran. Every other
end leaves it behind with whatever patient data had arrived: an association aborted, closed or
refused a PDU mid-transfer; a request it then discards (unknown SOP class, invalid command); a
second command on the same message, which replaces the file without closing it. Rather than
chase each of those paths inside pynetdicom, :func:`track` records every file it creates under
the association whose DUL thread creates it, and :func:`discard` deletes what is left of them
when the association has ended.
"""

from __future__ import annotations

import tempfile
import threading
import weakref
from pathlib import Path
from typing import IO, Any

from pynetdicom import dimse_messages
from pynetdicom.association import Association

from gateway.store.payload_files import secure_delete

_lock = threading.Lock()
_files: weakref.WeakKeyDictionary[Association, list[Path]] = weakref.WeakKeyDictionary()


def _tracked_temporary_file(*args: Any, **kwargs: Any) -> IO[bytes]:
    """``NamedTemporaryFile`` as pynetdicom calls it, noting the file under its association.

    pynetdicom decodes P-DATA in the association's DUL thread, which knows its association.
    """
    created = tempfile.NamedTemporaryFile(*args, **kwargs)  # pynetdicom closes it
    assoc = getattr(threading.current_thread(), "assoc", None)
    if isinstance(assoc, Association):
        with _lock:
            _files.setdefault(assoc, []).append(Path(created.name))
    return created


def track() -> None:
    """Have pynetdicom create its data set files through :func:`_tracked_temporary_file`."""
    dimse_messages.NamedTemporaryFile = _tracked_temporary_file  # type: ignore[assignment]


def discard(assoc: Association) -> None:
    """Securely delete every data set file of ``assoc`` still in place (call once it has ended).

    Files the listener admitted were renamed or read into the spool, and refused ones deleted,
    so what remains was never handled.
    """
    with _lock:
        paths = _files.pop(assoc, [])
    for path in paths:
        secure_delete(path)
