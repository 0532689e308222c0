"""DICOM datasets for tests and benchmarks.

- :func:`photo_instance`: a photo (see ``photos``) as a photographic instance whose
  identifying attributes (names, IDs, dates, UIDs) are recognisable, so that a test can check
  they never leave the gateway; new UIDs every call.
- :func:`photographic_instance`: a VL Photographic, Secondary Capture or Ophthalmic
  Photography instance of a series, as conformant as possible, with what a camera writes;
  fixed UIDs under :data:`UID_ROOT`, for de-identification tests that compare values.
- :func:`rgb_instance`: only what the Image Pixel module needs, so that a pixel-layer test can
  change one attribute and see what the codec does.
- :func:`video_instance`: a Video Photographic instance encoded by the pixel layer.
- :func:`write_without_meta`: a file as ACR-NEMA-era archives keep them (no preamble, no file
  meta); :func:`pydicom_test_file`: a real file from pydicom's bundled test data.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Iterable
from itertools import chain
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    MPEG4HP41,
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRLittleEndian,
    OphthalmicPhotography8BitImageStorage,
    SecondaryCaptureImageStorage,
    VideoPhotographicImageStorage,
    VLPhotographicImageStorage,
    generate_uid,
)

from gateway.codec.pixels import encode_frames
from tests.support.pixels import ramp, set_rgb_pixels

PATIENT_NAME = "Hopper^Grace^Brewster"
PATIENT_ID = "PID-0451-HOPPER"
#: The root of the fixed UIDs of the test datasets (and of the planted corpus).
UID_ROOT = "1.2.826.0.1.3680043.9.7050"


def file_meta(ds: Dataset) -> FileMetaDataset:
    """File meta for `ds` in Explicit VR Little Endian, naming its SOP class and instance."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return meta


def photo_instance(image: np.ndarray, *, sop_class_uid: str = VLPhotographicImageStorage,
                   patient_name: str = PATIENT_NAME, patient_id: str = PATIENT_ID,
                   sop_instance_uid: str | None = None, study_uid: str | None = None,
                   modality: str | None = None) -> Dataset:
    """An uncompressed (Explicit VR Little Endian) RGB photographic instance with PHI."""
    ds = Dataset()
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_instance_uid or generate_uid()
    ds.file_meta = file_meta(ds)
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19061209"
    ds.PatientSex = "F"
    ds.StudyDate = "20240517"
    ds.StudyTime = "101500"
    ds.ContentDate = "20240517"
    ds.ContentTime = "101512"
    ds.AccessionNumber = "ACC777123"
    ds.InstitutionName = "Naval Eye Clinic Arlington"
    ds.ReferringPhysicianName = "Aiken^Howard"
    ds.StudyID = "S1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    default_modality = {SecondaryCaptureImageStorage: "OT", OphthalmicPhotography8BitImageStorage: "OP"}
    ds.Modality = modality or default_modality.get(sop_class_uid, "XC")
    if sop_class_uid == SecondaryCaptureImageStorage:
        ds.ConversionType = "DI"
    ds.Manufacturer = "dmask tests"
    ds.BurnedInAnnotation = "NO"
    set_rgb_pixels(ds, image[np.newaxis])
    return ds


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
    ds.SOPInstanceUID = f"{UID_ROOT}.2.{instance}"
    ds.StudyDate = "20240105"
    ds.SeriesDate = "20240105"
    ds.ContentDate = "20240105"
    ds.StudyTime = "101500"
    ds.SeriesTime = "101500"
    ds.ContentTime = "1015" + f"{instance:02d}"
    ds.AccessionNumber = "ACC-0815"
    ds.Modality = "OP" if sop_class_uid == OphthalmicPhotography8BitImageStorage else "XC"
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
    ds.StudyInstanceUID = f"{UID_ROOT}.3.1"
    ds.SeriesInstanceUID = f"{UID_ROOT}.3.2"
    ds.StudyID = "S-42"
    ds.SeriesNumber = 1
    ds.InstanceNumber = instance
    ds.PatientOrientation = ""
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    if sop_class_uid != OphthalmicPhotography8BitImageStorage:
        ds.Laterality = "R"
    if sop_class_uid == SecondaryCaptureImageStorage:
        ds.ConversionType = "DI"
    else:
        ds.AcquisitionContextSequence = []
        ds.AcquisitionDateTime = "20240105101500"
    if sop_class_uid == OphthalmicPhotography8BitImageStorage:
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
        ds.ImageLaterality = "R"
        ds.AcquisitionDateTime = "20240105101500"
        ds.AnatomicRegionSequence = [code("81745001", "SCT", "Eye")]
        ds.PupilDilated = "NO"
        ds.DetectorType = "CCD"
        ds.AcquisitionDeviceTypeCodeSequence = [code("409898007", "SCT", "Fundus Camera")]
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
        ds.SynchronizationFrameOfReferenceUID = f"{UID_ROOT}.3.4"
        ds.SynchronizationTrigger = "NO TRIGGER"
        ds.AcquisitionTimeSynchronized = "N"
    if instance > 1:
        reference = Dataset()
        reference.ReferencedSOPClassUID = sop_class_uid
        reference.ReferencedSOPInstanceUID = f"{UID_ROOT}.2.{instance - 1}"
        reference.PurposeOfReferenceCodeSequence = [
            code("121329", "DCM", "Source image for image processing operation")
        ]
        ds.ReferencedImageSequence = [reference]
        ds.FrameOfReferenceUID = f"{UID_ROOT}.3.3"
    set_rgb_pixels(ds, ramp(rows, columns))
    ds.file_meta = file_meta(ds)
    return ds


