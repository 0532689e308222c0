"""``dmask audit phi``: finds identifying values wherever they hide in an output."""

from __future__ import annotations

import copy
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import VLPhotographicImageStorage
from typer.testing import CliRunner

from gateway.audit.phi import find_leaks, identifying_values, pair_files
from gateway.cli import app
from gateway.deid.plan import compile_plan
from gateway.deid.scrub import scrub
from gateway.deid.settings import DeidSettings
from tests.support.cli import write_config
from tests.support.corpus import planted_instance
from tests.support.instances import photographic_instance
from tests.support.keys import SECRET


def _clean_output() -> tuple[Dataset, Dataset]:
    original = photographic_instance(VLPhotographicImageStorage, instance=2)
    return original, scrub(original, DeidSettings(), SECRET, pixels_masked=False)


def test_clean_output_has_no_leak() -> None:
    original, out = _clean_output()
    assert find_leaks(original, out) == []


def test_leak_in_a_nested_sequence_is_found_with_both_places() -> None:
    original, out = _clean_output()
    item = Dataset()
    item.CodeMeaning = "Patient jane DOE"  # case and surrounding words do not hide a name
    out.AnatomicRegionSequence = [item]
    leaks = find_leaks(original, out)
    assert {(leak.attribute, leak.found_in) for leak in leaks} >= {
        ("PatientName", "AnatomicRegionSequence[0].CodeMeaning")
    }
    assert {leak.value for leak in leaks} == {"Jane", "Doe"}


def test_leak_in_private_binary_and_file_meta_values_is_found() -> None:
    original, out = _clean_output()
    block = out.private_block(0x0029, "SOME VENDOR", create=True)
    block.add_new(0x10, "OB", "xx PID-4711 xx".encode("utf-16-le"))
    block.add_new(0x11, "UN", b"\x00ACC-0815\x00")
    out.file_meta.SourceApplicationEntityTitle = "St Elsewhere Eye Clinic"[:16]
    out.file_meta.ImplementationVersionName = "S-42"
    found = {(leak.attribute, leak.found_in) for leak in find_leaks(original, out)}
    assert ("PatientID", "(0029,1010)") in found
    assert ("AccessionNumber", "(0029,1011)") in found
    assert ("StudyID", "ImplementationVersionName") in found


def test_values_inside_longer_tokens_are_not_leaks() -> None:
    original, out = _clean_output()
    out.SeriesDescription = "S-421 Janet Doenitz"  # "S-42", "Jane", "Doe" only as parts of words
    assert find_leaks(original, out) == []


def test_changed_dates_and_uids_are_not_leaks_but_copies_are() -> None:
    original, out = _clean_output()
    out.ContentDate = "20240106"
    assert find_leaks(original, out) == []
    out.ImageComments = f"copy of {original.SOPInstanceUID}"
    assert {leak.attribute for leak in find_leaks(original, out)} == {
        "SOPInstanceUID",
        "MediaStorageSOPInstanceUID",
    }


def test_original_private_values_count_as_identifying() -> None:
    original = planted_instance()
    attributes = {value.attribute for value in identifying_values(original)}
    assert {"(0009,1010)", "(0009,1011)", "(0009,1012)"} <= attributes
    assert "(6000,3000)" in attributes and "SourceApplicationEntityTitle" in attributes


def test_a_profile_plan_leaves_out_deliberate_keeps_only() -> None:
    original = photographic_instance(VLPhotographicImageStorage)
    settings = DeidSettings.model_validate({"options": ["retain_institution_identity"]})
    out = scrub(original, settings, SECRET, pixels_masked=False)
    assert [leak.attribute for leak in find_leaks(original, out)] == ["InstitutionName", "InstitutionAddress"]
    assert find_leaks(original, out, compile_plan(settings)) == []
    leaky = copy.deepcopy(out)
    leaky.InstitutionName = str(original.OperatorsName)
    assert [leak.attribute for leak in find_leaks(original, leaky, compile_plan(settings))] == [
        "OperatorsName"
    ]


def _write_pair(folder: Path) -> tuple[Path, Path]:
    original, out = _clean_output()
    folder.mkdir(parents=True, exist_ok=True)
    original.save_as(folder / "in.dcm", enforce_file_format=True)
    out.save_as(folder / "out.dcm", enforce_file_format=True)
    return folder / "in.dcm", folder / "out.dcm"


def test_command_exit_status_and_no_values_unless_asked(tmp_path: Path) -> None:
    source, target = _write_pair(tmp_path)
    runner = CliRunner()
    clean = runner.invoke(app, ["audit", "phi", str(source), str(target)])
    assert clean.exit_code == 0 and "0 leak(s) in 1 file pair(s)" in clean.stdout
    leaky = runner.invoke(app, ["audit", "phi", str(source), str(source)])
    assert leaky.exit_code == 1
    assert "PatientName found in PatientName" in leaky.stdout
    assert "Doe" not in leaky.stdout
    shown = runner.invoke(app, ["audit", "phi", str(source), str(source), "--show-values"])
    assert "'Doe^Jane'" in shown.stdout


def test_command_with_profile_accepts_retained_values(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    original = photographic_instance(VLPhotographicImageStorage)
    original.save_as(tmp_path / "in.dcm", enforce_file_format=True)
    settings = DeidSettings.model_validate({"options": ["retain_longitudinal_modified_dates"]})
    scrub(original, settings, SECRET, pixels_masked=False).save_as(tmp_path / "out.dcm", enforce_file_format=True)
    args = ["audit", "phi", str(tmp_path / "in.dcm"), str(tmp_path / "out.dcm")]
    result = CliRunner().invoke(app, [*args, "--profile", "modified-dates", "--config", str(config)])
    assert result.exit_code == 0, result.stdout + result.stderr


def test_folders_are_paired_by_relative_path(tmp_path: Path) -> None:
    (tmp_path / "in" / "a").mkdir(parents=True)
    (tmp_path / "out" / "in" / "a").mkdir(parents=True)
    (tmp_path / "in" / "a" / "x.dcm").write_bytes(b"")
    (tmp_path / "in" / "a" / "y.dcm").write_bytes(b"")
    (tmp_path / "out" / "in" / "a" / "x.dcm").write_bytes(b"")
    pairs, unpaired = pair_files(tmp_path / "in", tmp_path / "out")
    assert pairs == [(tmp_path / "in/a/x.dcm", tmp_path / "out/in/a/x.dcm")]
    assert unpaired == [tmp_path / "in/a/y.dcm"]


def test_two_letter_name_parts_are_found_as_words_only() -> None:
    original, out = _clean_output()
    original.PatientName = "Li^Wei"
    out.SeriesDescription = "Lid lag, lipid deposits"
    assert find_leaks(original, out) == []
    out.SeriesDescription = "Lid lag (LI)"
    assert [(leak.attribute, leak.value) for leak in find_leaks(original, out)] == [("PatientName", "Li")]


def test_command_exits_2_when_a_file_is_not_dicom(tmp_path: Path) -> None:
    source, _ = _write_pair(tmp_path)
    junk = tmp_path / "junk.dcm"
    junk.write_text("a note, not a DICOM file")
    result = CliRunner().invoke(app, ["audit", "phi", str(source), str(junk)])
    assert result.exit_code == 2
    assert "audit phi: " in result.stderr and "leak(s)" not in result.stdout
