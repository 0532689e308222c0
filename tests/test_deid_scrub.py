"""scrub(): the Basic Profile, its options and overrides on real pydicom datasets."""

from __future__ import annotations

import logging

import pytest
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pydicom.uid import OphthalmicPhotography8BitImageStorage, SecondaryCaptureImageStorage, VLPhotographicImageStorage

from gateway.audit.phi import find_leaks, identifying_values
from gateway.deid.options import Option
from gateway.deid.plan import compile_plan
from gateway.deid.pseudonym import Pseudonymizer
from gateway.deid.scrub import scrub
from gateway.deid.settings import DeidSettings
from gateway.errors import DeidentificationError
from tests.support.corpus import PRIVATE_CREATOR, SAFE_CREATOR, planted_instance
from tests.support.instances import part10_bytes, photographic_instance
from tests.support.keys import SECRET


def _scrub(ds: Dataset, pixels_masked: bool = False, **settings: object) -> Dataset:
    return scrub(ds, DeidSettings.model_validate(settings), SECRET, pixels_masked=pixels_masked)


def _codes(ds: Dataset) -> set[str]:
    return {item.CodeValue for item in ds.DeidentificationMethodCodeSequence}


# -- the Basic Profile ------------------------------------------------------------------------


def test_no_planted_value_survives_the_default_profile() -> None:
    original = planted_instance()
    out = _scrub(original)
    assert find_leaks(original, out) == []
    # ...and the check would have seen them: every planted attribute leaks into the original.
    planted = {value.attribute for value in identifying_values(original)}
    assert len(planted) > 700
    assert {leak.attribute for leak in find_leaks(original, original)} == planted


def test_written_output_is_readable_and_leak_free_in_its_bytes() -> None:
    original = planted_instance()
    data = part10_bytes(_scrub(original))
    for marker in (b"PLANT", b"Fam0", b"Plantfam", b"PLANTED-PID", b"1.2.826.0.1.3680043.9.7050."):
        assert marker not in data


def test_private_overlay_and_curve_groups_are_removed() -> None:
    out = _scrub(planted_instance())
    assert not [e for e in out.iterall() if e.tag.is_private]
    assert not [e for e in out if e.tag.group >> 8 in (0x50, 0x60)]


def test_file_meta_is_rebuilt_and_follows_the_remapped_sop_instance_uid() -> None:
    original = planted_instance()
    out = _scrub(original)
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
    assert out.SOPInstanceUID == Pseudonymizer(SECRET).uid(original.SOPInstanceUID)
    assert out.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    for keyword in ("SourceApplicationEntityTitle", "SendingApplicationEntityTitle", "PrivateInformation"):
        assert keyword not in out.file_meta


def test_patient_gets_keyed_pseudonyms_and_nothing_else() -> None:
    out = _scrub(photographic_instance(VLPhotographicImageStorage))
    names = Pseudonymizer(SECRET)
    assert out.PatientID == names.patient_id("PID-4711")
    assert out.PatientName == names.patient_name("PID-4711")
    assert out.PatientBirthDate == "" and out.PatientSex == ""
    assert "PatientAge" not in out and "InstitutionName" not in out and "OperatorsName" not in out


def test_without_pseudonyms_patient_name_and_id_are_emptied() -> None:
    out = _scrub(photographic_instance(VLPhotographicImageStorage), patient_pseudonyms=False)
    assert out.PatientID == "" and out.PatientName == ""


def test_the_input_is_not_modified() -> None:
    original = planted_instance()
    before = part10_bytes(original)
    out = _scrub(original)
    out.PatientName = "Changed^Afterwards"
    out.ReferencedImageSequence[0].ReferencedSOPClassUID = "1.2.3"
    out.ImageType.append("DERIVED")
    assert part10_bytes(original) == before


def test_output_is_byte_identical_across_runs() -> None:
    assert part10_bytes(_scrub(planted_instance())) == part10_bytes(_scrub(planted_instance()))


def test_uids_are_remapped_consistently_at_every_depth() -> None:
    first = photographic_instance(VLPhotographicImageStorage, instance=1)
    second = photographic_instance(VLPhotographicImageStorage, instance=2)
    out_first, out_second = _scrub(first), _scrub(second)
    assert out_second.ReferencedImageSequence[0].ReferencedSOPInstanceUID == out_first.SOPInstanceUID
    assert out_second.StudyInstanceUID == out_first.StudyInstanceUID != first.StudyInstanceUID
    assert out_second.ReferencedImageSequence[0].ReferencedSOPClassUID == VLPhotographicImageStorage


