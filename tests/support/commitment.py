"""A modality's storage commitment SCU (pynetdicom): asks the gateway, waits for the report.

The report comes on the requesting association while the requester stays associated, or on a
new association to the requester's own SCP (on a loopback port) once it released.
"""

from __future__ import annotations

import queue
from collections.abc import Iterable
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from pynetdicom.dimse_messages import N_EVENT_REPORT_RSP
from pynetdicom.events import Event

from gateway.ingest.commitment import (
    REQUEST_STORAGE_COMMITMENT,
    STORAGE_COMMITMENT_INSTANCE,
    STORAGE_COMMITMENT_PUSH_MODEL,
)


@dataclass(frozen=True)
class Report:
    """An N-EVENT-REPORT the requester took, and whether it came on a new association."""

    event_type: int
    information: Dataset
    on_new_association: bool

    def committed(self) -> list[str]:
        return [item.ReferencedSOPInstanceUID for item in self.information.get("ReferencedSOPSequence", [])]

    def failed(self) -> dict[str, int]:
        return {item.ReferencedSOPInstanceUID: int(item.FailureReason)
                for item in self.information.get("FailedSOPSequence", [])}


@dataclass(frozen=True)
class Outcome:
    """The N-ACTION's status and the report that followed (None when none came in time)."""

    action_status: int
    transaction_uid: str
    report: Report | None


def commitment_request(references: Iterable[tuple[str, str]], transaction_uid: str) -> Dataset:
    """An N-ACTION's Action Information asking for ``(class, instance)`` UIDs."""
    information = Dataset()
    information.TransactionUID = transaction_uid
    items = []
    for sop_class_uid, sop_instance_uid in references:
        item = Dataset()
        item.ReferencedSOPClassUID = sop_class_uid
        item.ReferencedSOPInstanceUID = sop_instance_uid
        items.append(item)
    information.ReferencedSOPSequence = items
    return information


def request_commitment(port: int, references: Iterable[tuple[str, str]], *,
                       calling: str = "CAMERA1", called: str = "DMASK",
                       report_port: int | None = None, timeout: float = 30,
                       information: Dataset | None = None, action_type: int = REQUEST_STORAGE_COMMITMENT,
                       ) -> Outcome:
    """Ask the gateway on ``port``; stay associated for the report unless ``report_port`` is
    given, then release at once and take the report on an SCP listening there."""
    taken: list[Report] = []
    reports: queue.Queue[Report] = queue.Queue()

    def take_report(event: Event) -> tuple[int, None]:
        taken.append(Report(int(event.event_type or 0), event.event_information,
                            event.assoc.is_acceptor))
        return 0x0000, None

    def answered(event: Event) -> None:
        """Hand the report over once its response is sent: releasing before would leave the
        response to be sent on an association in release."""
        if isinstance(event.message, N_EVENT_REPORT_RSP) and taken:
            reports.put(taken.pop())

    handlers = [(evt.EVT_N_EVENT_REPORT, take_report), (evt.EVT_DIMSE_SENT, answered)]
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.add_requested_context(STORAGE_COMMITMENT_PUSH_MODEL)
    server = None
    if report_port is not None:
        ae.add_supported_context(STORAGE_COMMITMENT_PUSH_MODEL, scu_role=False, scp_role=True)
        server = ae.start_server(("127.0.0.1", report_port), block=False, evt_handlers=handlers)
    try:
        assoc = ae.associate("127.0.0.1", port, ae_title=called, evt_handlers=handlers)
        assert assoc.is_established, "the gateway did not accept the association"
        transaction_uid = generate_uid()
        if information is None:
            information = commitment_request(references, transaction_uid)
        status, _ = assoc.send_n_action(information, action_type, STORAGE_COMMITMENT_PUSH_MODEL,
                                        STORAGE_COMMITMENT_INSTANCE)
        if report_port is not None:
            assoc.release()
        action_status = int(status.get("Status", -1))
        report: Report | None = None
        if action_status == 0x0000:  # no report follows a refused request
            try:
                report = reports.get(timeout=timeout)
            except queue.Empty:
                pass
        if assoc.is_established:
            assoc.release()
        return Outcome(action_status, transaction_uid, report)
    finally:
        if server is not None:
            server.shutdown()
        ae.shutdown()
