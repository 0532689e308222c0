"""Read a DICOM file as archives hold them: with or without the Part 10 preamble and file meta."""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from gateway.errors import InvalidDataset


def read_instance(path: Path) -> Dataset:
    """Read a DICOM file, with or without preamble and file meta.

    Raises
    ------
    InvalidDataset
        If the file is not a DICOM dataset.
    """
    try:
        ds = pydicom.dcmread(path, force=True)
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise InvalidDataset(f"not a readable DICOM file ({type(exc).__name__})") from None
    if "SOPClassUID" not in ds:
        raise InvalidDataset("no SOP Class UID: not a DICOM instance")
    meta = getattr(ds, "file_meta", None) or FileMetaDataset()
    if "TransferSyntaxUID" not in meta:
        implicit, little = ds.original_encoding
        meta.TransferSyntaxUID = UID(
            ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
        )
        ds.file_meta = meta
    return ds
