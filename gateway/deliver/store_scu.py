"""A C-STORE SCU that runs in the calling thread: what the workers forward with.

pynetdicom's :class:`~pynetdicom.association.Association` runs two threads per association
that poll every millisecond (its DUL reactor and its association reactor) and encodes every
DIMSE command through pydicom. For a worker that sends one processed instance after another,
that cost far more CPU and wall time per small C-STORE than sending it needs, while the
polling threads kept taking the GIL from the pipeline. Sending needs far less: negotiate (the
A-ASSOCIATE PDUs are still encoded and decoded by pynetdicom's PDU classes), write the command
and the data set as P-DATA-TF PDUs, read the response, release. That is done here with
blocking socket I/O and the association's timeouts as socket timeouts.

Protocol references: PS3.8 9.3 (PDU structure), PS3.7 9.1.1 and E.1 (C-STORE command and its
Implicit VR Little Endian encoding).
"""

from __future__ import annotations

import select
import socket
import ssl
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
)
from pynetdicom.presentation import PresentationContext, build_context

from gateway.errors import ForwardError

#: The DICOM application context (PS3.7 A.2.1).
APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
#: Largest P-DATA-TF PDU we accept from the peer (its responses are a few hundred bytes).
MAXIMUM_PDU_RECEIVED = 65536
#: Fragment size when the peer sets no limit (maximum length 0).
UNLIMITED_FRAGMENT = 1 << 20

_A_ASSOCIATE_AC = 0x02
_A_ASSOCIATE_RJ = 0x03
_P_DATA_TF = 0x04
_A_RELEASE_RQ = 0x05
_A_RELEASE_RP = 0x06
_A_ABORT = 0x07

_COMMAND = 0x01  # message control header: command (else data set) fragment
_LAST = 0x02  # message control header: last fragment of the command or data set
_C_STORE_RQ = 0x0001
_C_STORE_RSP = 0x8001
_DATA_SET_PRESENT = 0x0001  # anything but 0x0101 (no data set); pynetdicom sends 0x0001
_MEDIUM_PRIORITY = 0x0000


@dataclass(frozen=True)
class ProposedContext:
    """One presentation context to propose: an abstract syntax and its transfer syntaxes."""

    abstract_syntax: str
    transfer_syntaxes: Sequence[str]


def _element(group: int, element: int, value: bytes) -> bytes:
    """One Implicit VR Little Endian element (values of odd length padded, PS3.5 7.1.1)."""
    if len(value) % 2:
        value += b"\x00"
    return struct.pack("<HHI", group, element, len(value)) + value


def c_store_rq(message_id: int, sop_class_uid: str, sop_instance_uid: str) -> bytes:
    """The encoded command set of a C-STORE request (PS3.7 Table 9.1-1), group length first."""
    body = b"".join((
        _element(0x0000, 0x0002, sop_class_uid.encode("ascii")),
        _element(0x0000, 0x0100, struct.pack("<H", _C_STORE_RQ)),
        _element(0x0000, 0x0110, struct.pack("<H", message_id)),
        _element(0x0000, 0x0700, struct.pack("<H", _MEDIUM_PRIORITY)),
        _element(0x0000, 0x0800, struct.pack("<H", _DATA_SET_PRESENT)),
        _element(0x0000, 0x1000, sop_instance_uid.encode("ascii")),
    ))
    return _element(0x0000, 0x0000, struct.pack("<I", len(body))) + body


def command_fields(encoded: bytes) -> dict[int, bytes]:
    """The elements of an encoded command set, by element number (all are in group 0000).

    Raises
    ------
    ConnectionError
        The bytes are not a command set (a peer that does not speak DIMSE).
    """
    fields: dict[int, bytes] = {}
    offset = 0
    while offset + 8 <= len(encoded):
        group, element, length = struct.unpack_from("<HHI", encoded, offset)
        offset += 8
        if group != 0x0000 or offset + length > len(encoded):
            raise ConnectionError("the destination answered with a malformed command set")
        fields[element] = encoded[offset:offset + length]
        offset += length
    return fields


def _unsigned_short(fields: dict[int, bytes], element: int) -> int | None:
    """A US value of a command set (Command Field, Message ID, Status), None when absent."""
    value = fields.get(element)
    return struct.unpack("<H", value[:2])[0] if value is not None and len(value) >= 2 else None


def _pdu(pdu_type: int, body: bytes) -> bytes:
    """A PDU: the 6-byte header (type, reserved, length of what follows; PS3.8 9.3.1), then ``body``."""
    return struct.pack(">BBI", pdu_type, 0, len(body)) + body


