"""Test datasets for de-identification: a planted-value corpus and small photographic IODs.

``planted_instance`` puts a distinct, recognisable value into every attribute of Table E.1-1
(at the top level, and again inside a nested sequence), into private blocks (top level and
nested), overlay and curve groups, and the file meta, so that any value that survives
de-identification can be traced to the attribute it came from.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
from pydicom.datadict import dictionary_has_tag, dictionary_is_retired, dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    OphthalmicPhotography8BitImageStorage,
    SecondaryCaptureImageStorage,
    VLPhotographicImageStorage,
)

from gateway.deid.table import load_table
from pixel_instances import set_rgb_pixels

VL_PHOTOGRAPHIC = VLPhotographicImageStorage
SECONDARY_CAPTURE = SecondaryCaptureImageStorage
OPHTHALMIC_PHOTOGRAPHY_8BIT = OphthalmicPhotography8BitImageStorage
PLANT_ROOT = "1.2.826.0.1.3680043.9.7050"
PRIVATE_CREATOR = "PLANTED CREATOR"
SAFE_CREATOR = "SAFE CREATOR"
SECRET = b"0123456789abcdef0123456789abcdef"


def planted_value(vr: str, n: int) -> object | None:
    """A distinct value number ``n`` valid for ``vr`` (None when the VR is not planted)."""
    if vr == "PN":
        return f"Fam{n:04d}^Giv{n:04d}"
    if vr in ("LO", "SH", "LT", "ST", "UT", "UC", "AE", "CS"):
        return f"PLANT{n:04d}"
    if vr == "UR":
        return f"http://plant{n:04d}.example"
    if vr == "DA":
        return (date(1950, 1, 1) + timedelta(days=17 * n)).strftime("%Y%m%d")
    if vr == "DT":
        return (date(1950, 1, 2) + timedelta(days=17 * n)).strftime("%Y%m%d") + "101112"
    if vr == "TM":
        return f"{n % 24:02d}{(n * 7) % 60:02d}{(n * 13) % 60:02d}.{n:04d}"
    if vr == "UI":
        return f"{PLANT_ROOT}.{n}"
    if vr == "AS":
        return f"{n % 999:03d}Y"
    if vr == "DS":
        return f"7.{n:04d}"
    if vr == "IS":
        return str(900000 + n)
    if vr in ("US", "SS", "UL", "SL"):
        return n
    if vr in ("FL", "FD"):
        return float(n)
    if vr in ("OB", "OW", "UN"):
        return f"PLNT{n:04d}".encode()
    return None


def _planted_item(n: int) -> Dataset:
    item = Dataset()
    item.PatientName = planted_value("PN", n)
    item.InstitutionName = planted_value("LO", n + 1)
    item.ReferencedSOPInstanceUID = planted_value("UI", n + 2)
    item.ReferencedSOPClassUID = VL_PHOTOGRAPHIC
    item.StudyDate = planted_value("DA", n + 3)
    block = item.private_block(0x0011, PRIVATE_CREATOR, create=True)
    block.add_new(0x01, "LO", planted_value("LO", n + 4))
    return item


def _plant_table(ds: Dataset, n: int, *, sequences: bool) -> None:
    """Plant a value numbered from ``n`` in every Table E.1-1 attribute pydicom can write."""
    for tag in sorted(load_table().rows):
        group = tag >> 16
        if group in (0x0000, 0x0002) or not dictionary_has_tag(tag) or dictionary_is_retired(tag):
            continue
        vr = dictionary_VR(tag).split(" or ")[0]
        n += 10
        if vr == "SQ":
            if sequences:
                ds.add(DataElement(tag, vr, [_planted_item(n)]))
            continue
        value = planted_value(vr, n)
        if value is not None:
            ds.add(DataElement(tag, vr, value))


def planted_instance(sop_class_uid: str = VL_PHOTOGRAPHIC) -> Dataset:
    """A dataset with a planted value in every Table E.1-1 attribute pydicom can write, at
    the top level, inside an item of every table sequence, and all over again inside a
    standard sequence the table keeps (Contributing Equipment Sequence)."""
    ds = Dataset()
    _plant_table(ds, 0, sequences=True)
    contributing = Dataset()
    _plant_table(contributing, 10000, sequences=False)
    ds.ContributingEquipmentSequence = [contributing]
    # The identity and image of a photographic instance.
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = f"{PLANT_ROOT}.1.1"
    ds.StudyInstanceUID = f"{PLANT_ROOT}.1.2"
    ds.SeriesInstanceUID = f"{PLANT_ROOT}.1.3"
    ds.PatientName = "Plantfam^Plantgiven^Plantmid"
    ds.PatientID = "PLANTED-PID-77"
    ds.PatientBirthDate = "19610203"
    ds.StudyDate = "20240105"
    ds.StudyDescription = "Eyelids of Planted before surgery"
    ds.Modality = "XC"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    _add_pixels(ds, 8, 8)
    # Private groups: an unknown creator and a safe one, top level and nested.
    block = ds.private_block(0x0009, PRIVATE_CREATOR, create=True)
    block.add_new(0x10, "LO", "PLANT-PRIVATE-LO")
    block.add_new(0x11, "UI", f"{PLANT_ROOT}.9.1")
    block.add_new(0x12, "OB", b"PLANT-PRIVATE-OB")
    block.add_new(0x13, "SQ", [_planted_item(90000)])
    safe = ds.private_block(0x0019, SAFE_CREATOR, create=True)
    safe.add_new(0x10, "LO", "SAFE-PRIVATE-KEPT")
    safe.add_new(0x11, "LO", "PLANT-SAFE-BUT-NOT-LISTED")
    # Overlay and curve groups.
    ds.add_new(0x60000010, "US", 8)
    ds.add_new(0x60000011, "US", 8)
    ds.add_new(0x60003000, "OW", b"PLANT-OVERLAY-DT")
    ds.add_new(0x60004000, "LT", "PLANT-OVERLAY-COMMENT")
    ds.add_new(0x50003000, "OB", b"PLANT-CURVE-DATA")
    ds.file_meta = _file_meta(ds)
    ds.file_meta.SourceApplicationEntityTitle = "PLANTSRCAE"
    ds.file_meta.SendingApplicationEntityTitle = "PLANTSENDAE"
    ds.file_meta.PrivateInformationCreatorUID = f"{PLANT_ROOT}.9.9"
    ds.file_meta.PrivateInformation = b"PLANT-META-PRIVATE"
    return ds


def _add_pixels(ds: Dataset, rows: int, columns: int) -> None:
    """A small RGB ramp: real pixel data without a picture in it."""
    ramp = np.arange(rows * columns * 3, dtype=np.uint8).reshape(1, rows, columns, 3)
    set_rgb_pixels(ds, ramp)


def _file_meta(ds: Dataset) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return meta


def photographic_instance(
    sop_class_uid: str,
    *,
    instance: int = 1,
    patient_id: str = "PID-4711",
    rows: int = 16,
    columns: int = 16,
) -> Dataset:
    """A conformant-as-possible VL Photographic, Secondary Capture or Ophthalmic Photography
    instance of a series, with the identifying attributes a camera typically writes."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.InstanceCreationDate = "20240105"
    ds.InstanceCreationTime = "101500"
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = f"{PLANT_ROOT}.2.{instance}"
    ds.StudyDate = "20240105"
    ds.SeriesDate = "20240105"
    ds.ContentDate = "20240105"
    ds.StudyTime = "101500"
    ds.SeriesTime = "101500"
    ds.ContentTime = "1015" + f"{instance:02d}"
    ds.AccessionNumber = "ACC-0815"
    ds.Modality = "OP" if sop_class_uid == OPHTHALMIC_PHOTOGRAPHY_8BIT else "XC"
    ds.Manufacturer = "Camera Corp"
    ds.InstitutionName = "St Elsewhere Eye Clinic"
    ds.InstitutionAddress = "1 Long Road, Springfield"
    ds.ReferringPhysicianName = "Kildare^James"
    ds.StationName = "PHOTO-3"
    ds.StudyDescription = "External eye photography"
    ds.SeriesDescription = "Face, primary gaze"
    ds.OperatorsName = "Nurse^Ratched"
    ds.ManufacturerModelName = "EyeCam 2"
    ds.PatientName = "Doe^Jane"
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19610203"
    ds.PatientSex = "F"
    ds.PatientAge = "062Y"
    ds.DeviceSerialNumber = "SN-998877"
    ds.SoftwareVersions = "1.0"
    ds.StudyInstanceUID = f"{PLANT_ROOT}.3.1"
    ds.SeriesInstanceUID = f"{PLANT_ROOT}.3.2"
    ds.StudyID = "S-42"
    ds.SeriesNumber = 1
    ds.InstanceNumber = instance
    ds.PatientOrientation = ""
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    if sop_class_uid != OPHTHALMIC_PHOTOGRAPHY_8BIT:
        ds.Laterality = "R"
    if sop_class_uid == SECONDARY_CAPTURE:
        ds.ConversionType = "DI"
    else:
        ds.AcquisitionContextSequence = []
        ds.AcquisitionDateTime = "20240105101500"
    if sop_class_uid == OPHTHALMIC_PHOTOGRAPHY_8BIT:
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
        ds.ImageLaterality = "R"
        ds.AcquisitionDateTime = "20240105101500"
        ds.AnatomicRegionSequence = [_code("81745001", "SCT", "Eye")]
        ds.PupilDilated = "NO"
        ds.DetectorType = "CCD"
        ds.AcquisitionDeviceTypeCodeSequence = [_code("409898007", "SCT", "Fundus Camera")]
        ds.IlluminationTypeCodeSequence = []
        ds.LightPathFilterTypeStackCodeSequence = []
        ds.ImagePathFilterTypeStackCodeSequence = []
        ds.LensesCodeSequence = []
        ds.RefractiveStateSequence = []
        ds.EmmetropicMagnification = None
        ds.IntraOcularPressure = None
        ds.HorizontalFieldOfView = None
        ds.PixelSpacing = [0.01, 0.01]
        ds.PatientEyeMovementCommanded = "NO"
        ds.NumberOfFrames = 1
        ds.FrameIncrementPointer = 0x00181063
        ds.FrameTime = 0
        ds.SynchronizationFrameOfReferenceUID = f"{PLANT_ROOT}.3.4"
        ds.SynchronizationTrigger = "NO TRIGGER"
        ds.AcquisitionTimeSynchronized = "N"
    if instance > 1:
        reference = Dataset()
        reference.ReferencedSOPClassUID = sop_class_uid
        reference.ReferencedSOPInstanceUID = f"{PLANT_ROOT}.2.{instance - 1}"
        reference.PurposeOfReferenceCodeSequence = [
            _code("121329", "DCM", "Source image for image processing operation")
        ]
        ds.ReferencedImageSequence = [reference]
        ds.FrameOfReferenceUID = f"{PLANT_ROOT}.3.3"
    _add_pixels(ds, rows, columns)
    ds.file_meta = _file_meta(ds)
    return ds


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item
