"""The STOW-RS response payload (PS3.18 10.5.3, Table 10.5.3-1) in the DICOM JSON model.

The origin server answers a store request with a data set listing what it stored
(ReferencedSOPSequence) and what it did not, each with a FailureReason (FailedSOPSequence).
The gateway writes one as a STOW-RS endpoint and reads one as a STOW-RS client; both ends use
the types here, so the two cannot drift apart.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

MEDIA_TYPE = "application/dicom+json"

_REFERENCED_SOP_CLASS_UID = "00081150"
_REFERENCED_SOP_INSTANCE_UID = "00081155"
_FAILURE_REASON = "00081197"
_FAILED_SOP_SEQUENCE = "00081198"
_REFERENCED_SOP_SEQUENCE = "00081199"


class FailureReason(enum.IntEnum):
    """FailureReason (0008,1197) values a STOW-RS origin server gives for one instance
    (the C-STORE status codes of PS3.4 B.2.3 and PS3.18 Table 10.5.3-2)."""

    PROCESSING_FAILURE = 0x0110
    SOP_CLASS_NOT_SUPPORTED = 0x0122
    OUT_OF_RESOURCES = 0xA700
    DATA_SET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    CANNOT_UNDERSTAND = 0xC000
    TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122


@dataclass(frozen=True)
class InstanceResult:
    """What happened to one instance of a request: stored when ``failure_reason`` is None.

    The UIDs are empty for a body part that is not a DICOM instance at all.
    """

    sop_class_uid: str
    sop_instance_uid: str
    failure_reason: int | None = None


def _uid(value: str) -> dict[str, Any]:
    return {"vr": "UI", "Value": [value]} if value else {"vr": "UI"}


def _item(result: InstanceResult) -> dict[str, Any]:
    item = {_REFERENCED_SOP_CLASS_UID: _uid(result.sop_class_uid),
            _REFERENCED_SOP_INSTANCE_UID: _uid(result.sop_instance_uid)}
    if result.failure_reason is not None:
        item[_FAILURE_REASON] = {"vr": "US", "Value": [int(result.failure_reason)]}
    return item


def response_body(results: Iterable[InstanceResult]) -> bytes:
    """The response data set as DICOM JSON; a sequence with no item is left out."""
    results = list(results)
    stored = [_item(r) for r in results if r.failure_reason is None]
    failed = [_item(r) for r in results if r.failure_reason is not None]
    body: dict[str, Any] = {}
    if failed:
        body[_FAILED_SOP_SEQUENCE] = {"vr": "SQ", "Value": failed}
    if stored:
        body[_REFERENCED_SOP_SEQUENCE] = {"vr": "SQ", "Value": stored}
    return json.dumps(body).encode()


def _first(item: Mapping[str, Any], tag: str) -> Any:
    values = item.get(tag, {}).get("Value") or [None]
    return values[0]


def parse_response(body: bytes) -> list[InstanceResult]:
    """The instances a response names, stored and failed; raise ValueError when it is not
    a STOW-RS response in DICOM JSON (a JSON array of one data set is taken too)."""
    data = json.loads(body)
    if isinstance(data, list) and len(data) == 1:
        data = data[0]
    if not isinstance(data, dict):
        raise ValueError("the response is not a DICOM JSON data set")
    results = []
    for tag, failed in ((_REFERENCED_SOP_SEQUENCE, False), (_FAILED_SOP_SEQUENCE, True)):
        for item in data.get(tag, {}).get("Value") or []:
            reason = _first(item, _FAILURE_REASON)
            results.append(InstanceResult(
                str(_first(item, _REFERENCED_SOP_CLASS_UID) or ""),
                str(_first(item, _REFERENCED_SOP_INSTANCE_UID) or ""),
                (int(reason) if reason is not None else int(FailureReason.PROCESSING_FAILURE))
                if failed else None))
    return results
