"""The pseudonym key of the tests, and a key file written the way an admin keeps one (mode 0600)."""

from __future__ import annotations

from pathlib import Path

SECRET = b"0123456789abcdef0123456789abcdef"


def write_key(path: Path, secret: bytes = SECRET) -> Path:
    """Write `secret` to `path`, readable by its owner only."""
    path.write_bytes(secret)
    path.chmod(0o600)
    return path
