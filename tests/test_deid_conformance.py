"""De-identified photographic objects stay valid: dciodvfy finds no error the input did not have.

dciodvfy (Debian dicom3tools) checks an instance against the IOD its SOP class names, which is
what proves that compound actions (X/Z/D ...) were resolved per IOD: removing a Type 1 or 2
attribute, or emptying a Type 1 one, shows up here as a new error.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from pydicom.uid import OphthalmicPhotography8BitImageStorage, SecondaryCaptureImageStorage, VLPhotographicImageStorage

from gateway.deid.options import Option
from gateway.deid.scrub import scrub
from gateway.deid.settings import DeidSettings
from tests.support.instances import photographic_instance
from tests.support.keys import SECRET

pytestmark = pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy not installed")

PROFILES = {
    "basic": DeidSettings(),
    "all-options": DeidSettings(
        options=tuple(o for o in Option if o is not Option.RETAIN_LONGITUDINAL_FULL_DATES)
    ),
}


def _errors(path: Path) -> set[str]:
    result = subprocess.run(["dciodvfy", "-new", str(path)], capture_output=True, text=True, timeout=60)
    lines = (result.stdout + result.stderr).splitlines()
    # Values differ between input and output by design: compare the kind of error only.
    return {re.sub(r"<[^>]*>\s*$|= .*$", "", line) for line in lines if line.startswith("Error")}


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize(
    "sop_class_uid", [VLPhotographicImageStorage, SecondaryCaptureImageStorage, OphthalmicPhotography8BitImageStorage]
)
def test_output_has_no_new_dciodvfy_error(tmp_path: Path, sop_class_uid: str, profile: str) -> None:
    original = photographic_instance(sop_class_uid, instance=2)
    original.save_as(tmp_path / "in.dcm", enforce_file_format=True)
    out = scrub(original, PROFILES[profile], SECRET, pixels_masked=True)
    out.save_as(tmp_path / "out.dcm", enforce_file_format=True)
    before, after = _errors(tmp_path / "in.dcm"), _errors(tmp_path / "out.dcm")
    assert after - before == set()
    assert before == set()  # a valid input, so that any error is the scrubber's


SAMPLES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "dicom-samples"


@pytest.mark.parametrize("name", ["VL2_J2KR.dcm", "VL3_RLE.dcm", "VL6_RLE.dcm"])
def test_real_secondary_capture_files_gain_no_dciodvfy_error(tmp_path: Path, name: str) -> None:
    if not (SAMPLES / name).is_file():
        pytest.skip("shared/data/dicom-samples not present")
    from gateway.dicom.read import read_instance

    original = read_instance(SAMPLES / name)
    original.save_as(tmp_path / "in.dcm", enforce_file_format=True)
    scrub(original, DeidSettings(), SECRET, pixels_masked=False).save_as(
        tmp_path / "out.dcm", enforce_file_format=True
    )
    assert _errors(tmp_path / "out.dcm") - _errors(tmp_path / "in.dcm") == set()