def test_uid_root_is_configurable() -> None:
    out = _scrub(photographic_instance(VLPhotographicImageStorage), uid_root="1.2.826.0.1.3680043.10.999")
    assert out.SOPInstanceUID.startswith("1.2.826.0.1.3680043.10.999.")
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID


def test_short_secret_is_a_deidentification_error() -> None:
    with pytest.raises(DeidentificationError):
        scrub(photographic_instance(VLPhotographicImageStorage), DeidSettings(), b"short", pixels_masked=False)


# -- compound actions per IOD -----------------------------------------------------------------


def test_referenced_image_sequence_follows_its_type_in_the_iod() -> None:
    # X/Z/U*: Type 1C in VL Photographic (kept, UIDs remapped), Type 3 in Secondary Capture.
    vl = _scrub(photographic_instance(VLPhotographicImageStorage, instance=2))
    sc = _scrub(photographic_instance(SecondaryCaptureImageStorage, instance=2))
    assert len(vl.ReferencedImageSequence) == 1
    assert "ReferencedImageSequence" not in sc


def test_content_date_follows_its_type_in_the_iod() -> None:
    # Z/D: Type 1 in Ophthalmic Photography (dummy), 2C in VL Photographic (empty).
    op = _scrub(photographic_instance(OphthalmicPhotography8BitImageStorage))
    vl = _scrub(photographic_instance(VLPhotographicImageStorage))
    assert op.ContentDate == "19000101"
    assert vl.ContentDate == ""
    # X/Z/D Device Serial Number is Type 3 everywhere here: removed.
    assert "DeviceSerialNumber" not in op and "DeviceSerialNumber" not in vl


def test_dummy_sequences_keep_structure_but_not_text() -> None:
    ds = photographic_instance(VLPhotographicImageStorage)
    item = Dataset()
    item.ValueType = "TEXT"
    item.TextValue = "Seen by Dr Kildare on 5 Jan"
    item.ConceptNameCodeSequence = [Dataset()]
    item.ConceptNameCodeSequence[0].CodeMeaning = "Finding"
    ds.ContentSequence = [item]
    out = _scrub(ds)
    assert out.ContentSequence[0].ValueType == "TEXT"
    assert out.ContentSequence[0].TextValue == "ANONYMIZED"
    assert out.ContentSequence[0].ConceptNameCodeSequence[0].CodeMeaning == "ANONYMIZED"


# -- marking ----------------------------------------------------------------------------------


def test_marking_names_dmask_profile_edition_and_options() -> None:
    ds = photographic_instance(VLPhotographicImageStorage)
    settings = DeidSettings(options=(Option.CLEAN_DESCRIPTORS,))
    out = scrub(ds, settings, SECRET, pixels_masked=True, profile_name="face-photos")
    assert out.PatientIdentityRemoved == "YES"
    method = list(out.DeidentificationMethod)
    assert method[0].startswith("dmask ") and "PS3.15 Table E.1-1 2024b" in method
    assert "profile face-photos" in method
    assert all(len(value) <= 64 for value in method)
    assert _codes(out) == {"113100", "113105", "113102"}
    assert {i.CodingSchemeDesignator for i in out.DeidentificationMethodCodeSequence} == {"DCM"}
    assert out.LongitudinalTemporalInformationModified == "REMOVED"


def test_recognizable_visual_features_is_no_only_for_masked_pixels() -> None:
    ds = photographic_instance(VLPhotographicImageStorage)
    assert _scrub(ds, pixels_masked=True).RecognizableVisualFeatures == "NO"
    assert "RecognizableVisualFeatures" not in _scrub(ds)
    ds.RecognizableVisualFeatures = "NO"  # the modality's claim is not passed on
    unmasked = _scrub(ds)
    assert unmasked.RecognizableVisualFeatures == "YES"
    assert "113102" not in _codes(unmasked)


def test_burned_in_annotation_is_carried_or_assumed() -> None:
    ds = photographic_instance(VLPhotographicImageStorage)
    assert _scrub(ds).BurnedInAnnotation == "NO"
    del ds.BurnedInAnnotation
    assert _scrub(ds).BurnedInAnnotation == "YES"


# -- overrides and unknown attributes ---------------------------------------------------------


