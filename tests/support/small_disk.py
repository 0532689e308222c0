"""A small file system of its own (tmpfs) for tests that fill a disk for real, without mocks.

Mounting needs root (or CAP_SYS_ADMIN); where it is not allowed the tests are skipped.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def small_disk(folder: Path, size: int) -> Iterator[Path]:
    """A tmpfs of ``size`` bytes mounted on ``folder`` (created) for the ``with`` body."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                              str(folder)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        # Lazily: a process of the test still holding a file open must not leave it mounted.
        subprocess.run(["umount", "-l", str(folder)], check=True)


def fill(folder: Path, leave: int = 0) -> Path:
    """Take the free space of ``folder``'s file system but ``leave`` bytes; return the filler."""
    filler = folder / "filler"
    with open(filler, "ab", buffering=0) as handle:
        free = shutil.disk_usage(folder).free - leave
        if free > 0:
            os.posix_fallocate(handle.fileno(), handle.tell(), free)
        if leave == 0:
            try:  # whatever the block accounting left over
                while True:
                    handle.write(b"\0" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    return filler
