"""Originals as files on the spool's file system: made durable and, once done, erased.

Any backend that keeps payloads in a folder (the embedded spool's ``originals/``, a shared
folder next to a distributed queue) writes and deletes them the same way.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make the entries of a directory (a file just renamed into it) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def secure_delete(path: Path) -> None:
    """Overwrite a file with zeros, fsync and unlink it, so an original does not linger on disk.

    On journalling or copy-on-write file systems this is best effort; it still keeps the
    bytes out of reach of anything that reads free blocks of the spool's own files.
    """
    try:
        with open(path, "r+b", buffering=0) as handle:
            remaining = os.fstat(handle.fileno()).st_size
            block = b"\0" * min(remaining, 1 << 20)
            while remaining > 0:
                remaining -= handle.write(block[: min(remaining, len(block))])
            os.fsync(handle.fileno())
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError:  # not overwritten (a full disk, a read-only file): removed all the same
        path.unlink(missing_ok=True)
