"""Processed instances of several jobs gathered into one STOW-RS request per DICOMweb destination.

A worker processes one job at a time; a ``dicomweb`` destination whose
``max_instances_per_request`` is above 1 is not sent to by that worker but left to a batch: the
serve loop adds the job's result here and holds the job's outcome, unrecorded, until the batch
has been answered. A batch goes when it is full (``max_instances_per_request``) or when its
oldest instance has waited ``batch_wait`` seconds, whichever comes first, so that a lone
instance is late by at most ``batch_wait``. The answer is read per instance
(:meth:`gateway.deliver.dicomweb.StowSender.store`), and each job's outcome is then recorded on
its own: stored, or failed and retried (or dead-lettered) like any delivery.

Until its outcome is recorded a held job stays ``processing`` in the spool, so a crash of the
gateway mid-batch puts it back and it is processed and sent again (at least once; the result is
byte-identical, so the destination sees the same instance again, never a lost one).

One request never carries two results with the same SOP Instance UID (the same instance
received twice): the second waits for the next batch, since the server's answer names
instances by that UID alone.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.config import DicomDestination, DicomWebDestination, FolderDestination
from gateway.deliver.outgoing import Outgoing


def batched(destination: DicomDestination | FolderDestination | DicomWebDestination | None) -> bool:
    """Whether instances for ``destination`` are gathered into batches rather than sent alone."""
    return isinstance(destination, DicomWebDestination) and destination.max_instances_per_request > 1


@dataclass(frozen=True)
class Parcel:
    """One job's processed instance, waiting in (or sent with) a batch."""

    job_id: int
    outgoing: Outgoing


@dataclass(frozen=True)
class Batch:
    """The parcels one STOW-RS request carries to one destination."""

    destination: str
    parcels: tuple[Parcel, ...]


class Batcher:
    """Parcels waiting for their batch, per destination, oldest first."""

    def __init__(self) -> None:
        self._waiting: dict[str, list[tuple[float, Parcel]]] = {}

    def __len__(self) -> int:
        return sum(len(parcels) for parcels in self._waiting.values())

    def add(self, destination: str, parcel: Parcel, now: float | None = None) -> None:
        """Let ``parcel`` wait for the next batch to ``destination``."""
        now = time.monotonic() if now is None else now
        self._waiting.setdefault(destination, []).append((now, parcel))

    def due(self, destinations: Mapping[str, DicomDestination | FolderDestination | DicomWebDestination],
            now: float | None = None, *, everything: bool = False) -> list[Batch]:
        """Take the batches that are to go now: full ones, those whose oldest parcel has waited
        ``batch_wait``, and with ``everything`` all that wait (when the gateway stops).

        A destination no longer configured (a reload) sends at once; its delivery fails and the
        jobs are retried like any failed delivery.
        """
        now = time.monotonic() if now is None else now
        batches: list[Batch] = []
        for name in list(self._waiting):
            waiting = self._waiting[name]
            settings = destinations.get(name)
            cap, wait = ((settings.max_instances_per_request, settings.batch_wait)
                         if isinstance(settings, DicomWebDestination) else (len(waiting), 0.0))
            while waiting:
                taken, left = _distinct(waiting, cap)
                if len(taken) < cap and now - waiting[0][0] < wait and not everything:
                    break
                batches.append(Batch(name, tuple(parcel for _, parcel in taken)))
                waiting[:] = left
            if not waiting:
                del self._waiting[name]
        return batches

    def next_due(self, destinations: Mapping[str, DicomDestination | FolderDestination | DicomWebDestination],
                 now: float | None = None) -> float | None:
        """Seconds until a waiting batch is due by its wait (0 when one is already), or None
        when none waits."""
        now = time.monotonic() if now is None else now
        deadlines = []
        for name, waiting in self._waiting.items():
            settings = destinations.get(name)
            wait = settings.batch_wait if isinstance(settings, DicomWebDestination) else 0.0
            deadlines.append(waiting[0][0] + wait - now)
        return max(0.0, min(deadlines)) if deadlines else None


def _distinct(waiting: list[tuple[float, Parcel]], cap: int
              ) -> tuple[list[tuple[float, Parcel]], list[tuple[float, Parcel]]]:
    """The first ``cap`` waiting parcels with distinct SOP Instance UIDs, and the rest in order."""
    taken: list[tuple[float, Parcel]] = []
    left: list[tuple[float, Parcel]] = []
    uids: set[str] = set()
    for entry in waiting:
        uid = entry[1].outgoing.sop_instance_uid
        if len(taken) < cap and uid not in uids:
            taken.append(entry)
            uids.add(uid)
        else:
            left.append(entry)
    return taken, left