def test_overrides_keep_remove_empty_and_replace() -> None:
    ds = photographic_instance(VLPhotographicImageStorage)
    out = _scrub(
        ds,
        keep=["StudyDescription", "InstitutionName"],
        remove=["Manufacturer", "PatientID"],
        empty=["SeriesDescription"],
        replace={"StationName": "CAMERA-A", "0008,0090": "Referrer^Unknown"},
    )
    assert out.StudyDescription == ds.StudyDescription
    assert out.InstitutionName == ds.InstitutionName
    assert "Manufacturer" not in out and "PatientID" not in out
    assert out.SeriesDescription == ""
    assert out.StationName == "CAMERA-A" and out.ReferringPhysicianName == "Referrer^Unknown"
    assert out.PatientName.family_name == "DMASK"  # the other pseudonym still applies


def test_unknown_public_attributes_are_removed_unless_kept(caplog: pytest.LogCaptureFixture) -> None:
    ds = photographic_instance(VLPhotographicImageStorage)
    ds.add_new(0x00280200, "US", 1)  # Image Location: retired, in no IOD, not in the table
    ds.add_new(0x00091002, "LO", "no creator")  # private without creator
    assert Tag(0x00280200) not in _scrub(ds)
    with caplog.at_level(logging.WARNING):
        kept = _scrub(ds, unknown_public="keep")
    assert kept[0x00280200].value == 1
    assert "(0028,0200)" in caplog.text and "no creator" not in caplog.text
    assert Tag(0x00091002) not in kept


# -- options ----------------------------------------------------------------------------------


@pytest.mark.parametrize("option", [o for o in Option if o is not Option.RETAIN_SAFE_PRIVATE])
def test_each_option_still_removes_everything_it_does_not_retain(option: Option) -> None:
    original = planted_instance()
    settings = DeidSettings(options=(option,))
    out = scrub(original, settings, SECRET, pixels_masked=False)
    assert find_leaks(original, out, compile_plan(settings)) == []
    assert option.code.value in _codes(out)
    # Names, IDs and private data are never retained by any option.
    data = part10_bytes(out)
    for marker in (b"Plantfam", b"PLANTED-PID", b"PLANT-PRIVATE", b"PLANT-OVERLAY", b"PLANTSRCAE"):
        assert marker not in data


def test_retain_uids_keeps_uids() -> None:
    ds = photographic_instance(VLPhotographicImageStorage, instance=2)
    out = _scrub(ds, options=["retain_uids"])
    assert out.SOPInstanceUID == ds.SOPInstanceUID == out.file_meta.MediaStorageSOPInstanceUID
    assert out.StudyInstanceUID == ds.StudyInstanceUID
    referenced = out.ReferencedImageSequence[0].ReferencedSOPInstanceUID
    assert referenced == ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID
    assert out.PatientID != ds.PatientID


def test_retain_device_identity_keeps_devices_not_people() -> None:
    ds = photographic_instance(VLPhotographicImageStorage)
    out = _scrub(ds, options=["retain_device_identity"])
    assert out.DeviceSerialNumber == "SN-998877" and out.StationName == "PHOTO-3"
    assert "OperatorsName" not in out and "InstitutionName" not in out


def test_retain_institution_identity_keeps_institution_not_people() -> None:
    ds = photographic_instance(VLPhotographicImageStorage)
    out = _scrub(ds, options=["retain_institution_identity"])
    assert out.InstitutionName == ds.InstitutionName
    assert out.InstitutionAddress == ds.InstitutionAddress
    assert "OperatorsName" not in out and out.ReferringPhysicianName == ""


def test_retain_patient_characteristics_keeps_sex_and_age_not_birth_date() -> None:
    ds = photographic_instance(VLPhotographicImageStorage)
    ds.PatientWeight = 71.5
    out = _scrub(ds, options=["retain_patient_characteristics"])
    assert out.PatientSex == "F" and out.PatientAge == "062Y" and out.PatientWeight == 71.5
    assert out.PatientBirthDate == ""
    del ds.PatientAge  # the age survives birth-date removal: computed from the original dates
    assert _scrub(ds, options=["retain_patient_characteristics"]).PatientAge == "062Y"


def test_retain_full_dates_keeps_dates_not_birth_date() -> None:
    ds = photographic_instance(VLPhotographicImageStorage)
    out = _scrub(ds, options=["retain_longitudinal_full_dates"])
    assert out.StudyDate == ds.StudyDate and out.ContentTime == ds.ContentTime
    assert out.AcquisitionDateTime == ds.AcquisitionDateTime
    assert out.PatientBirthDate == ""
    assert out.LongitudinalTemporalInformationModified == "UNMODIFIED"


