"""Read a DICOM file as archives hold them: with or without the Part 10 preamble and file meta.

Archives and older modalities keep files without the 128-byte preamble and the file meta group
(ACR-NEMA style: the data set from its first byte), which pydicom reads only with ``force``.
Such a file is still a storage SOP instance when it names its SOP Class UID and SOP Instance
UID; its transfer syntax is then the encoding pydicom found (Implicit or Explicit VR, little or
big endian). ``dmask deid`` scrubs the data set :func:`read_instance` returns; ``dmask mask``
hands the bytes of :func:`read_part10` to the pipeline's parse, as if the file had been
received, so both commands accept and refuse the same files.
"""

from __future__ import annotations

from io import BytesIO
from pathlib import Path
from typing import BinaryIO

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from gateway.dicom.part10 import HEAD_LENGTH, data_set_offset
from gateway.errors import InvalidDataset


def read_instance(source: Path | BinaryIO) -> Dataset:
    """Read a DICOM file, with or without preamble and file meta; the file meta is completed.

    Raises
    ------
    InvalidDataset
        If the file is not a DICOM data set, or names no SOP Class UID or SOP Instance UID.
    """
    try:
        ds = pydicom.dcmread(source, force=True)
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise InvalidDataset(f"not a readable DICOM file ({type(exc).__name__})") from None
    if "SOPClassUID" not in ds or "SOPInstanceUID" not in ds:
        raise InvalidDataset("no SOP Class UID or SOP Instance UID: not a DICOM instance")
    meta = getattr(ds, "file_meta", None) or FileMetaDataset()
    if "TransferSyntaxUID" not in meta:
        implicit, little = ds.original_encoding
        meta.TransferSyntaxUID = UID(
            ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
        )
    if "MediaStorageSOPClassUID" not in meta:
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
    if "MediaStorageSOPInstanceUID" not in meta:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta = meta
    return ds


def read_part10(path: Path) -> bytes:
    """The file as a DICOM Part 10 file: as it is when it has the preamble and file meta, else
    its data set written after a file meta made for it.

    Raises
    ------
    InvalidDataset
        As :func:`read_instance`, or when the data set cannot be written again.
    """
    data = path.read_bytes()
    if data_set_offset(data[:HEAD_LENGTH]) is not None:
        return data  # already Part 10: the pipeline's parse checks the rest
    ds = read_instance(BytesIO(data))
    buffer = BytesIO()
    try:
        ds.save_as(buffer, enforce_file_format=True)
    except (ValueError, TypeError, AttributeError, KeyError, OverflowError) as exc:
        raise InvalidDataset(f"the data set cannot be written as a Part 10 file ({type(exc).__name__})") from None
    return buffer.getvalue()
