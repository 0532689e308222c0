"""Photographic DICOM instances for tests, built from photos that ship inside installed packages.

Every instance carries recognisable identifying attributes (names, IDs, dates, UIDs) so that
tests can check they never leave the gateway.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import matplotlib
import numpy as np
import skimage
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ExplicitVRLittleEndian,
    OphthalmicPhotography8BitImageStorage,
    SecondaryCaptureImageStorage,
    VLPhotographicImageStorage,
    generate_uid,
)

from pixel_instances import set_rgb_pixels

PATIENT_NAME = "Hopper^Grace^Brewster"
PATIENT_ID = "PID-0451-HOPPER"


def photo(name: str) -> np.ndarray:
    """An RGB photo shipped in an installed package: grace_hopper, astronaut, camera or retina."""
    if name == "grace_hopper":
        path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    else:
        suffix = ".jpg" if name == "retina" else ".png"
        path = Path(skimage.__file__).parent / "data" / f"{name}{suffix}"
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, path
    return np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))


def resized(image: np.ndarray, pixels: int) -> np.ndarray:
    """The image scaled (aspect kept) to about ``pixels`` pixels, e.g. 1_000_000 for 1 MP."""
    scale = (pixels / (image.shape[0] * image.shape[1])) ** 0.5
    size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
    return np.ascontiguousarray(cv2.resize(image, size, interpolation=cv2.INTER_LINEAR))


def photo_instance(image: np.ndarray, *, sop_class_uid: str = VLPhotographicImageStorage,
                   patient_name: str = PATIENT_NAME, patient_id: str = PATIENT_ID,
                   sop_instance_uid: str | None = None, study_uid: str | None = None,
                   modality: str | None = None) -> Dataset:
    """An uncompressed (Explicit VR Little Endian) RGB photographic instance with PHI."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class_uid
    ds.file_meta.MediaStorageSOPInstanceUID = sop_instance_uid or generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
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


def write(ds: Dataset, path: Path) -> Path:
    """Write the instance as a DICOM file (with preamble and file meta)."""
    ds.save_as(path, enforce_file_format=True)
    return path
