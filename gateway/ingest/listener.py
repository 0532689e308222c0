"""The DICOM listener: association policy, C-ECHO and C-STORE straight into the spool.

The receive path never decodes a dataset. pynetdicom writes each incoming C-STORE data set to a
file as its P-DATA fragments arrive (``_config.STORE_RECV_CHUNKED_DATASET``); the handler only
makes that file durable in the spool and answers. Decoding a large photo here would cost many
times the time of writing it and hold the GIL the other associations need; parsing belongs to
the worker processes.

Statuses (PS3.4 B.2.3): Success 0x0000 only after :meth:`Intake.admit` returned (written, fsynced,
renamed, committed); Out of Resources 0xA700 when the spool is full or below its free-disk floor;
Data Set Does Not Match SOP Class 0xA900 when the SOP Class UID in the data set is not the one of
the presentation context it came on; Cannot Understand 0xC000 when the bytes are not a data set at
all. A refused data set is deleted as an original is (:func:`~gateway.store.spool.secure_delete`),
and so is one that an association left half-received.

Storage commitment requests (N-ACTION) are answered by :mod:`gateway.ingest.commitment`.

Connections reach pynetdicom only through :mod:`gateway.ingest.server` (admission and PDU bound).
"""

from __future__ import annotations

import ipaddress
import logging
import struct
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from pydicom.uid import DeflatedExplicitVRLittleEndian
from pynetdicom import AE, _config, evt
from pynetdicom.events import Event
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]  # generated at import

from gateway.config import Listener
from gateway.dicom.part10 import HEAD_LENGTH, data_set_offset, sop_uids_of
from gateway.dicom.transport import set_tcp_nodelay, ssl_context
from gateway.errors import SpoolFull, StartupError
from gateway.ingest import data_set_files
from gateway.ingest.admission import ConnectionSlots
from gateway.ingest.commitment import STORAGE_COMMITMENT_PUSH_MODEL, CommitmentSCP
from gateway.ingest.server import GuardedAssociationServer, start_server
from gateway.store.payload_files import secure_delete
from gateway.store.queue import Intake

_config.STORE_RECV_CHUNKED_DATASET = True
data_set_files.track()

log = logging.getLogger("dmask.receive")

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
DATA_SET_MISMATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000

# A-ASSOCIATE-RJ (PS3.8 9.3.4): result rejected-permanent, source DICOM UL service-user.
_REJECTED_PERMANENT = 0x01
_SERVICE_USER = 0x01
_CALLING_AE_NOT_RECOGNIZED = 0x03


def _peer_address(event: Event) -> str:
    return str(event.assoc.requestor.address)


def _has_data_set(path: Path) -> bool:
    """Cheap structural check of a received file, without decoding its data set.

    pynetdicom wrote preamble, ``DICM``, the file meta (whose group length tells where it ends)
    and then the data set as received. An empty data set, or one whose first tag lies in the
    command or file meta groups, cannot be an instance; anything subtler is for the pipeline to
    find (and quarantine). A deflated data set starts with compressed bytes, not a tag.
    """
    with open(path, "rb") as handle:
        data_set_start = data_set_offset(handle.read(HEAD_LENGTH))
        if data_set_start is None:
            return False
        meta = handle.read(data_set_start - HEAD_LENGTH)
        first = handle.read(8)
    if len(first) < 8:
        return False
    if DeflatedExplicitVRLittleEndian.encode("ascii") in meta:
        return True
    return struct.unpack("<H", first[:2])[0] >= 0x0008


