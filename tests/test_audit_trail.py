"""Audit lines follow PS3.15 A.5 DICOM Instances Transferred and carry pseudonymous ids only."""

from __future__ import annotations

import logging

import pytest

from gateway.ops.audit_trail import InstanceEvent, InstanceRecord, Outcome, audit


def _audited(caplog: pytest.LogCaptureFixture, *args, **kwargs) -> dict:
    with caplog.at_level(logging.INFO, logger="dmask.audit"):
        audit(*args, **kwargs)
    (record,) = caplog.records
    return record.audit


def test_received_names_only_the_job_and_sop_class(caplog: pytest.LogCaptureFixture) -> None:
    message = _audited(caplog, InstanceEvent.RECEIVED,
                       InstanceRecord(3, sop_class_uid="1.2.840.10008.5.1.4.1.1.77.1.4"),
                       source_ae="CAMERA1", destination="DMASK")
    assert message["event_id"]["code"] == "110104" and message["event_action"] == "C"
    assert message["outcome"] == 0
    assert message["participants"][0] == {"role": "source", "id": "CAMERA1", "requestor": True}
    assert [obj["type"] for obj in message["objects"]] == ["job", "sop_class"]


def test_forwarded_and_quarantined(caplog: pytest.LogCaptureFixture) -> None:
    record = InstanceRecord(4, "1.2.840.10008.5.1.4.1.1.7", "2.25.1234", "DMPSEUDO")
    forwarded = _audited(caplog, InstanceEvent.FORWARDED, record, source_ae="DMASK",
                         destination="research")
    assert forwarded["event_action"] == "R"
    assert {obj["type"]: obj["id"] for obj in forwarded["objects"]} == {
        "job": 4, "study": "2.25.1234", "patient": "DMPSEUDO"}
    caplog.clear()
    quarantined = _audited(caplog, InstanceEvent.QUARANTINED, InstanceRecord(5),
                           source_ae="CAMERA1", destination="DMASK",
                           outcome=Outcome.MINOR_FAILURE, reason="no-face")
    assert quarantined["event_action"] == "U" and quarantined["outcome"] == 4
    assert quarantined["reason"] == "no-face" and quarantined["event"] == "quarantined"
