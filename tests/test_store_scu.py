"""The forwarding SCU's own encoding, checked against pynetdicom's DIMSE implementation.

Its network behaviour (negotiation, fragmentation, aborts, TLS) is tested against real SCPs in
``tests/test_forward.py`` and against Orthanc in the integration tests.
"""

from __future__ import annotations

import struct
from io import BytesIO

import pytest
from pydicom.uid import VLPhotographicImageStorage, generate_uid
from pynetdicom.dimse_messages import C_STORE_RQ, C_STORE_RSP
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import encode

from gateway.deliver.store_scu import c_store_rq, command_fields


def _pynetdicom_command(primitive: C_STORE, message_class: type) -> bytes:
    message = message_class()
    message.primitive_to_message(primitive)
    return encode(message.command_set, True, True)


def test_c_store_request_matches_pynetdicom() -> None:
    instance = generate_uid()
    primitive = C_STORE()
    primitive.MessageID = 513
    primitive.AffectedSOPClassUID = VLPhotographicImageStorage
    primitive.AffectedSOPInstanceUID = instance
    primitive.Priority = 0
    # pynetdicom only marks a data set present when it has one to send.
    primitive.DataSet = BytesIO(b"present")
    expected = _pynetdicom_command(primitive, C_STORE_RQ)
    assert c_store_rq(513, VLPhotographicImageStorage, instance) == expected


def test_command_fields_reads_a_c_store_response() -> None:
    primitive = C_STORE()
    primitive.MessageIDBeingRespondedTo = 7
    primitive.AffectedSOPClassUID = VLPhotographicImageStorage
    primitive.AffectedSOPInstanceUID = generate_uid()
    primitive.Status = 0xA700
    fields = command_fields(_pynetdicom_command(primitive, C_STORE_RSP))
    assert struct.unpack("<H", fields[0x0100])[0] == 0x8001
    assert struct.unpack("<H", fields[0x0120])[0] == 7
    assert struct.unpack("<H", fields[0x0900])[0] == 0xA700


@pytest.mark.parametrize("encoded", [
    struct.pack("<HHI", 0x0008, 0x0016, 2) + b"1\0",  # a data set element, not a command
    struct.pack("<HHI", 0x0000, 0x0900, 8) + b"\0\0",  # longer than what follows
])
def test_command_fields_refuses_what_is_not_a_command(encoded: bytes) -> None:
    with pytest.raises(ConnectionError):
        command_fields(encoded)
