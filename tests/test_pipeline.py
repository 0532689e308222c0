"""The pipeline as a pure function: route, check/mask, scrub, encode; errors become reasons."""

from __future__ import annotations

from io import BytesIO

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataelem import DataElement
from pydicom.uid import MultiFrameTrueColorSecondaryCaptureImageStorage, SecondaryCaptureImageStorage

from gateway.config import GatewayConfig
from gateway.errors import DmaskError, InvalidDataset, PixelDataError, RouteRejected
from gateway.process.pipeline import apply_profile, parse, process_instance, quarantine_reason
from tests.support.instances import PATIENT_ID, part10_bytes, photo_instance
from tests.support.photos import photo, resized

SECRET = b"pipeline-test-key-0123456789abcdef"


def _config() -> GatewayConfig:
    return GatewayConfig.model_validate({
        "listener": {"allowed_callers": [{"ae_title": "CAMERA1"}]},
        "destinations": {"out": {"type": "folder", "path": "out"},
                         "copy": {"type": "folder", "path": "copy"}},
        "profiles": {"tags-only": {"mask": None}},
        "routes": [{"name": "refuse-ct", "match": {"modality": "CT"}, "reject": True},
                   {"name": "cameras", "match": {"calling_ae_title": "CAMERA1"},
                    "profile": "tags-only", "destinations": ["out", "copy"]}],
        "secret": {"env": "UNUSED"},
    })


def _run(data: bytes, calling_ae: str = "CAMERA1"):
    return process_instance(data, _config(), SECRET, calling_ae=calling_ae, called_ae="DMASK",
                            maskers={})


def _instance(**kwargs):
    return photo_instance(resized(photo("camera"), 4096),
                          sop_class_uid=SecondaryCaptureImageStorage, **kwargs)


def test_tags_only_is_deterministic_and_scrubbed() -> None:
    data = part10_bytes(_instance())
    first, second = _run(data), _run(data)
    assert first.encoded == second.encoded
    assert first.destinations == ("out", "copy") and first.route == "cameras"
    assert not first.masked
    result = dcmread(BytesIO(first.encoded))
    assert result.PatientID != PATIENT_ID and result.PatientID == first.patient_id
    assert result.file_meta.MediaStorageSOPInstanceUID == result.SOPInstanceUID
    assert result.PixelData == dcmread(BytesIO(data)).PixelData
    assert "RecognizableVisualFeatures" not in result  # tags only: the pixels make no claim


def test_applying_the_routed_profile_gives_the_routed_bytes() -> None:
    """``dmask mask`` applies a profile to a file without routing it; the output is the same."""
    data = part10_bytes(_instance())
    routed = _run(data)
    applied = apply_profile(parse(data), _config().profiles["tags-only"], SECRET,
                            profile_name="tags-only", masker=None)
    assert applied.encoded == routed.encoded and applied.patient_id == routed.patient_id
    assert set(applied.stage_seconds) == {"check", "text", "scrub", "encode"}
    assert set(routed.stage_seconds) == {"parse", "check", "text", "scrub", "encode"}
    ct = part10_bytes(_instance(modality="CT"))  # a route rejects it; a profile alone does not route
    assert apply_profile(parse(ct), _config().profiles["tags-only"], SECRET, profile_name="tags-only",
                         masker=None).encoded


@pytest.mark.parametrize("calling_ae, modality", [("CAMERA1", "CT"), ("OTHER", "OT")])
def test_rejecting_or_missing_route(calling_ae: str, modality: str) -> None:
    with pytest.raises(RouteRejected) as caught:
        _run(part10_bytes(_instance(modality=modality)), calling_ae)
    assert quarantine_reason(caught.value) == "route-rejected"


@pytest.mark.parametrize("keep", [0.05, 0.1, 0.5, 0.99])
def test_truncated_instance_never_passes(keep: float) -> None:
    data = part10_bytes(_instance())
    with pytest.raises(DmaskError) as caught:
        _run(data[: int(len(data) * keep)])
    assert quarantine_reason(caught.value) in {"invalid-dataset", "pixel-data"}


def test_wrong_vr_is_invalid() -> None:
    ds = _instance()
    ds[0x00100010] = DataElement(0x00100010, "US", 7)  # Patient's Name written as US
    with pytest.raises(InvalidDataset, match="VR US"):
        _run(part10_bytes(ds))


def test_short_pixel_data_fails_even_without_mask() -> None:
    ds = _instance()
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    with pytest.raises(PixelDataError):
        _run(part10_bytes(ds))


def test_unexpected_errors_are_quarantined_as_internal() -> None:
    assert quarantine_reason(RuntimeError("boom")) == "internal-error"


def _mask_config() -> GatewayConfig:
    return GatewayConfig.model_validate({
        "listener": {"allowed_callers": [{"ae_title": "CAMERA1"}]},
        "destinations": {"out": {"type": "folder", "path": "out"}},
        "profiles": {"face": {}},
        "routes": [{"name": "all", "profile": "face", "destinations": ["out"]}],
        "secret": {"env": "UNUSED"},
    })


def test_mask_profile_masks_stills_and_frame_stacks(masker) -> None:
    face = resized(photo("grace_hopper"), 60_000)
    still = photo_instance(face)
    stack = photo_instance(np.concatenate([face] * 3), sop_class_uid=MultiFrameTrueColorSecondaryCaptureImageStorage)
    stack.Rows, stack.NumberOfFrames = face.shape[0], 3
    for ds, frames in ((still, 1), (stack, 3)):
        data = part10_bytes(ds)
        result = process_instance(data, _mask_config(), SECRET, calling_ae="CAMERA1",
                                  called_ae="DMASK", maskers={"face": masker})
        assert result.masked and result.stage_seconds["mask"] > 0
        output = dcmread(BytesIO(result.encoded))
        assert output.RecognizableVisualFeatures == "NO"
        assert int(output.get("NumberOfFrames", 1)) == frames
        before = dcmread(BytesIO(data)).pixel_array.astype(int)
        assert np.abs(output.pixel_array.astype(int) - before).mean() > 10


def test_mask_profile_quarantines_a_photo_without_face(masker) -> None:
    data = part10_bytes(photo_instance(resized(photo("retina"), 40_000)))
    with pytest.raises(DmaskError) as caught:
        process_instance(data, _mask_config(), SECRET, calling_ae="CAMERA1", called_ae="DMASK",
                         maskers={"face": masker})
    assert quarantine_reason(caught.value) == "no-face"
