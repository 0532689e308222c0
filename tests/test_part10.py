"""Finding the data set of a Part 10 file, checked against what pydicom writes and reads."""

from __future__ import annotations

from io import BytesIO

from pydicom import dcmread
from pydicom.filereader import read_dataset

from gateway.dicom.part10 import HEAD_LENGTH, data_set_offset
from tests.support.instances import part10_bytes, photo_instance
from tests.support.photos import photo, resized


def test_offset_is_where_pydicom_finds_the_data_set() -> None:
    encoded = part10_bytes(photo_instance(resized(photo("camera"), 1024)))
    offset = data_set_offset(encoded[:HEAD_LENGTH])
    assert offset is not None
    tail = read_dataset(BytesIO(encoded[offset:]), is_implicit_VR=False, is_little_endian=True)
    assert tail.SOPInstanceUID == dcmread(BytesIO(encoded)).SOPInstanceUID


def test_not_a_part10_start_has_no_offset() -> None:
    assert data_set_offset(b"\0" * 128 + b"DICX" + b"\0" * 12) is None
    assert data_set_offset(b"\0" * 128 + b"DICM" + b"\x02\x00\x01\x00OB\0\0\0\0\0\0") is None
    assert data_set_offset(b"\0" * 128 + b"DICM") is None
