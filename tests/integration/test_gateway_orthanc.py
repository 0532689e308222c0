"""storescu -> dmask serve -> Orthanc: what reaches the research PACS, and who may send."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import OphthalmicPhotography8BitImageStorage, SecondaryCaptureImageStorage

from tests.support.instances import PATIENT_ID, PATIENT_NAME, photo_instance, write
from tests.support.peers import (
    acknowledged,
    echoscu,
    gateway_settings,
    orthanc_destination,
    storescu,
    wait_until,
)
from tests.support.photos import photo, resized


def _jpeg_vl_photo(folder: Path, instance_number: int) -> Path:
    """A JPEG baseline VL Photographic instance made by dcmtk's img2dcm from a packaged photo."""
    import cv2

    jpeg = folder / "hopper.jpg"
    cv2.imwrite(str(jpeg), cv2.cvtColor(resized(photo("grace_hopper"), 250_000),
                                        cv2.COLOR_RGB2BGR))
    target = folder / "hopper-jpeg.dcm"
    subprocess.run(["img2dcm", "-vlp", "-k", f"PatientName={PATIENT_NAME}",
                    "-k", f"PatientID={PATIENT_ID}", "-k", "PatientBirthDate=19061209",
                    "-k", f"InstanceNumber={instance_number}", "-k", "Modality=XC",
                    str(jpeg), str(target)], check=True, capture_output=True)
    return target


def _face_changed(original: pydicom.Dataset, result: pydicom.Dataset) -> float:
    """Mean absolute difference in the central third of the image (where the face is)."""
    before = original.pixel_array.astype(np.int16)
    after = result.pixel_array.astype(np.int16)
    assert before.shape == after.shape
    rows, columns = before.shape[:2]
    centre = np.s_[rows // 3: 2 * rows // 3, columns // 3: 2 * columns // 3]
    return float(np.abs(before[centre] - after[centre]).mean())


def test_photos_reach_orthanc_masked_and_scrubbed(tmp_path: Path, orthanc, dmask_server) -> None:
    sources = {
        1: photo_instance(resized(photo("grace_hopper"), 250_000)),
        2: photo_instance(resized(photo("astronaut"), 250_000),
                          sop_class_uid=SecondaryCaptureImageStorage),
        3: photo_instance(resized(photo("grace_hopper"), 200_000),
                          sop_class_uid=OphthalmicPhotography8BitImageStorage),
    }
    files = []
    for number, ds in sources.items():
        ds.InstanceNumber = number
        files.append(write(ds, tmp_path / f"in{number}.dcm"))
    files_jpeg = [_jpeg_vl_photo(tmp_path, 4)]
    settings = gateway_settings(tmp_path, {"research": orthanc_destination(orthanc)})
    settings["routes"] = [{"name": "photos", "match": {"calling_ae_title": "CAMERA1"},
                           "profile": "face-photos", "destinations": ["research"]}]
    server = dmask_server(settings)

    sent = storescu(server.port, files)
    sent_jpeg = storescu(server.port, files_jpeg, extra=["-xy"])
    assert len(acknowledged(sent)) == 3, sent.stdout + sent.stderr
    assert len(acknowledged(sent_jpeg)) == 1, sent_jpeg.stdout + sent_jpeg.stderr
    wait_until(lambda: orthanc.instance_count() == 4, 120, "4 instances in Orthanc")

    originals = {number: pydicom.dcmread(path) for number, path in
                 zip([1, 2, 3, 4], files + files_jpeg, strict=True)}
    for instance in orthanc.instances():
        data = orthanc.file(instance["ID"])
        result = pydicom.dcmread(io.BytesIO(data))
        number = int(result.InstanceNumber)
        original = originals[number]
        assert result.SOPClassUID == original.SOPClassUID
        assert result.SOPInstanceUID != original.SOPInstanceUID
        assert str(result.PatientName) != PATIENT_NAME and result.PatientID != PATIENT_ID
        assert result.PatientIdentityRemoved == "YES"
        assert result.RecognizableVisualFeatures == "NO"
        assert _face_changed(original, result) > 20, f"face region unchanged in {number}"
        result_path = tmp_path / f"out{number}.dcm"
        result_path.write_bytes(data)
        original_path = files[number - 1] if number <= 3 else files_jpeg[0]
        server.command("audit", "phi", original_path, result_path, "--profile", "face-photos")
    assert server.metric("dmask_forwarded_instances_total") == 4
    assert server.spool_counts() == {"done": 4}


def test_association_policy_and_echo(tmp_path: Path, orthanc, dmask_server) -> None:
    server = dmask_server(gateway_settings(tmp_path, {"research": orthanc_destination(orthanc)}))
    assert echoscu(server.port, "CAMERA1").returncode == 0
    refused = echoscu(server.port, "STRANGER")
    assert refused.returncode != 0
    assert "Calling AE Title Not Recognized" in refused.stdout + refused.stderr
    sent = storescu(server.port, [write(photo_instance(resized(photo("camera"), 10_000)),
                                        tmp_path / "x.dcm")], calling="STRANGER")
    assert acknowledged(sent) == []
    log = server.log.read_text()
    assert "association rejected" in log and "STRANGER" in log
    assert PATIENT_NAME.split("^")[0] not in log and PATIENT_ID not in log
    assert orthanc.instance_count() == 0


def test_sigterm_stops_cleanly(tmp_path: Path, orthanc, dmask_server) -> None:
    server = dmask_server(gateway_settings(tmp_path, {"research": orthanc_destination(orthanc)}))
    assert server.stop() == 0
    assert '"message":"stopped"' in server.log.read_text()


SAMPLES = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "dicom-samples"


def test_compressed_instances_keep_their_transfer_syntax(tmp_path: Path, orthanc,
                                                         dmask_server) -> None:
    """Real JPEG 2000 and RLE files from other software, through a tags-only route."""
    samples = sorted(SAMPLES.glob("*.dcm"))
    if not samples:
        pytest.skip("shared DICOM samples are not available")
    server = dmask_server(gateway_settings(tmp_path, {"research": orthanc_destination(orthanc)}))
    # The files have no file meta: tell storescu which syntax to propose for each.
    for pattern, proposal in (("*J2K*", "-xv"), ("*RLE*", "-xr")):
        files = [path for path in samples if path.match(pattern)]
        sent = storescu(server.port, files, extra=[proposal])
        assert len(acknowledged(sent)) == len(files), sent.stdout + sent.stderr
    wait_until(lambda: orthanc.instance_count() == len(samples), 60, "the samples in Orthanc")
    originals = {str(pydicom.dcmread(path, force=True).PatientName): path for path in samples}
    syntaxes = set()
    for instance in orthanc.instances():
        data = orthanc.file(instance["ID"])
        result = pydicom.dcmread(io.BytesIO(data))
        syntaxes.add(result.file_meta.TransferSyntaxUID)
        assert result.PatientIdentityRemoved == "YES"
        assert str(result.PatientName) not in originals
        result_path = tmp_path / f"{instance['ID']}.dcm"
        result_path.write_bytes(data)
        for original in samples:  # the result's original is whichever one it does not leak
            server.command("audit", "phi", original, result_path, "--profile", "tags-only")
    assert syntaxes == {"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.5"}
