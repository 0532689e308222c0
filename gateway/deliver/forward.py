"""Deliver processed instances to destinations: C-STORE to a PACS, STOW-RS to a DICOMweb
server (:mod:`gateway.deliver.dicomweb`), or files in a folder.

Each worker process owns one :class:`Forwarder`; it keeps one association per DICOM destination
open between instances (opening an association costs more than sending a small object) and
re-associates only when an instance needs a presentation context the open one lacks, or when the
peer went away. Associations are :class:`~gateway.deliver.store_scu.StoreAssociation`, which send in the
worker's own thread. Failures raise :class:`~gateway.errors.ForwardError`; when to try again is
:func:`next_attempt`'s decision (exponential backoff, then dead letter after ``max_age``).
"""

from __future__ import annotations

import filecmp
import os
import time
from collections.abc import Mapping, Sequence
from io import BytesIO
from pathlib import Path
from typing import BinaryIO

from pydicom import dcmread
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from gateway.config import DicomDestination, DicomWebDestination, DuplicatePolicy, FolderDestination, RetryPolicy
from gateway.deliver.dicomweb import StowSender
from gateway.deliver.outgoing import Outgoing
from gateway.deliver.store_scu import ProposedContext, StoreAssociation
from gateway.dicom.part10 import HEAD_LENGTH, data_set_offset
from gateway.dicom.transport import ssl_context
from gateway.errors import DuplicateInstance, ForwardError

_UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
_MAX_CONTEXTS = 128
#: Statuses a C-STORE SCP may answer that still mean "stored" (PS3.4 B.2.3).
_STORED = {0x0000, 0xB000, 0xB006, 0xB007}
#: Reuse an idle association only this long; PACS (Orthanc: 30 s) drop silent ones.
_IDLE_REUSE_S = 20.0


def next_attempt(policy: RetryPolicy, attempts: int, first_failure_at: float,
                 now: float | None = None) -> float | None:
    """When to try a failed delivery again, or None when it is past ``max_age`` (dead letter).

    ``attempts`` counts the failed rounds so far (1 after the first failure).
    """
    now = time.time() if now is None else now
    if now - first_failure_at >= policy.max_age:
        return None
    delay = min(policy.max_delay, policy.initial_delay * policy.multiplier ** max(0, attempts - 1))
    return min(now + delay, first_failure_at + policy.max_age)


def _copies(folder: Path, sop_instance_uid: str) -> list[Path]:
    """The files of a SOP Instance UID in a folder destination: ``<UID>.dcm``, ``<UID>-2.dcm``..."""
    first = folder / f"{sop_instance_uid}.dcm"
    numbered = sorted(folder.glob(f"{sop_instance_uid}-*.dcm"), key=_copy_number)
    return ([first] if first.exists() else []) + numbered


def _copy_number(path: Path) -> int:
    suffix = path.stem.rpartition("-")[2]
    return int(suffix) if suffix.isdigit() else 0


def place(written: Path, folder: Path, sop_instance_uid: str,
          policy: DuplicatePolicy) -> DuplicatePolicy | None:
    """Give a written instance its name in a folder destination, under its duplicate policy.

    The pipeline is deterministic, so an instance sent again with the same content has the
    same bytes: when a copy with those bytes is there, nothing changes (idempotent). When the
    UID's file holds other content, ``policy`` decides: keep-first leaves the folder as it is,
    replace overwrites ``<UID>.dcm``, keep-both adds the next ``<UID>-N.dcm``, quarantine raises.
    A new name is taken with a hard link, which fails rather than overwrite, so two workers
    placing one UID at the same time cannot lose either instance. ``written`` stays (the caller
    removes it).

    Returns
    -------
    DuplicatePolicy or None
        The policy applied when the folder held other content under the UID, else None.

    Raises
    ------
    DuplicateInstance
        Under the quarantine policy, when the folder held other content under the UID.
    """
    while True:
        existing = _copies(folder, sop_instance_uid)
        if any(filecmp.cmp(copy, written, shallow=False) for copy in existing):
            return None
        if not existing:
            target = folder / f"{sop_instance_uid}.dcm"
        elif policy is DuplicatePolicy.KEEP_FIRST:
            return policy
        elif policy is DuplicatePolicy.REPLACE:
            os.replace(written, folder / f"{sop_instance_uid}.dcm")
            return policy
        elif policy is DuplicatePolicy.QUARANTINE:
            raise DuplicateInstance("the folder destination holds another instance with this"
                                    " SOP Instance UID")
        else:
            number = max(2, _copy_number(existing[-1]) + 1)
            target = folder / f"{sop_instance_uid}-{number}.dcm"
        try:
            os.link(written, target)
        except FileExistsError:
            continue  # another worker placed a copy meanwhile: look again
        return policy if existing else None


