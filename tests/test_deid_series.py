"""A series scrubbed in separate processes stays one series with consistent references."""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom.uid import VLPhotographicImageStorage

from tests.support.cli import dmask, write_config
from tests.support.instances import photographic_instance


def test_five_instances_in_two_processes_keep_one_study_series_and_references(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    inputs = tmp_path / "in"
    inputs.mkdir()
    for n in range(1, 6):
        photographic_instance(VLPhotographicImageStorage, instance=n).save_as(
            inputs / f"{n}.dcm", enforce_file_format=True
        )
    # Two runs, two processes: instances 1-3, then 4-5 and 3 again.
    first = dmask("deid", *(inputs / f"{n}.dcm" for n in (1, 2, 3)), "-o", tmp_path / "a",
                  "--profile", "tags", "--config", config)
    second = dmask("deid", *(inputs / f"{n}.dcm" for n in (3, 4, 5)), "-o", tmp_path / "b",
                   "--profile", "tags", "--config", config)
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    paths = [tmp_path / "a" / "1.dcm", tmp_path / "a" / "2.dcm", tmp_path / "a" / "3.dcm",
             tmp_path / "b" / "4.dcm", tmp_path / "b" / "5.dcm"]
    out = [pydicom.dcmread(p) for p in paths]
    originals = [pydicom.dcmread(inputs / f"{n}.dcm") for n in range(1, 6)]

    assert len({ds.StudyInstanceUID for ds in out}) == 1
    assert len({ds.SeriesInstanceUID for ds in out}) == 1
    assert len({ds.PatientID for ds in out}) == 1
    assert len({ds.FrameOfReferenceUID for ds in out[1:]}) == 1
    assert out[0].StudyInstanceUID != originals[0].StudyInstanceUID
    assert len({ds.SOPInstanceUID for ds in out}) == 5
    for n in range(1, 5):  # instance n+1 references instance n, across the two runs
        reference = out[n].ReferencedImageSequence[0]
        assert reference.ReferencedSOPInstanceUID == out[n - 1].SOPInstanceUID
    for ds in out:
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    # The instance both runs scrubbed came out byte-identical.
    assert (tmp_path / "a" / "3.dcm").read_bytes() == (tmp_path / "b" / "3.dcm").read_bytes()
