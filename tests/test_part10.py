"""Finding the data set of a Part 10 file and its SOP class and instance, checked against what pydicom writes."""

from __future__ import annotations

import time
import zlib
from io import BytesIO
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.filereader import read_dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from gateway.dicom.part10 import HEAD_LENGTH, data_set_offset, sop_uids_of
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


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian,
                                    DeflatedExplicitVRLittleEndian])
def test_sop_uids_are_read_from_the_leading_elements(tmp_path: Path, syntax: str) -> None:
    ds = photo_instance(resized(photo("camera"), 1024))
    ds.file_meta.TransferSyntaxUID = syntax
    path = tmp_path / "instance.dcm"
    ds.save_as(path, enforce_file_format=True)
    assert sop_uids_of(path, syntax) == (ds.SOPClassUID, ds.SOPInstanceUID)


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom guesses at the random bytes
def test_no_sop_uids_in_bytes_that_are_not_a_data_set(tmp_path: Path) -> None:
    buffer = BytesIO()
    photo_instance(resized(photo("camera"), 1024)).save_as(buffer, enforce_file_format=True)
    head = buffer.getvalue()
    start = data_set_offset(head[:HEAD_LENGTH])
    assert start is not None
    path = tmp_path / "instance.dcm"
    path.write_bytes(head[:start] + b"\x08\x00\x08\x00CS\xff\xff" + b"A" * 64)  # length past the end
    assert sop_uids_of(path, ExplicitVRLittleEndian) == (None, None)
    path.write_bytes(head[:start] + bytes(range(256)) * 4)
    assert sop_uids_of(path, ExplicitVRLittleEndian) == (None, None)
    assert sop_uids_of(path, DeflatedExplicitVRLittleEndian) == (None, None)
    path.write_bytes(b"not DICOM at all")
    assert sop_uids_of(path, ExplicitVRLittleEndian) == (None, None)


@pytest.mark.filterwarnings("ignore::UserWarning")  # the inflated zeros read as a data set
def test_a_deflate_bomb_is_inflated_only_as_far_as_the_leading_elements(tmp_path: Path) -> None:
    buffer = BytesIO()
    photo_instance(resized(photo("camera"), 1024)).save_as(buffer, enforce_file_format=True)
    head = buffer.getvalue()
    start = data_set_offset(head[:HEAD_LENGTH])
    assert start is not None
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    bomb = b"".join(deflater.compress(bytes(1 << 20)) for _ in range(64)) + deflater.flush()
    path = tmp_path / "bomb.dcm"
    path.write_bytes(head[:start] + bomb)
    began = time.perf_counter()
    assert sop_uids_of(path, DeflatedExplicitVRLittleEndian) == (None, None)
    assert time.perf_counter() - began < 1