def _p_data(context_id: int, control: int, fragment: bytes) -> bytes:
    """A P-DATA-TF PDU with one presentation data value (PS3.8 9.3.5), the fragment copied once."""
    length = len(fragment) + 2
    return struct.pack(">BBIIBB", _P_DATA_TF, 0, length + 4, length, context_id, control) + fragment


def _presentation_contexts(proposed: Iterable[ProposedContext]) -> list[PresentationContext]:
    contexts = []
    for index, wanted in enumerate(proposed):
        context = build_context(wanted.abstract_syntax, list(wanted.transfer_syntaxes))
        context.context_id = 2 * index + 1  # odd integers, PS3.8 9.3.2.2
        contexts.append(context)
    return contexts


def _associate_rq(calling_ae: str, called_ae: str, contexts: list[PresentationContext]) -> bytes:
    primitive = A_ASSOCIATE()
    primitive.application_context_name = APPLICATION_CONTEXT
    primitive.calling_ae_title = calling_ae
    primitive.called_ae_title = called_ae
    maximum_length = MaximumLengthNotification()
    maximum_length.maximum_length_received = MAXIMUM_PDU_RECEIVED
    implementation_uid = ImplementationClassUIDNotification()
    implementation_uid.implementation_class_uid = PYNETDICOM_IMPLEMENTATION_UID
    implementation_version = ImplementationVersionNameNotification()
    implementation_version.implementation_version_name = PYNETDICOM_IMPLEMENTATION_VERSION
    primitive.user_information = [maximum_length, implementation_uid, implementation_version]
    primitive.presentation_context_definition_list = contexts
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(primitive)
    return pdu.encode()


