"""What every kind of destination is handed: a processed instance on disk and its identity."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Outgoing:
    """A processed instance on disk and what a destination needs to know to take it."""

    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
