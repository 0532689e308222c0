"""Storage Commitment Push Model SCP (PS3.4 Annex J): is what a caller sent safe with us?

A caller asks with an N-ACTION (Action Type ID 1, Request Storage Commitment) naming instances
by their SOP Class and Instance UIDs. An instance is committed when the spool durably holds it
(received, processing, waiting for a retry) or has delivered it (done, even once its original is
purged): from then on the caller may delete its copy. Every other instance fails, with the
reason PS3.4 J.3.3 gives for it (:class:`FailureReason`).

The N-ACTION is answered at once (Success: the request was understood); the result follows as
an N-EVENT-REPORT (Event Type ID 1 when every instance is committed, 2 when some failed) from a
background thread. It goes on the caller's association while that is still open, otherwise on
a new association to the caller's ``commitment_address``, on which the gateway proposes the SCP
role (PS3.4 J.3.3, role selection of PS3.7 D.3.3.4).

The spool is asked only for facts (:meth:`~gateway.store.queue.Intake.held_instances`); what
they mean for commitment is decided here, in :func:`failure_reason`.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pynetdicom import AE, build_role
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import N_ACTION
from pynetdicom.events import Event

from gateway.config import AllowedCaller, Listener
from gateway.store.queue import HeldInstance, Intake, JobState

log = logging.getLogger("dmask.commitment")

#: Storage Commitment Push Model SOP Class (PS3.4 J.3) and its well-known instance (PS3.6 A.1).
STORAGE_COMMITMENT_PUSH_MODEL = "1.2.840.10008.1.20.1"
STORAGE_COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"
#: N-ACTION Action Type ID: Request Storage Commitment.
REQUEST_STORAGE_COMMITMENT = 1
#: N-EVENT-REPORT Event Type IDs (PS3.4 J.3.3).
ALL_COMMITTED = 1
SOME_FAILED = 2

#: N-ACTION statuses (PS3.7 10.1.4.1.10, C).
SUCCESS = 0x0000
PROCESSING_FAILURE = 0x0110
NO_SUCH_SOP_INSTANCE = 0x0112
MISSING_ATTRIBUTE = 0x0120
NO_SUCH_ACTION = 0x0123

#: Seconds a report waits for the caller to release its association before it is sent on it:
#: most callers release right after the N-ACTION response, and a report sent in that moment
#: would cross their A-RELEASE-RQ. One that released gets the report on a new association.
RELEASE_GRACE_S = 0.5

#: Job states in which the spool holds the instance durably or has delivered it.
_COMMITTED_STATES = frozenset({JobState.RECEIVED, JobState.PROCESSING, JobState.RETRY, JobState.DONE})


class FailureReason(enum.IntEnum):
    """Failure Reason (0008,1197) of an instance in the Failed SOP Sequence (PS3.4 J.3.3)."""

    #: Received, but quarantined: the gateway will not deliver it as it is.
    PROCESSING_FAILURE = 0x0110
    #: Never received (or received before the spool kept original UIDs).
    NO_SUCH_OBJECT_INSTANCE = 0x0112
    #: Received, but with another SOP Class UID than the request names.
    CLASS_INSTANCE_CONFLICT = 0x0119
    #: The request names a SOP class the listener does not accept.
    REFERENCED_SOP_CLASS_NOT_SUPPORTED = 0x0122


@dataclass(frozen=True)
class CommitmentRequest:
    """An N-ACTION's Action Information: the transaction and the (class, instance) UIDs it names."""

    transaction_uid: str
    references: tuple[tuple[str, str], ...]


def parse_request(action_information: Dataset | None) -> CommitmentRequest | None:
    """The request in an N-ACTION's Action Information; None when an attribute is missing.

    Transaction UID (0008,1195) and a Referenced SOP Sequence (0008,1199) of at least one item,
    each with its Referenced SOP Class and Instance UIDs, are required (PS3.4 J.3.2.1.1).
    """
    if action_information is None:
        return None
    transaction_uid = str(action_information.get("TransactionUID", "") or "").strip()
    items = action_information.get("ReferencedSOPSequence") or []
    references = tuple((str(item.get("ReferencedSOPClassUID", "") or "").strip(),
                        str(item.get("ReferencedSOPInstanceUID", "") or "").strip())
                       for item in items)
    if not transaction_uid or not references or not all(c and i for c, i in references):
        return None
    return CommitmentRequest(transaction_uid, references)


def failure_reason(sop_class_uid: str, held: HeldInstance | None,
                   storage_classes: Collection[str]) -> FailureReason | None:
    """Why an instance is not committed, or None when it is (held durably or delivered)."""
    if sop_class_uid not in storage_classes:
        return FailureReason.REFERENCED_SOP_CLASS_NOT_SUPPORTED
    if held is None:
        return FailureReason.NO_SUCH_OBJECT_INSTANCE
    if held.sop_class_uid != sop_class_uid:
        return FailureReason.CLASS_INSTANCE_CONFLICT
    if held.state not in _COMMITTED_STATES:
        return FailureReason.PROCESSING_FAILURE
    return None


