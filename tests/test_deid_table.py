"""The package's copy of PS3.15 Table E.1-1 and the meaning of its action codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydicom.tag import Tag

from gateway.deid import table as deid_table
from gateway.deid.table import Action, load_table, resolve
from tools import build_deid_table

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
SOURCE = SHARED / "dicom" / "confidentiality_profile_attributes.json"
PACKAGED = Path(deid_table.__file__).with_name("table_e1_1.json")


def test_regenerating_from_the_standard_gives_the_packaged_file(tmp_path: Path) -> None:
    if not SOURCE.is_file():
        pytest.skip("shared/dicom/confidentiality_profile_attributes.json not present")
    out = tmp_path / "table.json"
    build_deid_table.main([str(SOURCE), str(out)])
    assert out.read_text() == PACKAGED.read_text()


def test_table_names_its_edition_and_holds_every_row() -> None:
    table = load_table()
    assert table.edition == "2024b"
    document = json.loads(PACKAGED.read_text())
    assert len(document["attributes"]) + len(document["patterns"]) == 621
    assert {p["pattern"] for p in table.patterns} == {
        "(50XX,XXXX)",
        "(60XX,3000)",
        "(60XX,4000)",
        "(GGGG,EEEE) WHERE GGGG IS ODD",
    }


def test_rows_carry_basic_and_option_codes() -> None:
    rows = load_table().rows
    assert rows[Tag("PatientName")].basic == "Z"
    assert rows[Tag("SOPInstanceUID")].basic == "U"
    assert rows[Tag("SOPInstanceUID")].options == {"retain_uids": "K"}
    assert rows[Tag("DeviceSerialNumber")].basic == "X/Z/D"
    assert rows[Tag("StudyDate")].options == {
        "retain_longitudinal_full_dates": "K",
        "retain_longitudinal_modified_dates": "C",
    }
    assert rows[Tag("IconImageSequence")].name == "Icon Image Sequence"


@pytest.mark.parametrize(
    ("code", "attribute_type", "action"),
    [
        ("X/Z", "3", Action.REMOVE),
        ("X/Z", "2", Action.EMPTY),
        ("X/Z", "2C", Action.EMPTY),
        ("X/D", "3", Action.REMOVE),
        ("X/D", "1C", Action.DUMMY),
        ("Z/D", "3", Action.EMPTY),
        ("Z/D", "2", Action.EMPTY),
        ("Z/D", "1", Action.DUMMY),
        ("X/Z/D", "3", Action.REMOVE),
        ("X/Z/D", "2", Action.EMPTY),
        ("X/Z/D", "1", Action.DUMMY),
        ("X/Z/U*", "3", Action.REMOVE),
        ("X/Z/U*", "2", Action.EMPTY),
        ("X/Z/U*", "1C", Action.KEEP),
        ("U", "3", Action.REMAP_UID),
        ("K", "1", Action.KEEP),
    ],
)
def test_compound_codes_resolve_by_the_attribute_type(code: str, attribute_type: str, action: Action) -> None:
    assert resolve(code, attribute_type) is action


def test_attribute_types_follow_the_iod_in_hand() -> None:
    table = load_table()
    vl = table.attribute_types("1.2.840.10008.5.1.4.1.1.77.1.4")
    sc = table.attribute_types("1.2.840.10008.5.1.4.1.1.7")
    op = table.attribute_types("1.2.840.10008.5.1.4.1.1.77.1.5.1")
    # Referenced Image Sequence (X/Z/U*) is Type 1C in VL Photographic, 3 in Secondary Capture.
    assert vl["ReferencedImageSequence"] == "1C"
    assert "ReferencedImageSequence" not in sc
    # Content Date (Z/D) is Type 1 in Ophthalmic Photography, 2C in VL Photographic.
    assert op["ContentDate"] == "1"
    assert vl["ContentDate"] == "2C"
    assert table.attribute_types("1.2.3.4") == {}


def test_standard_attributes_know_the_image_and_not_retired_ones() -> None:
    standard = load_table().standard_attributes
    assert Tag("Rows") in standard
    assert Tag("PixelData") in standard
    assert Tag("ReferencedSOPClassUID") in standard
    assert Tag(0x00081040) in standard  # Institutional Department Name
    assert Tag(0x00280200) not in standard  # Image Location, retired