class FolderSender:
    """Writes each instance as ``<SOPInstanceUID>.dcm`` atomically (temp file, fsync, link).

    The result's SOP Instance UID is already pseudonymous and deterministic, so a re-sent
    instance finds its identical copy and adds nothing; another instance under the same UID is
    handled by the destination's duplicate policy (:func:`place`).
    """

    def __init__(self, destination: FolderDestination) -> None:
        self.folder = Path(destination.path)
        self.duplicates = destination.duplicates
        self._remove_stale_temporaries()

    def _remove_stale_temporaries(self) -> None:
        """Remove the temporary files of writers that died mid-copy (a killed worker).

        Their instances were not recorded as delivered, so the job's next round sends them
        again; the half-written copy would otherwise stay in the destination for good. A
        temporary file names its writer's process id; those of live processes are left alone.
        """
        for path in self.folder.glob(".*.tmp"):
            try:
                os.kill(int(path.name.rsplit(".", 2)[1]), 0)
            except ProcessLookupError:
                path.unlink(missing_ok=True)
            except (ValueError, PermissionError):
                pass  # not one of ours, or a live process of another user

    def send(self, outgoing: Outgoing) -> DuplicatePolicy | None:
        """Copy the instance into the folder; return the duplicate policy applied, if any.

        Raises
        ------
        ForwardError
            A file system error (retried).
        DuplicateInstance
            The quarantine policy met another instance with the same UID.
        """
        temporary = self.folder / f".{outgoing.sop_instance_uid}.{os.getpid()}.tmp"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(outgoing.path, "rb") as source, open(temporary, "wb") as handle:
                while chunk := source.read(1 << 20):
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temporary, 0o600)
            try:
                return place(temporary, self.folder, outgoing.sop_instance_uid, self.duplicates)
            finally:
                temporary.unlink(missing_ok=True)
        except OSError as exc:
            raise ForwardError(f"folder destination not writable: {exc.strerror}") from None

    def close(self) -> None:
        """Nothing to release."""


class DicomSender:
    """C-STORE SCU towards one PACS, reusing its association across instances."""

    def __init__(self, destination: DicomDestination, calling_ae_title: str) -> None:
        self.destination = destination
        self.calling_ae_title = destination.calling_ae_title or calling_ae_title
        self._tls = ssl_context(destination.tls, server_side=False) if destination.tls else None
        self._wanted: set[tuple[str, str]] = set()
        self._assoc: StoreAssociation | None = None
        self._last_used = 0.0

    def _contexts(self) -> list[ProposedContext]:
        """One context per (SOP class, syntax) we send, plus an uncompressed fallback per class."""
        contexts = [ProposedContext(sop, [ts]) for sop, ts in sorted(self._wanted)]
        for sop in sorted({sop for sop, _ in self._wanted}):
            contexts.append(ProposedContext(sop, _UNCOMPRESSED))
        return contexts[:_MAX_CONTEXTS]

    def _associate(self) -> StoreAssociation:
        self.close()
        destination = self.destination
        self._assoc = StoreAssociation.open(
            destination.host, destination.port, calling_ae=self.calling_ae_title,
            called_ae=destination.ae_title, contexts=self._contexts(),
            connect_timeout=destination.connect_timeout,
            dimse_timeout=destination.dimse_timeout, tls=self._tls)
        return self._assoc

    def _association_for(self, key: tuple[str, str]) -> StoreAssociation:
        assoc = self._assoc
        fresh = assoc is not None and not assoc.peer_closed() and \
            time.monotonic() - self._last_used < _IDLE_REUSE_S
        if key in self._wanted and fresh:
            assert assoc is not None
            return assoc
        self._wanted.add(key)
        return self._associate()

    def send(self, outgoing: Outgoing) -> None:
        """C-STORE the instance; fall back to uncompressed when the PACS refuses its syntax.

        What the PACS does with a SOP Instance UID it already has is its own policy (Orthanc:
        ``OverwriteInstances``).

        A reused association that turns out dead is replaced once before giving up.

        Raises
        ------
        ForwardError
            The destination is unreachable, refused every usable context or answered a
            failure status.
        """
        key = (outgoing.sop_class_uid, outgoing.transfer_syntax_uid)
        for attempt in (1, 2):
            assoc = self._association_for(key)
            try:
                status = self._store(assoc, outgoing)
            except OSError as exc:
                self.close()
                if attempt == 2:
                    raise ForwardError(f"C-STORE failed: {type(exc).__name__}") from None
                continue
            self._last_used = time.monotonic()
            if status not in _STORED:
                raise ForwardError(f"the destination answered C-STORE status 0x{status:04X}")
            return

    def _store(self, assoc: StoreAssociation, outgoing: Outgoing) -> int:
        context = assoc.context_for(outgoing.sop_class_uid, outgoing.transfer_syntax_uid)
        if context is not None:
            with open(outgoing.path, "rb") as handle:
                return assoc.store(context, outgoing.sop_class_uid, outgoing.sop_instance_uid,
                                   handle, _seek_data_set(handle))
        for syntax in _UNCOMPRESSED:
            context = assoc.context_for(outgoing.sop_class_uid, syntax)
            if context is not None:
                encoded = BytesIO(_uncompressed(outgoing.path, syntax))
                return assoc.store(context, outgoing.sop_class_uid, outgoing.sop_instance_uid,
                                   encoded, _seek_data_set(encoded))
        raise ForwardError("the destination accepts no presentation context for the instance")

    def close(self) -> None:
        """Release the association, if one is open."""
        if self._assoc is not None:
            self._assoc.release()
        self._assoc = None