def code(value: str, scheme: str, meaning: str) -> Dataset:
    """A code sequence item (Code Value, Coding Scheme Designator, Code Meaning)."""
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def rgb_instance(frames: np.ndarray, sop_class: UID = VLPhotographicImageStorage) -> Dataset:
    """An Explicit VR Little Endian RGB instance holding `frames` (N x H x W x 3), no PHI."""
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta = file_meta(ds)
    ds.Modality = "XC"
    set_rgb_pixels(ds, frames)
    return ds


def video_instance(frames: Iterable[np.ndarray], frame_time: str, transfer_syntax: str = MPEG4HP41,
                   *, with_phi: bool = False) -> Dataset:
    """A Video Photographic instance of `frames` (H x W x 3, consumed one at a time) encoded
    in `transfer_syntax` by the pixel layer, as a receiver reads it from a Part 10 file.

    ``with_phi``: with the identifying attributes of :func:`photo_instance`; otherwise only
    those of :func:`rgb_instance`.
    """
    remaining = iter(frames)
    first = next(remaining)
    if with_phi:
        ds = photo_instance(first, sop_class_uid=VideoPhotographicImageStorage)
    else:
        ds = rgb_instance(first[np.newaxis], VideoPhotographicImageStorage)
    ds.FrameTime = frame_time
    encode_frames(ds, chain([first], remaining), transfer_syntax)
    return written_and_read(ds)


def part10_bytes(ds: Dataset) -> bytes:
    """The instance as a DICOM file (with preamble and file meta), in memory."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def written_and_read(ds: Dataset) -> Dataset:
    """`ds` after a trip through a Part 10 file, as a receiver would see it."""
    return pydicom.dcmread(io.BytesIO(part10_bytes(ds)))


def write(ds: Dataset, path: Path) -> Path:
    """Write the instance as a DICOM file (with preamble and file meta)."""
    ds.save_as(path, enforce_file_format=True)
    return path


def write_without_meta(ds: Dataset, path: Path) -> Path:
    """Write the data set alone, as ACR-NEMA-era archives keep files: Implicit VR Little
    Endian, no preamble, no file meta."""
    bare = copy.deepcopy(ds)
    del bare.file_meta
    bare.preamble = None
    bare.save_as(path, implicit_vr=True, little_endian=True)
    return path


def pydicom_test_file(name: str) -> Path:
    """A file of the test data that ships inside pydicom (never one it would download)."""
    path = get_testdata_file(name, download=False)
    assert isinstance(path, str), f"{name} is not in pydicom's bundled test data"
    return Path(path)