def test_modified_dates_shift_every_date_of_a_patient_by_the_same_days() -> None:
    ds = photographic_instance(VLPhotographicImageStorage, instance=2)
    ds.ReferencedImageSequence[0].StudyDate = "20231231"  # a nested date of the same patient
    out = _scrub(ds, options=["retain_longitudinal_modified_dates"], max_date_shift_days=30)
    days = Pseudonymizer(SECRET).date_shift_days("PID-4711", 30)
    from datetime import date, timedelta

    expected = (date(2024, 1, 5) - timedelta(days=days)).strftime("%Y%m%d")
    assert out.StudyDate == out.SeriesDate == out.ContentDate == expected
    assert out.AcquisitionDateTime == expected + "101500"
    assert out.StudyTime == ds.StudyTime  # whole days: times are unchanged
    nested = (date(2023, 12, 31) - timedelta(days=days)).strftime("%Y%m%d")
    assert out.ReferencedImageSequence[0].StudyDate == nested
    assert out.PatientBirthDate == ""
    assert out.LongitudinalTemporalInformationModified == "MODIFIED"
    other = _scrub(
        photographic_instance(VLPhotographicImageStorage, patient_id="PID-0001"),
        options=["retain_longitudinal_modified_dates"],
    )
    assert Pseudonymizer(SECRET).date_shift_days("PID-0001", 730) == (
        date(2024, 1, 5) - date.fromisoformat(f"{other.StudyDate[:4]}-{other.StudyDate[4:6]}-{other.StudyDate[6:]}")
    ).days


def test_clean_descriptors_keeps_descriptions_without_identifiers() -> None:
    ds = photographic_instance(VLPhotographicImageStorage)
    ds.StudyDescription = "Ptosis review of Jane DOE 05.01.2024 tel 0207946000"
    ds.ImageComments = "Right eye, ref PID-4711"
    out = _scrub(ds, options=["clean_descriptors"])
    assert out.StudyDescription == "Ptosis review of **** *** ********** tel **********"
    assert out.ImageComments == "Right eye, ref ********"
    assert out.SeriesDescription == ds.SeriesDescription
    assert "OperatorsName" not in out


def test_clean_structured_content_keeps_content_with_clean_text() -> None:
    ds = photographic_instance(VLPhotographicImageStorage)
    item = Dataset()
    item.ValueType = "TEXT"
    item.TextValue = "Left ptosis, Doe family history"
    ds.ContentSequence = [item]
    out = _scrub(ds, options=["clean_structured_content"])
    assert out.ContentSequence[0].TextValue == "Left ptosis, *** family history"


def test_clean_graphics_keeps_annotations_cleaned_and_still_removes_overlays() -> None:
    ds = planted_instance()
    annotation = Dataset()
    text = Dataset()
    text.UnformattedTextValue = "Plantfam left lid"
    annotation.TextObjectSequence = [text]
    ds.GraphicAnnotationSequence = [annotation]
    out = _scrub(ds, options=["clean_graphics"])
    assert out.GraphicAnnotationSequence[0].TextObjectSequence[0].UnformattedTextValue == "******** left lid"
    assert not [e for e in out if e.tag.group == 0x6000]


def test_retain_safe_private_keeps_only_allow_listed_elements() -> None:
    original = planted_instance()
    settings = DeidSettings.model_validate(
        {
            "options": ["retain_safe_private"],
            "private_allow_list": [{"group": "0019", "creator": SAFE_CREATOR, "element": "10"}],
        }
    )
    out = scrub(original, settings, SECRET, pixels_masked=False)
    block = out.private_block(0x0019, SAFE_CREATOR)
    assert block[0x10].value == "SAFE-PRIVATE-KEPT"
    assert 0x11 not in block
    with pytest.raises(KeyError):
        out.private_block(0x0009, PRIVATE_CREATOR)
    assert find_leaks(original, out, compile_plan(settings)) == []
    assert "113111" in _codes(out)


def test_clean_descriptors_blanks_two_letter_family_names() -> None:
    ds = photographic_instance(VLPhotographicImageStorage)
    ds.PatientName = "Li^Wei"
    ds.StudyDescription = "Mr Li, lid lag"
    out = _scrub(ds, options=["clean_descriptors"])
    assert out.StudyDescription == "Mr **, lid lag"
