"""A DICOM caller built from raw PDU bytes, to send what no well-behaved library would.

The encoders follow PS3.8 9.3 (A-ASSOCIATE-RQ, P-DATA-TF, A-RELEASE-RQ, A-ABORT) and PS3.7 9.3.1.1
(the C-STORE-RQ command set), so that a test can start from valid bytes and change one thing.
Every socket goes to 127.0.0.1 with a timeout (from another loopback address when a test needs a
second host); reads are bounded.
"""

from __future__ import annotations

import socket
import struct
from io import BytesIO

from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom.dsutils import encode

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
VERIFICATION = "1.2.840.10008.1.1"
A_ASSOCIATE_AC, A_ASSOCIATE_RJ, P_DATA_TF, A_RELEASE_RP, A_ABORT = 0x02, 0x03, 0x04, 0x06, 0x07
RELEASE_RQ = struct.pack(">BBLL", 0x05, 0, 4, 0)
ABORT_RQ = struct.pack(">BBLBBBB", 0x07, 0, 4, 0, 0, 0, 0)
#: Longest PDU a test reads back (the gateway's answers are small).
_MAX_REPLY = 1 << 20


def _item(item_type: int, value: bytes) -> bytes:
    return struct.pack(">BBH", item_type, 0, len(value)) + value


def _uid(value: str) -> bytes:
    return value.encode("ascii")


def associate_rq(calling: str = "CAMERA1", called: str = "DMASK",
                 contexts: list[tuple[int, str, list[str]]] | None = None,
                 max_length: int = 16384) -> bytes:
    """An A-ASSOCIATE-RQ PDU: (context id, abstract syntax, transfer syntaxes) per context."""
    contexts = contexts or [(1, VERIFICATION, ["1.2.840.10008.1.2"])]
    items = _item(0x10, _uid(APPLICATION_CONTEXT))
    for context_id, abstract, syntaxes in contexts:
        sub_items = _item(0x30, _uid(abstract)) + b"".join(_item(0x40, _uid(s)) for s in syntaxes)
        items += _item(0x20, bytes((context_id, 0, 0, 0)) + sub_items)
    items += _item(0x50, _item(0x51, struct.pack(">L", max_length)) + _item(0x52, _uid("1.2.826.0.1.3680043.9.7433")))
    fixed = struct.pack(">HH16s16s32x", 1, 0, called.ljust(16).encode(), calling.ljust(16).encode())
    body = fixed + items
    return struct.pack(">BBL", 0x01, 0, len(body)) + body


def _pdv(context_id: int, control: int, data: bytes) -> bytes:
    return struct.pack(">LBB", len(data) + 2, context_id, control) + data


def p_data_tf(*pdvs: bytes) -> bytes:
    body = b"".join(pdvs)
    return struct.pack(">BBL", P_DATA_TF, 0, len(body)) + body


def c_store_rq(sop_class: str, sop_instance: str, message_id: int = 1) -> bytes:
    """A C-STORE-RQ command set, Implicit VR Little Endian, with its group length."""
    command = Dataset()
    command.AffectedSOPClassUID = sop_class
    command.CommandField = 0x0001
    command.MessageID = message_id
    command.Priority = 0
    command.CommandDataSetType = 0x0000
    command.AffectedSOPInstanceUID = sop_instance
    body = encode(command, True, True)
    assert body is not None
    return struct.pack("<HHLL", 0x0000, 0x0000, 4, len(body)) + body


def data_set_bytes(ds: Dataset) -> bytes:
    """A data set as it goes on the wire in Explicit VR Little Endian (no file meta)."""
    encoded = encode(ds, False, True)
    assert encoded is not None
    return encoded


def store_pdus(ds: Dataset, context_id: int = 1, command_sop_class: str | None = None,
               fragment: int = 16384) -> list[bytes]:
    """The P-DATA-TF PDUs of a C-STORE of ``ds``: the command, then the data set in fragments."""
    command = c_store_rq(command_sop_class or ds.SOPClassUID, ds.SOPInstanceUID)
    encoded = data_set_bytes(ds)
    pdus = [p_data_tf(_pdv(context_id, 0x03, command))]
    for start in range(0, len(encoded), fragment):
        last = start + fragment >= len(encoded)
        pdus.append(p_data_tf(_pdv(context_id, 0x02 if last else 0x00, encoded[start:start + fragment])))
    return pdus


def single_pdu_store(ds: Dataset, context_id: int = 1) -> bytes:
    """A whole C-STORE (command and data set) in one P-DATA-TF, as a template to mutate."""
    command = c_store_rq(ds.SOPClassUID, ds.SOPInstanceUID)
    return p_data_tf(_pdv(context_id, 0x03, command), _pdv(context_id, 0x02, data_set_bytes(ds)))


def pdv_payloads(pdu: bytes) -> list[tuple[int, bytes]] | None:
    """(control header, data) of each PDV of a P-DATA-TF, or None when they do not parse."""
    if len(pdu) < 6 or pdu[0] != P_DATA_TF:
        return None
    body, payloads = pdu[6:6 + struct.unpack(">L", pdu[2:6])[0]], []
    while body:
        if len(body) < 6:
            return None
        length = struct.unpack(">L", body[:4])[0]
        if length < 2 or length > len(body) - 4:
            return None
        payloads.append((body[5], body[6:4 + length]))
        body = body[4 + length:]
    return payloads


def read_pdu(sock: socket.socket) -> tuple[int, bytes] | None:
    """The next PDU's type and body, or None when the connection is closed (or reset)."""
    header = _read(sock, 6)
    if len(header) < 6:
        return None
    pdu_type, _, length = struct.unpack(">BBL", header)
    assert length <= _MAX_REPLY, f"the gateway answered with a PDU of {length} bytes"
    body = _read(sock, length)
    return (pdu_type, body) if len(body) == length else None


def _read(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        try:
            chunk = sock.recv(count - len(data))
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk
    return data


def store_status(body: bytes) -> int | None:
    """The Status of a C-STORE-RSP carried in a P-DATA-TF body (one command PDV), else None."""
    payloads = pdv_payloads(struct.pack(">BBL", P_DATA_TF, 0, len(body)) + body)
    if not payloads or not payloads[0][0] & 0x01:
        return None
    command = read_dataset(BytesIO(payloads[0][1]), True, True)
    return int(command.Status) if "Status" in command else None


def connect(port: int, source: str = "127.0.0.1", timeout: float = 5) -> socket.socket:
    """A TCP connection to 127.0.0.1; ``source`` (another loopback address) stands for another host."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def associate(port: int, contexts: list[tuple[int, str, list[str]]] | None = None,
              calling: str = "CAMERA1", source: str = "127.0.0.1") -> socket.socket:
    """A connection with an established association (fails the test otherwise)."""
    sock = connect(port, source)
    sock.sendall(associate_rq(calling, contexts=contexts))
    reply = read_pdu(sock)
    assert reply is not None and reply[0] == A_ASSOCIATE_AC, f"association not accepted: {reply}"
    return sock


def photo_context(sop_class: str) -> list[tuple[int, str, list[str]]]:
    return [(1, sop_class, [ExplicitVRLittleEndian])]
