"""dmask mask: photos and DICOM files, folders mirrored, refusals reported, previews."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.uid import SecondaryCaptureImageStorage
from typer.testing import CliRunner

from gateway.cli import app
from tests.support.instances import PATIENT_NAME, photo_instance, pydicom_test_file, write_without_meta
from tests.support.photos import photo
from tests.support.pixels import set_palette_pixels

REPO = Path(__file__).resolve().parents[1]
SECRET = "0123456789abcdef0123456789abcdef"


def write_photo(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


@pytest.fixture()
def config(tmp_path: Path) -> Path:
    """The documented example configuration with its key taken from the environment."""
    text = (REPO / "config" / "gateway.yaml").read_text()
    lines = [("  env: DMASK_SECRET" if line.strip().startswith("file:") and "pseudonym" in line else line)
             for line in text.splitlines()]
    path = tmp_path / "gateway.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_folder_is_mirrored_refusals_are_reported_and_the_batch_goes_on(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    write_photo(inputs / "hopper.png", photo("grace_hopper"))
    write_photo(inputs / "clinic" / "astronaut.jpg", photo("astronaut"))
    write_photo(inputs / "clinic" / "fundus.png", photo("retina")[::4, ::4])
    (inputs / "clinic" / "broken.png").write_bytes(b"not an image")
    output = tmp_path / "out"

    result = CliRunner().invoke(app, ["mask", str(inputs), "-o", str(output), "--preview",
                                      "--config", str(tmp_path / "missing.yaml")])

    assert result.exit_code == 1
    assert "fundus.png: no-face" in result.output
    assert "broken.png: pixel-data" in result.output
    assert "2 masked, 2 refused" in result.output
    masked = cv2.imread(str(output / "in" / "hopper.png"))
    assert masked.shape == photo("grace_hopper").shape
    assert (output / "in" / "clinic" / "astronaut.jpg").read_bytes()[:2] == b"\xff\xd8"  # still a JPEG
    preview = cv2.imread(str(output / "in" / "hopper.png.preview.png"))
    assert preview.shape[1] == 2 * masked.shape[1]
    assert not (output / "in" / "clinic" / "fundus.png").exists()


def test_an_unwritable_output_is_reported_and_the_batch_goes_on(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    write_photo(inputs / "a.png", photo("grace_hopper"))
    write_photo(inputs / "b.png", photo("grace_hopper"))
    output = tmp_path / "out"
    (output / "in" / "a.png").mkdir(parents=True)  # a folder where the result should go

    result = CliRunner().invoke(app, ["mask", str(inputs), "-o", str(output),
                                      "--config", str(tmp_path / "missing.yaml")])

    assert result.exit_code == 1
    assert "a.png: file-access" in result.output
    assert "1 masked, 1 refused" in result.output
    assert cv2.imread(str(output / "in" / "b.png")) is not None


def test_dicom_goes_through_the_pipeline_masked_and_deidentified(
    tmp_path: Path, config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DMASK_SECRET", SECRET)
    source = tmp_path / "astronaut.dcm"
    photo_instance(photo("astronaut")).save_as(source, enforce_file_format=True)

    result = CliRunner().invoke(app, ["mask", str(source), "-o", str(tmp_path / "out"), "--config", str(config),
                                      "--profile", "face-photos"])

    assert result.exit_code == 0, result.output
    ds = pydicom.dcmread(tmp_path / "out" / "astronaut.dcm")
    assert str(ds.PatientName) != PATIENT_NAME
    assert ds.RecognizableVisualFeatures == "NO"
    face = (slice(70, 178), slice(179, 272))
    assert np.abs(ds.pixel_array[face].astype(int) - photo("astronaut")[face].astype(int)).mean() > 20


def test_unknown_profile_is_a_configuration_error(tmp_path: Path, config: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DMASK_SECRET", SECRET)
    write_photo(tmp_path / "hopper.png", photo("grace_hopper"))
    result = CliRunner().invoke(app, ["mask", str(tmp_path / "hopper.png"), "-o", str(tmp_path / "out"),
                                      "--config", str(config), "--profile", "nope"])
    assert result.exit_code == 2
    assert "nope" in result.output


def test_dicom_files_without_preamble_and_file_meta_are_read_as_archives_keep_them(
    tmp_path: Path, config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DMASK_SECRET", SECRET)
    inputs = tmp_path / "in"
    inputs.mkdir()
    face = photo_instance(photo("astronaut"), sop_class_uid=SecondaryCaptureImageStorage)
    set_palette_pixels(face, photo("astronaut"))
    write_without_meta(face, inputs / "face.dcm")
    write_without_meta(pydicom.dcmread(pydicom_test_file("examples_palette.dcm")), inputs / "us_palette.dcm")
    shutil.copy(pydicom_test_file("ExplVR_LitEndNoMeta.dcm"), inputs / "rt_plan.dcm")  # no pixel module
    shutil.copy(pydicom_test_file("no_meta.dcm"), inputs / "no_uids.dcm")  # no SOP Class UID

    result = CliRunner().invoke(app, ["mask", str(inputs), "-o", str(tmp_path / "out"), "--config", str(config),
                                      "--profile", "face-photos"])

    assert "1 masked, 3 refused" in result.output
    assert "us_palette.dcm: no-face" in result.output  # read and decoded: only the face is missing
    assert "rt_plan.dcm: pixel-data: the dataset has no Pixel Data" in result.output
    assert "no_uids.dcm: invalid-dataset: no SOP Class UID or SOP Instance UID" in result.output
    ds = pydicom.dcmread(tmp_path / "out" / "in" / "face.dcm")
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID != face.SOPInstanceUID
    assert str(ds.PatientName) != PATIENT_NAME
    assert ds.RecognizableVisualFeatures == "NO"
    region = (slice(70, 178), slice(179, 272))
    assert np.abs(ds.pixel_array[region].astype(int) - photo("astronaut")[region].astype(int)).mean() > 20
