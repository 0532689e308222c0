"""``dmask deid``: files and folders, one failure does not stop the batch."""

from __future__ import annotations

import shutil
from pathlib import Path

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
from tests.support.instances import photographic_instance, pydicom_test_file, write, write_without_meta


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
