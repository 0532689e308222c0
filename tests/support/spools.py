"""Admitting into a spool as receive does, for the tests of every spool backend."""

from __future__ import annotations

import time
from pathlib import Path

from gateway.store.queue import Intake


def received_file(spool: Intake, payload: bytes = b"DICM" * 100) -> Path:
    """A file as receive leaves it in the spool's ``incoming/`` before admitting it."""
    incoming = spool.incoming_dir() / f"rx-{time.monotonic_ns()}.dcm"
    incoming.write_bytes(payload)
    return incoming


def receive(spool: Intake, payload: bytes = b"DICM" * 100) -> int:
    """Admit ``payload`` from a camera's AE title; the job id."""
    return spool.admit(received_file(spool, payload), calling_ae="CAMERA1", called_ae="DMASK")
