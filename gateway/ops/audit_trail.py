"""One audit line per instance event, modelled on PS3.15 A.5 "DICOM Instances Transferred".

The lines go to the ``dmask.audit`` logger (JSON lines in production) and follow the structure of
the DICOM audit message (PS3.15 A.5.3.5): an event identification (EventID DCM 110104, an action
code, an outcome), the active participants (the sending and the receiving application), and the
participant objects (study, patient, SOP class). Unlike a hospital's own audit trail, this one
never names the patient: a received instance is known only by its spool job id (its attributes
are not even decoded then), a processed one by the Study Instance UID and Patient ID of the
output, the same values the research PACS holds (pseudonyms, unless a profile keeps them).
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

log = logging.getLogger("dmask.audit")

#: EventID of the DICOM Instances Transferred message (DCM, PS3.16 CID 400).
EVENT_ID = {"code": "110104", "scheme": "DCM", "meaning": "DICOM Instances Transferred"}


class InstanceEvent(enum.Enum):
    """What happened to an instance."""

    RECEIVED = "received"
    MASKED = "masked"
    FORWARDED = "forwarded"
    QUARANTINED = "quarantined"

    @property
    def action_code(self) -> str:
        """EventActionCode: C (create) on receipt, R (read) when sent on, U (update) otherwise."""
        return {"received": "C", "forwarded": "R"}.get(self.value, "U")


class Outcome(enum.IntEnum):
    """EventOutcomeIndicator (PS3.15 A.5.1): 0 success, 4 minor failure, 8 serious failure."""

    SUCCESS = 0
    MINOR_FAILURE = 4
    SERIOUS_FAILURE = 8


@dataclass(frozen=True)
class InstanceRecord:
    """The participant objects of one event: values of the output (or none yet), never the input's."""

    job_id: int
    sop_class_uid: str | None = None
    study_instance_uid: str | None = None
    patient_id: str | None = None


def audit(event: InstanceEvent, record: InstanceRecord, *, source_ae: str, destination: str,
          outcome: Outcome = Outcome.SUCCESS, reason: str | None = None) -> None:
    """Write one audit line.

    Parameters
    ----------
    event
        received, masked, forwarded or quarantined.
    record
        The instance: its job id and, once processed, its pseudonymous identifiers.
    source_ae, destination
        The sending application (calling AE title, or the gateway for a forwarded instance) and
        the receiving one (the gateway, or the destination's name).
    outcome, reason
        EventOutcomeIndicator and the quarantine/failure reason code.
    """
    objects = [{"type": "job", "id": record.job_id}]
    if record.study_instance_uid:
        objects.append({"type": "study", "role": "report", "id": record.study_instance_uid,
                        "sop_class": record.sop_class_uid, "instances": 1})
    elif record.sop_class_uid:
        objects.append({"type": "sop_class", "id": record.sop_class_uid, "instances": 1})
    if record.patient_id:
        objects.append({"type": "patient", "role": "patient", "id": record.patient_id})
    message = {
        "event": event.value,
        "event_id": EVENT_ID,
        "event_action": event.action_code,
        "outcome": int(outcome),
        "participants": [{"role": "source", "id": source_ae, "requestor": True},
                         {"role": "destination", "id": destination, "requestor": False}],
        "objects": objects,
    }
    if reason is not None:
        message["reason"] = reason
    log.info("audit %s", event.value, extra={"audit": message})