class Receiver:
    """The gateway's SCP: who may associate, what they may send, and where it goes.

    Parameters
    ----------
    listener
        The listener section of the configuration.
    spool
        Where received instances are admitted.
    transfer_syntaxes
        The transfer syntaxes to accept (those the pixel layer decodes); others are refused at
        association negotiation.
    on_admitted
        Called with the job id, calling AE title and SOP Class UID of each admitted instance
        (to wake the dispatcher, count and audit it).
    on_refused
        Called with the status of each refused C-STORE.
    """

    def __init__(self, listener: Listener, spool: Intake, transfer_syntaxes: Iterable[str],
                 on_admitted: Callable[[int, str, str], None] | None = None,
                 on_refused: Callable[[int], None] | None = None) -> None:
        self.listener = listener
        self.spool = spool
        self.on_admitted = on_admitted
        self.on_refused = on_refused
        self.ae = AE(ae_title=listener.ae_title)
        self.ae.maximum_associations = listener.max_associations
        self.ae.maximum_pdu_size = listener.max_pdu_size
        self.ae.acse_timeout = listener.acse_timeout
        self.ae.dimse_timeout = listener.dimse_timeout
        self.ae.network_timeout = listener.network_timeout
        self.ae.require_called_aet = True
        syntaxes = sorted(transfer_syntaxes)
        for sop_class in listener.sop_classes:
            self.ae.add_supported_context(sop_class, syntaxes)
        self.ae.add_supported_context(Verification)
        self.ae.add_supported_context(STORAGE_COMMITMENT_PUSH_MODEL)
        self.commitment = CommitmentSCP(listener, spool)
        self._storage_classes = frozenset(listener.sop_classes)
        self._callers = {caller.ae_title: caller.hosts for caller in listener.allowed_callers}
        self._server: GuardedAssociationServer | None = None

    # -- event handlers ---------------------------------------------------------------------

    def caller_allowed(self, ae_title: str, address: str) -> bool:
        """Whether ``ae_title`` is an allowed caller and ``address`` one of its hosts (if pinned)."""
        hosts = self._callers.get(ae_title.strip())
        if hosts is None:
            return False
        if not hosts:
            return True
        try:
            peer = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(peer in network for network in hosts)

    def handle_requested(self, event: Event) -> None:
        """``EVT_REQUESTED``: reject callers that are not allowed, before any negotiation.

        The rejection is permanent with reason "calling AE title not recognized" for an
        unknown title and for a known title from a host it is not pinned to alike: telling the
        two apart would help someone probing for valid titles.
        """
        request = event.assoc.requestor.primitive
        assert request is not None  # EVT_REQUESTED is triggered once the request is in
        calling = request.calling_ae_title
        address = _peer_address(event)
        if self.caller_allowed(calling, address):
            return
        log.warning("association rejected: calling AE title not allowed",
                    extra={"calling_ae": calling.strip(), "peer": address})
        event.assoc.acse.send_reject(_REJECTED_PERMANENT, _SERVICE_USER,
                                     _CALLING_AE_NOT_RECOGNIZED)
        # As pynetdicom's own rejections do: let the DUL send the A-ASSOCIATE-RJ before the
        # acceptor thread shuts the socket down.
        event.assoc.kill()

    def handle_accepted(self, event: Event) -> None:
        """``EVT_ACCEPTED``: log who connected (AE title and address, no patient data)."""
        log.info("association accepted", extra={
            "calling_ae": event.assoc.requestor.ae_title.strip(), "peer": _peer_address(event)})

    def handle_store(self, event: Event) -> int:
        """``EVT_C_STORE``: admit the received file into the spool, then answer.

        Whatever is not admitted is deleted here, securely (pynetdicom would only unlink it).
        """
        path = Path(event.dataset_path)
        admitted = False
        try:
            status = self._receive(event, path)
            admitted = status == SUCCESS
        finally:
            if not admitted:
                secure_delete(path)
        return status

    def _matches_context(self, event: Event, sop_class_uid: str | None) -> bool:
        """Whether request and data set carry the SOP class of the context they came on.

        The context's abstract syntax must be one of our storage classes (not Verification), the
        request's Affected SOP Class UID and the data set's SOP Class UID must both equal it.
        """
        expected = event.context.abstract_syntax
        return (expected in self._storage_classes
                and event.request.AffectedSOPClassUID == expected
                and sop_class_uid == expected)

    def _receive(self, event: Event, path: Path) -> int:
        calling = event.assoc.requestor.ae_title.strip()
        if not _has_data_set(path):
            log.warning("C-STORE refused: the data set is empty or not DICOM",
                        extra={"calling_ae": calling, "status": f"0x{CANNOT_UNDERSTAND:04X}"})
            return self._refuse(CANNOT_UNDERSTAND)
        # Only the data set's leading elements are read.
        sop_class_uid, sop_instance_uid = sop_uids_of(path, event.context.transfer_syntax)
        if not self._matches_context(event, sop_class_uid):
            log.warning("C-STORE refused: the data set does not match the SOP class of its context",
                        extra={"calling_ae": calling, "sop_class": event.context.abstract_syntax,
                               "status": f"0x{DATA_SET_MISMATCH:04X}"})
            return self._refuse(DATA_SET_MISMATCH)
        try:
            job_id = self.spool.admit(path, calling_ae=calling,
                                      called_ae=event.assoc.acceptor.ae_title.strip(),
                                      sop_class_uid=sop_class_uid, sop_instance_uid=sop_instance_uid)
        except SpoolFull as exc:
            log.error("C-STORE refused: %s", exc,
                      extra={"calling_ae": calling, "status": f"0x{OUT_OF_RESOURCES:04X}"})
            return self._refuse(OUT_OF_RESOURCES)
        log.debug("instance admitted", extra={"job": job_id, "calling_ae": calling})
        if self.on_admitted is not None:
            self.on_admitted(job_id, calling, str(event.request.AffectedSOPClassUID))
        return SUCCESS

    def _refuse(self, status: int) -> int:
        if self.on_refused is not None:
            self.on_refused(status)
        return status

    # -- server -----------------------------------------------------------------------------

    def start(self) -> tuple[str, int]:
        """Start listening in background threads; return the bound (host, port).

        pynetdicom creates the chunked data set files with :mod:`tempfile`; pointing its
        directory at the spool's ``incoming/`` keeps the admit step a rename on one file system.
        It stays there while any receiver listens (a reload starts the new one first).

        Raises
        ------
        StartupError
            The address cannot be bound; nothing was started.
        OSError
            The TLS files cannot be loaded; nothing was started.
        """
        _TempdirClaim.take(str(self.spool.incoming_dir()))
        try:
            tls = ssl_context(self.listener.tls, server_side=True) if self.listener.tls else None
            try:
                self._server = start_server(
                    self.ae, (self.listener.host, self.listener.port), ssl_context=tls,
                    evt_handlers=[(evt.EVT_CONN_OPEN, set_tcp_nodelay),
                                  (evt.EVT_REQUESTED, self.handle_requested),
                                  (evt.EVT_ACCEPTED, self.handle_accepted),
                                  (evt.EVT_C_STORE, self.handle_store),
                                  (evt.EVT_N_ACTION, self.commitment.handle_action)],
                    slots=ConnectionSlots(self.listener.max_negotiating, self.listener.max_connections_per_host),
                    negotiation_timeout=self.listener.negotiation_timeout,
                    max_pdu_size=self.listener.max_pdu_size, on_closed=data_set_files.discard)
            except OSError as error:
                raise StartupError.cannot_bind(self.listener.host, self.listener.port, error) from error
        except BaseException:
            _TempdirClaim.give_back()
            raise
        assert self._server is not None
        host, port = self._server.server_address[:2]
        log.info("listening", extra={"ae_title": self.listener.ae_title, "port": port,
                                     "tls": tls is not None})
        return str(host), int(port)

    def stop(self) -> None:
        """Stop accepting associations and wait for the open ones to end."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None
            _TempdirClaim.give_back()
        self.ae.shutdown()


class _TempdirClaim:
    """:data:`tempfile.tempdir` for the receivers listening now; restored when the last stops."""

    holders = 0
    before: str | None = None

    @classmethod
    def take(cls, folder: str) -> None:
        if cls.holders == 0:
            cls.before = tempfile.tempdir
        cls.holders += 1
        tempfile.tempdir = folder

    @classmethod
    def give_back(cls) -> None:
        cls.holders -= 1
        if cls.holders == 0:
            tempfile.tempdir = cls.before