def _seek_data_set(handle: BinaryIO) -> int:
    """Move ``handle`` (a DICOM file we wrote) past its file meta; return the data set's size."""
    meta_end = data_set_offset(handle.read(HEAD_LENGTH))
    if meta_end is None:
        raise ForwardError("the processed instance has no file meta group length")
    size = handle.seek(0, os.SEEK_END) - meta_end
    handle.seek(meta_end)
    return size


def _uncompressed(path: Path, syntax: str) -> bytes:
    """The instance with its pixel data decompressed, in ``syntax``, for a PACS that refuses
    the compressed form."""
    ds = dcmread(path)
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        ds.decompress()  # Lossy Image Compression keeps its history: decoding adds no loss
    ds.file_meta.TransferSyntaxUID = UID(syntax)
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


class Forwarder:
    """Sends to destinations by name; owns one sender (and association) per destination."""

    def __init__(self, destinations: Mapping[str, DicomDestination | FolderDestination | DicomWebDestination],
                 calling_ae_title: str) -> None:
        self.destinations = dict(destinations)
        self.calling_ae_title = calling_ae_title
        self._senders: dict[str, FolderSender | DicomSender | StowSender] = {}

    def send(self, name: str, outgoing: Outgoing) -> DuplicatePolicy | None:
        """Deliver ``outgoing`` to the destination called ``name`` (raises ForwardError).

        Returns the duplicate policy a folder destination applied, if it met one.
        """
        return self._sender_for(name).send(outgoing)

    def store(self, name: str, outgoings: Sequence[Outgoing]) -> dict[str, ForwardError]:
        """Deliver several instances to the DICOMweb destination called ``name`` in as few
        STOW-RS requests as its cap allows; return the failures by SOP Instance UID.

        Raises
        ------
        ForwardError
            The destination is no longer configured, or no longer a DICOMweb one.
        """
        sender = self._sender_for(name)
        if not isinstance(sender, StowSender):
            raise ForwardError("the destination is no longer a DICOMweb destination")
        return sender.store(outgoings)

    def _sender_for(self, name: str) -> FolderSender | DicomSender | StowSender:
        sender = self._senders.get(name)
        if sender is None:
            destination = self.destinations.get(name)
            if destination is None:  # removed from the configuration since the job was routed
                raise ForwardError("the destination is no longer configured")
            self._senders[name] = sender = self._sender(destination)
        return sender

    def _sender(self, destination: DicomDestination | FolderDestination | DicomWebDestination
                ) -> FolderSender | DicomSender | StowSender:
        if isinstance(destination, FolderDestination):
            return FolderSender(destination)
        if isinstance(destination, DicomWebDestination):
            return StowSender(destination)
        return DicomSender(destination, self.calling_ae_title)

    def close(self) -> None:
        """Release every open association and connection."""
        for sender in self._senders.values():
            sender.close()
        self._senders.clear()

