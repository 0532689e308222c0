"""Where the data set starts in a DICOM Part 10 file (PS3.10 7.1), without decoding the data set.

Both ends of the gateway move encoded instances as bytes: the listener checks what pynetdicom
wrote before admitting it, and the forwarder sends what the pipeline wrote from just after its
file meta. Both files begin with the 128-byte preamble, ``DICM`` and the File Meta Information
Group Length (Explicit VR Little Endian: tag, ``UL``, 2-byte length 4, value), which says where
the file meta ends.
"""

from __future__ import annotations

import struct
import zlib
from io import BytesIO
from pathlib import Path
from typing import BinaryIO

from pydicom.filereader import read_dataset
from pydicom.tag import BaseTag
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

#: Offset of the file meta: after the 128-byte preamble and the ``DICM`` prefix.
META_START = 132
#: Bytes of a file's start that :func:`data_set_offset` needs.
HEAD_LENGTH = META_START + 12
#: (0002,0000) File Meta Information Group Length, read little endian as one 32-bit tag.
_GROUP_LENGTH_TAG = 0x00000002
#: (0008,0016) SOP Class UID, as pydicom orders tags (group in the high 16 bits).
_SOP_CLASS_UID_TAG = 0x00080016
#: (0008,0018) SOP Instance UID, the element right after the SOP Class UID.
_SOP_INSTANCE_UID_TAG = 0x00080018
#: Bytes of a data set's start that :func:`sop_uids_of` reads: (0008,0016) and (0008,0018) come
#: after only a few short attributes (character set, image type, creation date and time, creator
#: UID).
LEADING_BYTES = 64 * 1024


def data_set_offset(head: bytes) -> int | None:
    """Offset of the data set in a file starting with ``head`` (at least ``HEAD_LENGTH`` bytes).

    None when ``head`` is not the start of a Part 10 file whose file meta opens with its group
    length.
    """
    if len(head) < HEAD_LENGTH or head[128:META_START] != b"DICM":
        return None
    tag, vr, length, meta_length = struct.unpack_from("<I2sHI", head, META_START)
    if (tag, vr, length) != (_GROUP_LENGTH_TAG, b"UL", 4):
        return None
    return HEAD_LENGTH + meta_length



def _leading_bytes(handle: BinaryIO, deflated: bool) -> bytes:
    """Up to :data:`LEADING_BYTES` of the data set from ``handle``'s position, inflated if deflated.

    A deflated data set is inflated only as far as needed, so a deflate bomb costs no more to
    look at than a plain data set.
    """
    if not deflated:
        return handle.read(LEADING_BYTES)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate (PS3.5 A.5)
    inflated = bytearray()
    while len(inflated) < LEADING_BYTES and not inflater.eof:
        chunk = inflater.unconsumed_tail or handle.read(16 * 1024)
        if not chunk:
            break
        inflated += inflater.decompress(chunk, LEADING_BYTES - len(inflated))
    return bytes(inflated)


def sop_uids_of(path: Path, transfer_syntax: str) -> tuple[str | None, str | None]:
    """The SOP Class UID (0008,0016) and SOP Instance UID (0008,0018) in the data set of a Part 10
    file, read from its first bytes.

    Only the elements up to (0008,0018) are parsed, from at most :data:`LEADING_BYTES` of the
    data set, whatever its size: the listener checks a received instance against its
    presentation context, and notes which instance it is for storage commitment, this way
    without decoding it. ``transfer_syntax`` is the one the data set is encoded in (the accepted
    context's). Each is None when the file is not Part 10, the leading elements do not parse or
    the element is not among them.
    """
    syntax = UID(transfer_syntax)
    with open(path, "rb") as handle:
        start = data_set_offset(handle.read(HEAD_LENGTH))
        if start is None:
            return None, None
        handle.seek(start)
        try:
            leading = _leading_bytes(handle, syntax == DeflatedExplicitVRLittleEndian)
        except zlib.error:
            return None, None
    try:
        elements = read_dataset(BytesIO(leading), syntax.is_implicit_VR, syntax.is_little_endian,
                                stop_when=lambda tag, _vr, _length: tag > _SOP_INSTANCE_UID_TAG)
        found = [elements.get(BaseTag(tag)) for tag in (_SOP_CLASS_UID_TAG, _SOP_INSTANCE_UID_TAG)]
        sop_class, sop_instance = (str(element.value).strip("\0 ") if element is not None
                                   else None for element in found)
        return sop_class, sop_instance
    except Exception:  # hostile bytes can fail pydicom in many ways; each means "not found"
        return None, None
