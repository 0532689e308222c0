"""``dmask deid``: files and folders, one failure does not stop the batch; burned-in text as the
gateway's tags-only routes treat it."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.uid import ImplicitVRLittleEndian, SecondaryCaptureImageStorage, VLPhotographicImageStorage
from typer.testing import CliRunner

from gateway.cli import app
from gateway.dicom.read import read_instance, read_part10
from gateway.errors import InvalidDataset
from gateway.files.plan import FileJob, plan_files
from gateway.process.pipeline import parse
from tests.support.cli import write_config
from tests.support.instances import (
    photo_instance,
    photographic_instance,
    pydicom_test_file,
    write,
    write_without_meta,
)
from tests.support.photos import photo
from tests.support.planted_text import PlantedImage, coverage, plant

CLEAN_PIXEL_DATA = "113101"
OUTLINE = (255, 0, 255)


def _series(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True)
    paths = []
    for n in range(1, count + 1):
        path = folder / f"img{n}.dcm"
        photographic_instance(VLPhotographicImageStorage, instance=n).save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def test_plan_files_keeps_relative_paths(tmp_path: Path) -> None:
    _series(tmp_path / "study" / "series1", 2)
    single = tmp_path / "one.dcm"
    single.write_bytes(b"")
    jobs = plan_files([tmp_path / "study", single], tmp_path / "out")
    assert jobs == [
        FileJob(tmp_path / "study/series1/img1.dcm", tmp_path / "out/study/series1/img1.dcm"),
        FileJob(tmp_path / "study/series1/img2.dcm", tmp_path / "out/study/series1/img2.dcm"),
        FileJob(single, tmp_path / "out/one.dcm"),
    ]


def test_read_instance_accepts_files_without_preamble_and_meta(tmp_path: Path) -> None:
    path = write_without_meta(photographic_instance(SecondaryCaptureImageStorage), tmp_path / "bare.dcm")
    read = read_instance(path)
    assert read.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    with pytest.raises(InvalidDataset):
        (tmp_path / "text.dcm").write_text("not dicom at all")
        read_instance(tmp_path / "text.dcm")


def test_read_part10_gives_a_bare_data_set_the_file_meta_the_pipeline_parses(tmp_path: Path) -> None:
    ds = photographic_instance(SecondaryCaptureImageStorage)
    part10 = write(ds, tmp_path / "part10.dcm")
    assert read_part10(part10) == part10.read_bytes()  # a Part 10 file is taken as it is
    parsed = parse(read_part10(write_without_meta(ds, tmp_path / "bare.dcm")))
    assert parsed.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    assert parsed.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert parsed.PatientName == ds.PatientName
    assert parsed.PixelData == ds.PixelData
    del ds.SOPInstanceUID
    with pytest.raises(InvalidDataset, match="no SOP Class UID or SOP Instance UID"):
        read_part10(write_without_meta(ds, tmp_path / "anonymous.dcm"))


def test_deid_command_takes_files_without_preamble_and_file_meta(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_without_meta(photographic_instance(SecondaryCaptureImageStorage), inputs / "photo.dcm")
    write_without_meta(pydicom.dcmread(pydicom_test_file("examples_palette.dcm")), inputs / "us_palette.dcm")
    shutil.copy(pydicom_test_file("ExplVR_LitEndNoMeta.dcm"), inputs / "rt_plan.dcm")
    shutil.copy(pydicom_test_file("no_meta.dcm"), inputs / "no_uids.dcm")

    result = CliRunner().invoke(
        app, ["deid", str(inputs), "-o", str(tmp_path / "out"), "--profile", "tags", "--config", str(config)]
    )

    assert "no_uids.dcm: invalid-dataset: no SOP Class UID or SOP Instance UID" in result.stderr
    assert "3 de-identified, 1 failed" in result.stdout
    for name in ("photo.dcm", "us_palette.dcm", "rt_plan.dcm"):
        scrubbed = pydicom.dcmread(tmp_path / "out" / "in" / name)  # Part 10 now: no force needed
        assert scrubbed.PatientIdentityRemoved == "YES"
        assert scrubbed.file_meta.MediaStorageSOPInstanceUID == scrubbed.SOPInstanceUID


def test_deid_command_reports_a_bad_file_and_finishes_the_batch(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    inputs = _series(tmp_path / "in", 12)
    (tmp_path / "in" / "broken.dcm").write_bytes(b"DICM but not really")
    result = CliRunner().invoke(
        app, ["deid", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--profile", "tags", "--config", str(config)]
    )
    assert result.exit_code == 1
    assert "broken.dcm: invalid-dataset" in result.stderr
    assert "12 de-identified, 1 failed" in result.stdout
    outputs = sorted((tmp_path / "out" / "in").glob("img*.dcm"))
    assert len(outputs) == len(inputs)
    scrubbed = pydicom.dcmread(outputs[0])
    assert scrubbed.PatientIdentityRemoved == "YES"
    assert "profile tags" in scrubbed.DeidentificationMethod
    assert "RecognizableVisualFeatures" not in scrubbed  # tags only: pixels were not masked


def test_deid_command_refuses_an_unknown_profile(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    inputs = _series(tmp_path / "in", 1)
    result = CliRunner().invoke(
        app, ["deid", str(inputs[0]), "-o", str(tmp_path / "out"), "--profile", "nope", "--config", str(config)]
    )
    assert result.exit_code == 2
    assert "no profile 'nope'" in result.stderr
    assert not (tmp_path / "out").exists()


def _planted_photo(folder: Path, name: str = "photo.dcm") -> tuple[PlantedImage, Path]:
    """A real photo with a name, an ID and dates burned in, as a DICOM file that says it has none."""
    planted = plant(photo("astronaut"), np.random.default_rng(1), 4, sizes=(14, 32))
    folder.mkdir(parents=True, exist_ok=True)
    ds = photo_instance(planted.rgb)
    assert ds.BurnedInAnnotation == "NO"  # the source's claim is not what the output says
    return planted, write(ds, folder / name)


def _codes(ds: pydicom.Dataset) -> set[str]:
    return {item.CodeValue for item in ds.DeidentificationMethodCodeSequence}


def _deid(tmp_path: Path, inputs: Path, profile: str, *options: str):
    return CliRunner().invoke(app, ["deid", str(inputs), "-o", str(tmp_path / "out"), "--profile", profile,
                                    "--config", str(write_config(tmp_path)), *options])


def test_deid_redacts_burned_in_text_marks_it_and_previews_the_boxes(tmp_path: Path) -> None:
    planted, source = _planted_photo(tmp_path / "in")
    shutil.copy(pydicom_test_file("ExplVR_LitEndNoMeta.dcm"), tmp_path / "in" / "rt_plan.dcm")

    result = _deid(tmp_path, tmp_path / "in", "tags", "--preview")

    assert result.exit_code == 0, result.output
    assert "2 de-identified, 0 failed" in result.stdout
    assert "burned-in text redacted in 1 file(s), still found in 0" in result.stdout
    out = pydicom.dcmread(tmp_path / "out" / "in" / "photo.dcm")
    pixels = out.pixel_array
    filled = (pixels == 0).all(axis=-1)
    assert [coverage(token, filled) for token in planted.tokens] == [1.0] * len(planted.tokens)
    assert (pixels != planted.rgb).any(axis=-1).mean() < 0.12  # the text boxes (14-32 px text), not the photo
    assert CLEAN_PIXEL_DATA in _codes(out) and out.BurnedInAnnotation == "NO"
    assert "pixels not masked" in out.DeidentificationMethod
    assert "burned-in text removed" in out.DeidentificationMethod
    assert "RecognizableVisualFeatures" not in out
    assert out.PatientName != pydicom.dcmread(source).PatientName
    preview = cv2.cvtColor(cv2.imread(str(tmp_path / "out" / "in" / "photo.dcm.preview.png")), cv2.COLOR_BGR2RGB)
    assert preview.shape == (pixels.shape[0], 2 * pixels.shape[1], 3)
    outline = (preview[:, pixels.shape[1]:] == OUTLINE).all(axis=-1)
    for token in planted.tokens:  # every box is outlined on the output half, around the token
        x0, y0 = np.floor(token.corners.min(axis=0)).astype(int)
        x1, y1 = np.ceil(token.corners.max(axis=0)).astype(int)
        assert outline[max(0, y0 - 30):y1 + 30, max(0, x0 - 30):x1 + 30].any()
    assert not (preview[:, :pixels.shape[1]] == OUTLINE).all(axis=-1).any()  # the input half as it was
    # Without Pixel Data the text step has nothing to examine: scrubbed only, no Clean Pixel Data.
    plan = pydicom.dcmread(tmp_path / "out" / "in" / "rt_plan.dcm")
    assert plan.PatientIdentityRemoved == "YES" and CLEAN_PIXEL_DATA not in _codes(plan)
    assert not (tmp_path / "out" / "in" / "rt_plan.dcm.preview.png").exists()
    # An independent check of the output: neither the detector nor Tesseract reads text left.
    audit = CliRunner().invoke(app, ["audit", "text", str(tmp_path / "in" / "photo.dcm"),
                                     str(tmp_path / "out" / "in" / "photo.dcm")])
    assert audit.exit_code == 0, audit.output


def test_deid_keeps_text_when_the_profile_says_keep_and_marks_it_yes(tmp_path: Path) -> None:
    _, source = _planted_photo(tmp_path / "in")
    ds = pydicom.dcmread(source)
    ds.BurnedInAnnotation = "YES"
    ds.save_as(source)

    result = _deid(tmp_path, source, "keep-text", "--preview")

    assert result.exit_code == 0, result.output
    assert "burned-in text" not in result.stdout
    out = pydicom.dcmread(tmp_path / "out" / "photo.dcm")
    assert out.PixelData == ds.PixelData
    assert out.BurnedInAnnotation == "YES" and CLEAN_PIXEL_DATA not in _codes(out)
    assert not (tmp_path / "out" / "photo.dcm.preview.png").exists()  # nothing was changed to show


def test_deid_refuses_text_when_the_profile_says_refuse_and_goes_on(tmp_path: Path) -> None:
    _planted_photo(tmp_path / "in", "text.dcm")
    write(photo_instance(photo("astronaut")[300:, 300:]), tmp_path / "in" / "plain.dcm")

    result = _deid(tmp_path, tmp_path / "in", "refuse-text")

    assert result.exit_code == 1
    assert "text.dcm: burned-in-text: " in result.stderr
    assert "1 de-identified, 1 failed" in result.stdout
    assert not (tmp_path / "out" / "in" / "text.dcm").exists()
    plain = pydicom.dcmread(tmp_path / "out" / "in" / "plain.dcm")
    assert CLEAN_PIXEL_DATA in _codes(plain) and plain.BurnedInAnnotation == "NO"


def test_deid_refuses_pixels_it_cannot_examine_for_text(tmp_path: Path) -> None:
    _, source = _planted_photo(tmp_path / "in")
    ds = pydicom.dcmread(source)
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    ds.save_as(source)

    result = _deid(tmp_path, source, "tags")

    assert result.exit_code == 1
    assert "photo.dcm: pixel-data: " in result.stderr
    assert not (tmp_path / "out" / "photo.dcm").exists()