def event_report(request: CommitmentRequest, held: Mapping[str, HeldInstance],
                 storage_classes: Collection[str]) -> tuple[int, Dataset]:
    """The N-EVENT-REPORT's Event Type ID and Event Information for a request (PS3.4 J.3.3).

    The Referenced SOP Sequence lists the committed instances (absent when none is), the Failed
    SOP Sequence the others with their Failure Reason (absent when none failed).
    """
    committed, failed = [], []
    for sop_class_uid, sop_instance_uid in request.references:
        item = Dataset()
        item.ReferencedSOPClassUID = sop_class_uid
        item.ReferencedSOPInstanceUID = sop_instance_uid
        reason = failure_reason(sop_class_uid, held.get(sop_instance_uid), storage_classes)
        if reason is None:
            committed.append(item)
        else:
            item.FailureReason = int(reason)
            failed.append(item)
    information = Dataset()
    information.TransactionUID = request.transaction_uid
    if committed:
        information.ReferencedSOPSequence = committed
    if failed:
        information.FailedSOPSequence = failed
    return (SOME_FAILED if failed else ALL_COMMITTED), information


class CommitmentSCP:
    """Answers storage commitment requests from the listener's callers.

    Parameters
    ----------
    listener
        The listener section: our AE title, the callers (with their commitment addresses), the
        storage classes and timeouts.
    spool
        Where the instances were admitted.
    """

    def __init__(self, listener: Listener, spool: Intake) -> None:
        self.listener = listener
        self.spool = spool
        self._storage_classes = frozenset(listener.sop_classes)
        self._callers = {caller.ae_title: caller for caller in listener.allowed_callers}

    def handle_action(self, event: Event) -> tuple[int, Dataset | None]:
        """``EVT_N_ACTION``: check the request, answer it, and send its report in the background."""
        calling = event.assoc.requestor.ae_title.strip()
        if event.action_type != REQUEST_STORAGE_COMMITMENT:
            return NO_SUCH_ACTION, None
        action = event.request
        assert isinstance(action, N_ACTION)  # EVT_N_ACTION carries the N-ACTION primitive
        if action.RequestedSOPInstanceUID != STORAGE_COMMITMENT_INSTANCE:
            return NO_SUCH_SOP_INSTANCE, None
        try:
            information = event.action_information
        except Exception:  # undecodable bytes fail pydicom in many ways
            log.warning("storage commitment refused: the action information cannot be decoded",
                        extra={"calling_ae": calling})
            return PROCESSING_FAILURE, None
        request = parse_request(information)
        if request is None:
            log.warning("storage commitment refused: an attribute of the request is missing",
                        extra={"calling_ae": calling})
            return MISSING_ATTRIBUTE, None
        held = self.spool.held_instances(uid for _, uid in request.references)
        event_type, report = event_report(request, held, self._storage_classes)
        log.info("storage commitment requested", extra={
            "calling_ae": calling, "transaction": request.transaction_uid,
            "instances": len(request.references),
            "failed": len(report.get("FailedSOPSequence", []))})
        threading.Thread(target=self._report, args=(event.assoc, calling, event_type, report),
                         name="commitment-report", daemon=True).start()
        return SUCCESS, None

    def _report(self, assoc: Association, calling: str, event_type: int, report: Dataset) -> None:
        """Send a report on the caller's association while it is open, else on a new one."""
        assoc.join(RELEASE_GRACE_S)  # the association's thread ends with the association
        if assoc.is_established and _sent(assoc, event_type, report):
            log.info("storage commitment report sent on the requesting association",
                     extra={"calling_ae": calling, "transaction": report.TransactionUID})
            return
        caller = self._callers.get(calling)
        if caller is None or caller.commitment_address is None:
            log.error("storage commitment report not sent: the caller released its association"
                      " and has no commitment_address",
                      extra={"calling_ae": calling, "transaction": report.TransactionUID})
            return
        self._send_on_new_association(caller, event_type, report)

    def _send_on_new_association(self, caller: AllowedCaller, event_type: int,
                                 report: Dataset) -> None:
        address = caller.commitment_address
        assert address is not None
        ae = AE(ae_title=self.listener.ae_title)
        ae.acse_timeout = self.listener.acse_timeout
        ae.dimse_timeout = self.listener.dimse_timeout
        ae.network_timeout = self.listener.network_timeout
        ae.add_requested_context(STORAGE_COMMITMENT_PUSH_MODEL)
        role = build_role(STORAGE_COMMITMENT_PUSH_MODEL, scp_role=True)
        extra = {"calling_ae": caller.ae_title, "transaction": report.TransactionUID,
                 "peer": f"{address.host}:{address.port}"}
        assoc = ae.associate(address.host, address.port, ae_title=address.ae_title or caller.ae_title,
                             ext_neg=[role])
        if not assoc.is_established:
            log.error("storage commitment report not sent: the caller's commitment address"
                      " refused or did not answer the association", extra=extra)
            return
        try:
            if _sent(assoc, event_type, report):
                log.info("storage commitment report sent on a new association", extra=extra)
            else:
                log.error("storage commitment report not acknowledged by the caller", extra=extra)
        finally:
            assoc.release()


def _sent(assoc: Association, event_type: int, report: Dataset) -> bool:
    """Send the N-EVENT-REPORT on ``assoc``; whether the peer answered Success."""
    try:
        status, _ = assoc.send_n_event_report(report, event_type, STORAGE_COMMITMENT_PUSH_MODEL,
                                              STORAGE_COMMITMENT_INSTANCE)
    except (ValueError, RuntimeError) as exc:  # no context for the class, or association gone
        log.warning("storage commitment report cannot go on this association: %s", exc)
        return False
    return status.get("Status") == SUCCESS
