"""Storage commitment: the failure reasons, the report, and the SCP on real associations."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, VLPhotographicImageStorage, generate_uid
from pynetdicom import AE

from gateway.codec.pixels import DECODABLE_TRANSFER_SYNTAXES
from gateway.config import Listener
from gateway.ingest.commitment import (
    ALL_COMMITTED,
    MISSING_ATTRIBUTE,
    NO_SUCH_ACTION,
    SOME_FAILED,
    CommitmentRequest,
    FailureReason,
    event_report,
    failure_reason,
    parse_request,
)
from gateway.ingest.listener import Receiver
from gateway.store.queue import HeldInstance, JobState
from gateway.store.sqlite_spool import FolderSpool
from tests.support.commitment import commitment_request, request_commitment
from tests.support.instances import photo_instance
from tests.support.loopback import free_port
from tests.support.photos import photo, resized

PHOTO = str(VLPhotographicImageStorage)
STORAGE_CLASSES = frozenset({PHOTO})


@pytest.mark.parametrize("state", [JobState.RECEIVED, JobState.PROCESSING, JobState.RETRY, JobState.DONE])
def test_held_or_delivered_is_committed(state: JobState) -> None:
    assert failure_reason(PHOTO, HeldInstance(PHOTO, state), STORAGE_CLASSES) is None


@pytest.mark.parametrize("sop_class, held, reason", [
    (PHOTO, HeldInstance(PHOTO, JobState.QUARANTINED), FailureReason.PROCESSING_FAILURE),
    (PHOTO, None, FailureReason.NO_SUCH_OBJECT_INSTANCE),
    (PHOTO, HeldInstance("1.2.840.10008.5.1.4.1.1.7", JobState.DONE), FailureReason.CLASS_INSTANCE_CONFLICT),
    ("1.2.840.10008.5.1.4.1.1.2", HeldInstance(PHOTO, JobState.DONE),
     FailureReason.REFERENCED_SOP_CLASS_NOT_SUPPORTED),
], ids=["quarantined", "never-received", "other-class", "class-not-accepted"])
def test_failure_reasons_of_ps3_4_j_3_3(sop_class: str, held: HeldInstance | None,
                                        reason: FailureReason) -> None:
    assert failure_reason(sop_class, held, STORAGE_CLASSES) is reason


def test_report_lists_committed_and_failed_instances() -> None:
    request = CommitmentRequest("1.2.3", ((PHOTO, "9.1"), (PHOTO, "9.2"), (PHOTO, "9.3")))
    held = {"9.1": HeldInstance(PHOTO, JobState.DONE), "9.3": HeldInstance(PHOTO, JobState.QUARANTINED)}
    event_type, report = event_report(request, held, STORAGE_CLASSES)
    assert event_type == SOME_FAILED and report.TransactionUID == "1.2.3"
    assert [(i.ReferencedSOPClassUID, i.ReferencedSOPInstanceUID) for i in report.ReferencedSOPSequence] \
        == [(PHOTO, "9.1")]
    assert [(i.ReferencedSOPInstanceUID, i.FailureReason) for i in report.FailedSOPSequence] \
        == [("9.2", 0x0112), ("9.3", 0x0110)]


def test_report_of_all_committed_has_no_failed_sequence() -> None:
    request = CommitmentRequest("1.2.3", ((PHOTO, "9.1"),))
    event_type, report = event_report(request, {"9.1": HeldInstance(PHOTO, JobState.RECEIVED)},
                                      STORAGE_CLASSES)
    assert event_type == ALL_COMMITTED and "FailedSOPSequence" not in report
    assert len(report.ReferencedSOPSequence) == 1


def test_a_request_needs_its_transaction_and_references() -> None:
    assert parse_request(commitment_request([(PHOTO, "9.1")], "1.2.3")) == \
        CommitmentRequest("1.2.3", ((PHOTO, "9.1"),))
    assert parse_request(commitment_request([], "1.2.3")) is None
    assert parse_request(commitment_request([(PHOTO, "")], "1.2.3")) is None
    no_transaction = commitment_request([(PHOTO, "9.1")], "1.2.3")
    del no_transaction.TransactionUID
    assert parse_request(no_transaction) is None
    assert parse_request(None) is None


# -- the SCP in the listener, on loopback associations ----------------------------------------


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[FolderSpool]:
    spool = FolderSpool(tmp_path / "spool")
    yield spool
    spool.close()


def _start(spool: FolderSpool, report_port: int | None = None) -> Receiver:
    caller: dict[str, object] = {"ae_title": "CAMERA1"}
    if report_port is not None:
        caller["commitment_address"] = {"host": "127.0.0.1", "port": report_port}
    listener = Listener.model_validate({"ae_title": "DMASK", "host": "127.0.0.1", "port": free_port(),
                                       "allowed_callers": [caller]})
    receiver = Receiver(listener, spool, DECODABLE_TRANSFER_SYNTAXES)
    receiver.start()
    return receiver


def _send(port: int) -> Dataset:
    ds = photo_instance(resized(photo("camera"), 20_000))
    ae = AE(ae_title="CAMERA1")
    ae.add_requested_context(VLPhotographicImageStorage, [ExplicitVRLittleEndian])
    assoc = ae.associate("127.0.0.1", port, ae_title="DMASK")
    assert assoc.send_c_store(ds).Status == 0x0000
    assoc.release()
    return ds


@pytest.mark.parametrize("released", [False, True], ids=["same-association", "new-association"])
def test_sent_instances_are_committed_and_unknown_ones_fail(spool: FolderSpool, released: bool) -> None:
    report_port = free_port() if released else None
    receiver = _start(spool, report_port)
    port = receiver.listener.port
    try:
        sent = _send(port)
        never_sent = generate_uid()
        outcome = request_commitment(port, [(PHOTO, sent.SOPInstanceUID), (PHOTO, never_sent)],
                                     report_port=report_port, timeout=10)
    finally:
        receiver.stop()
    assert outcome.action_status == 0x0000 and outcome.report is not None
    assert outcome.report.on_new_association is released
    assert outcome.report.event_type == SOME_FAILED
    assert outcome.report.information.TransactionUID == outcome.transaction_uid
    assert outcome.report.committed() == [sent.SOPInstanceUID]
    assert outcome.report.failed() == {never_sent: 0x0112}


def test_requests_that_are_not_understood_are_refused(spool: FolderSpool) -> None:
    receiver = _start(spool)
    try:
        port = receiver.listener.port
        unknown_action = request_commitment(port, [(PHOTO, "9.1")], action_type=2, timeout=5)
        empty = request_commitment(port, [], timeout=5)
    finally:
        receiver.stop()
    assert (unknown_action.action_status, unknown_action.report) == (NO_SUCH_ACTION, None)
    assert (empty.action_status, empty.report) == (MISSING_ATTRIBUTE, None)