class StoreAssociation:
    """An established association on which C-STORE requests are sent one at a time.

    Use :meth:`open`; the constructor takes an already negotiated socket.
    """

    def __init__(self, connection: socket.socket, accepted: dict[tuple[str, str], int],
                 peer_maximum_pdu: int, acse_timeout: float) -> None:
        self._socket = connection
        self._accepted = accepted
        self._fragment = (peer_maximum_pdu - 6) if peer_maximum_pdu else UNLIMITED_FRAGMENT
        self._acse_timeout = acse_timeout
        self._message_id = 0
        self.is_open = True

    @classmethod
    def open(cls, host: str, port: int, *, calling_ae: str, called_ae: str,
             contexts: Sequence[ProposedContext], connect_timeout: float, dimse_timeout: float,
             tls: ssl.SSLContext | None = None) -> StoreAssociation:
        """Connect and negotiate; the accepted contexts are then looked up with :meth:`context_for`.

        Raises
        ------
        ForwardError
            The destination is unreachable, rejected the association or broke off the
            negotiation.
        """
        proposed = _presentation_contexts(contexts)
        try:
            connection = socket.create_connection((host, port), timeout=connect_timeout)
        except OSError:
            raise ForwardError("association with the destination unreachable") from None
        try:
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls is not None:
                connection = tls.wrap_socket(connection, server_hostname=host)
            connection.sendall(_associate_rq(calling_ae, called_ae, proposed))
            pdu_type, body = _read_pdu(connection)
        except OSError as exc:  # ConnectionError and ssl.SSLError included
            connection.close()
            what = "refused the secure connection" if isinstance(exc, ssl.SSLError) \
                else "aborted"
            raise ForwardError(f"association with the destination {what}") from None
        if pdu_type != _A_ASSOCIATE_AC:
            connection.close()
            what = "rejected" if pdu_type == _A_ASSOCIATE_RJ else "aborted"
            raise ForwardError(f"association with the destination {what}")
        accept = A_ASSOCIATE_AC()
        accept.decode(_pdu(pdu_type, body))
        primitive = accept.to_primitive()
        by_id = {context.context_id: context for context in proposed}
        accepted: dict[tuple[str, str], int] = {}
        for result in primitive.presentation_context_definition_results_list:
            context = by_id.get(result.context_id)
            if (result.result == 0 and context is not None and context.abstract_syntax
                    and result.context_id is not None and result.transfer_syntax):
                accepted.setdefault((context.abstract_syntax, result.transfer_syntax[0]),
                                    result.context_id)
        peer_maximum = next((item.maximum_length_received for item in primitive.user_information
                             if isinstance(item, MaximumLengthNotification)), 0)
        connection.settimeout(dimse_timeout)
        return cls(connection, accepted, int(peer_maximum or 0), acse_timeout=connect_timeout)

    def context_for(self, sop_class_uid: str, transfer_syntax_uid: str) -> int | None:
        """The id of the accepted context for this SOP class and transfer syntax, if any."""
        return self._accepted.get((sop_class_uid, transfer_syntax_uid))

    def peer_closed(self) -> bool:
        """Whether the peer has sent something (an abort, a release, end of file) while idle.

        Nothing is expected between our requests, so anything readable ends the association.
        """
        if not self.is_open:
            return True
        readable, _, _ = select.select([self._socket], [], [], 0)
        return bool(readable)

    def store(self, context_id: int, sop_class_uid: str, sop_instance_uid: str,
              data_set: BinaryIO, size: int) -> int:
        """Send one C-STORE request and return the status of its response.

        ``data_set`` is positioned at the first byte of the encoded data set (in the context's
        transfer syntax) and ``size`` bytes of it are sent.

        Raises
        ------
        OSError
            The connection broke, timed out or the peer aborted (``ConnectionError``); the
            association is closed.
        """
        self._message_id = self._message_id % 0xFFFF + 1
        try:
            command = c_store_rq(self._message_id, sop_class_uid, sop_instance_uid)
            self._socket.sendall(_p_data(context_id, _COMMAND | _LAST, command))
            remaining = size
            while True:
                fragment = data_set.read(min(self._fragment, remaining))
                remaining -= len(fragment)
                if remaining and not fragment:
                    raise ConnectionError("the instance is shorter than its size")
                self._socket.sendall(_p_data(context_id, 0 if remaining else _LAST, fragment))
                if not remaining:
                    break
            fields = command_fields(self._read_command())
        except OSError:
            self.abort()
            raise
        status = _unsigned_short(fields, 0x0900)
        if _unsigned_short(fields, 0x0100) != _C_STORE_RSP or status is None or \
                _unsigned_short(fields, 0x0120) != self._message_id:
            self.abort()
            raise ConnectionError("the destination answered something else than our C-STORE")
        return status

    def _read_command(self) -> bytes:
        """The command set of the next response, from as many P-DATA-TF PDUs as it spans."""
        command = bytearray()
        while True:
            pdu_type, body = _read_pdu(self._socket)
            if pdu_type == _A_ABORT:
                raise ConnectionAbortedError("the destination aborted the association")
            if pdu_type != _P_DATA_TF:
                raise ConnectionError(f"the destination sent PDU type 0x{pdu_type:02X}")
            offset = 0
            while offset + 6 <= len(body):
                length, _, control = struct.unpack_from(">IBB", body, offset)
                if length < 2 or offset + 4 + length > len(body):
                    raise ConnectionError("the destination sent a malformed P-DATA-TF PDU")
                if control & _COMMAND:
                    command += body[offset + 6:offset + 4 + length]
                    if control & _LAST:
                        return bytes(command)
                offset += 4 + length

    def release(self) -> None:
        """Release the association (A-RELEASE), or abort it when the peer does not answer."""
        if not self.is_open:
            return
        try:
            self._socket.settimeout(self._acse_timeout)  # as long as negotiating may take
            self._socket.sendall(_pdu(_A_RELEASE_RQ, b"\0" * 4))
            while True:
                pdu_type, _ = _read_pdu(self._socket)
                if pdu_type in (_A_RELEASE_RP, _A_ABORT):
                    break
        except OSError:
            pass  # the peer went away: nothing left to release
        self._close()

    def abort(self) -> None:
        """Abort the association (A-ABORT from the service user) and close the connection."""
        if not self.is_open:
            return
        try:
            self._socket.sendall(_pdu(_A_ABORT, b"\0\0\0\0"))
        except OSError:
            pass
        self._close()

    def _close(self) -> None:
        self.is_open = False
        try:
            self._socket.close()
        except OSError:
            pass


def _read_exactly(connection: socket.socket, count: int) -> bytes:
    chunks = []
    while count:
        chunk = connection.recv(min(count, 1 << 20))
        if not chunk:
            raise ConnectionResetError("the destination closed the connection")
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


def _read_pdu(connection: socket.socket) -> tuple[int, bytes]:
    """The type and body of the next PDU on the connection."""
    pdu_type, _, length = struct.unpack(">BBI", _read_exactly(connection, 6))
    if pdu_type not in (_A_ASSOCIATE_AC, _A_ASSOCIATE_RJ, _P_DATA_TF, _A_RELEASE_RQ,
                        _A_RELEASE_RP, _A_ABORT) or length > 16 * MAXIMUM_PDU_RECEIVED:
        raise ConnectionError(f"the destination sent an unexpected PDU (type 0x{pdu_type:02X})")
    return pdu_type, _read_exactly(connection, length)
