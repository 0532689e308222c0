"""DeidSettings: defaults usable as-is, and every mistake refused with what was wrong."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from pydicom.tag import Tag

from gateway.deid.options import Option
from gateway.deid.settings import DeidSettings


def test_defaults_are_the_basic_profile_with_pseudonyms() -> None:
    settings = DeidSettings()
    assert settings.options == ()
    assert settings.unknown_public == "remove"
    assert settings.uid_root == "2.25"
    assert settings.patient_pseudonyms


def test_overrides_accept_keywords_and_tags_in_common_spellings() -> None:
    settings = DeidSettings.model_validate(
        {
            "options": ["retain_safe_private", "clean_descriptors"],
            "keep": ["StudyDescription", "(0008,103E)"],
            "remove": ["0008 1090"],
            "empty": ["00080080"],
            "replace": {"StationName": "CAM"},
            "private_allow_list": [{"group": "0019", "creator": "SAFE CREATOR", "element": "10"}],
        }
    )
    assert settings.options == (Option.RETAIN_SAFE_PRIVATE, Option.CLEAN_DESCRIPTORS)
    assert settings.keep == (Tag("StudyDescription"), Tag("SeriesDescription"))
    assert settings.remove == (Tag("ManufacturerModelName"),)
    assert settings.empty == (Tag("InstitutionName"),)
    assert settings.replace == {Tag("StationName"): "CAM"}
    assert settings.private_allow_list[0].group == 0x0019
    assert settings.private_allow_list[0].element == 0x10


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"keep": ["NoSuchKeyword"]}, "neither a DICOM keyword nor a tag"),
        ({"keep": ["0009,0010"]}, "is private"),
        ({"remove": ["0002,0003"]}, "file meta"),
        ({"keep": ["PatientName"], "remove": ["0010,0010"]}, "in both keep and remove"),
        ({"replace": {"PixelData": "x"}}, "cannot be replaced by text"),
        ({"options": ["retain_everything"]}, "options.0"),
        (
            {"options": ["retain_longitudinal_full_dates", "retain_longitudinal_modified_dates"]},
            "exclude each other",
        ),
        ({"private_allow_list": [{"group": "0019", "creator": "A", "element": "10"}]}, "needs the retain_safe_private"),
        (
            {
                "options": ["retain_safe_private"],
                "private_allow_list": [{"group": "0018", "creator": "A", "element": "10"}],
            },
            "not private",
        ),
        ({"uid_root": "1.02.3"}, "not a UID root"),
        ({"uid_root": "1." * 25 + "1"}, "at most 40"),
        ({"max_date_shift_days": 0}, "greater than or equal to 1"),
        ({"unknown_public": "pass"}, "unknown_public"),
        ({"mask": {}}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_settings_are_refused(data: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(")):
        DeidSettings.model_validate(data)
