"""storescu -> dmask serve, then a modality's storage commitment SCU asks what is safe with us."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import VLPhotographicImageStorage, generate_uid

from tests.support.commitment import request_commitment
from tests.support.instances import photo_instance, write
from tests.support.loopback import free_port
from tests.support.peers import acknowledged, gateway_settings, storescu
from tests.support.photos import photo, resized

PHOTO = str(VLPhotographicImageStorage)
NO_SUCH_OBJECT_INSTANCE = 0x0112
SOME_FAILED = 2


@pytest.mark.parametrize("released", [False, True], ids=["same-association", "new-association"])
def test_sent_instances_are_committed_and_unknown_ones_fail(tmp_path: Path, dmask_server: Any,
                                                            released: bool) -> None:
    report_port = free_port() if released else None
    settings = gateway_settings(tmp_path, {"out": {"type": "folder", "path": str(tmp_path / "out")}})
    settings["routes"] = [{"name": "photos", "match": {"calling_ae_title": "CAMERA1"},
                           "profile": "tags-only", "destinations": ["out"]}]
    if report_port is not None:
        settings["listener"]["allowed_callers"][0]["commitment_address"] = {
            "host": "127.0.0.1", "port": report_port}
    server = dmask_server(settings)

    image = resized(photo("camera"), 20_000)
    sent_uids, files = [], []
    for number in range(20):
        ds = photo_instance(image)
        ds.InstanceNumber = number + 1
        sent_uids.append(str(ds.SOPInstanceUID))
        files.append(write(ds, tmp_path / f"in{number}.dcm"))
    result = storescu(server.port, files)
    assert len(acknowledged(result)) == 20, result.stdout + result.stderr
    never_sent = [generate_uid(), generate_uid()]

    outcome = request_commitment(server.port, [(PHOTO, uid) for uid in sent_uids + never_sent],
                                 report_port=report_port)

    assert outcome.action_status == 0x0000
    report = outcome.report
    assert report is not None, "no N-EVENT-REPORT came"
    assert report.on_new_association is released
    assert report.event_type == SOME_FAILED
    assert report.information.TransactionUID == outcome.transaction_uid
    assert sorted(report.committed()) == sorted(sent_uids)
    assert report.failed() == {uid: NO_SUCH_OBJECT_INSTANCE for uid in never_sent}
    assert all(item.ReferencedSOPClassUID == PHOTO
               for item in report.information.FailedSOPSequence)
