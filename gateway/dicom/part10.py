"""Where the data set starts in a DICOM Part 10 file (PS3.10 7.1), without decoding anything.

Both ends of the gateway move encoded instances as bytes: the listener checks what pynetdicom
wrote before admitting it, and the forwarder sends what the pipeline wrote from just after its
file meta. Both files begin with the 128-byte preamble, ``DICM`` and the File Meta Information
Group Length (Explicit VR Little Endian: tag, ``UL``, 2-byte length 4, value), which says where
the file meta ends.
"""

from __future__ import annotations

import struct

#: Offset of the file meta: after the 128-byte preamble and the ``DICM`` prefix.
META_START = 132
#: Bytes of a file's start that :func:`data_set_offset` needs.
HEAD_LENGTH = META_START + 12
#: (0002,0000) File Meta Information Group Length, read little endian as one 32-bit tag.
_GROUP_LENGTH_TAG = 0x00000002


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
