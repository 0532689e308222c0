"""Make a pseudonym key file (``dmask keygen``): random, owner-only, never overwritten.

Pseudonyms, remapped UIDs and date shifts are HMACs under this key, so a key replaced by a new
one breaks the link between instances sent before and after: the file is made once and an
existing one is refused. It holds :data:`KEY_BYTES` random bytes written as hex, which is what
``secret.file`` reads (surrounding whitespace stripped).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from gateway.errors import KeyFileError

#: Random bytes of a new key (written as twice as many hex digits).
KEY_BYTES = 32


def create_key_file(path: Path) -> None:
    """Write a new key to ``path`` (mode 0600); missing parent folders are made 0700.

    Raises
    ------
    KeyFileError
        ``path`` exists already (it is left as it is), or a folder or the file cannot be made.
    """
    try:
        _make_private_folders(path.parent)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path} exists already: not overwritten (pseudonyms stay consistent "
                           "only with the key they were made with)") from None
    except OSError as exc:
        raise KeyFileError(f"cannot create {exc.filename or path}: {exc.strerror}") from None
    try:
        with os.fdopen(descriptor, "w") as key_file:
            os.fchmod(descriptor, 0o600)  # whatever the umask left of it
            key_file.write(secrets.token_hex(KEY_BYTES))
            key_file.flush()
            os.fsync(descriptor)
    except OSError as exc:  # a disk full half-way: no partial key left to be refused next time
        path.unlink(missing_ok=True)
        raise KeyFileError(f"cannot write {path}: {exc.strerror}") from None


def _make_private_folders(folder: Path) -> None:
    """Make ``folder`` and its missing parents, each 0700; existing ones keep their mode."""
    missing = [folder, *folder.parents]
    for created in reversed([f for f in missing if not f.exists()]):
        created.mkdir(mode=0o700)
        created.chmod(0o700)
