"""Who gets a connection, and the first PDU of one, before any caller is authenticated.

pynetdicom 3.0 gives every accepted TCP connection its own threads, counts it against
``maximum_associations`` from the first byte, reads a whole PDU of whatever length its header
announces, and waits on a slow sender without limit. Nothing in that phase knows who the caller
is, so the listener does it first, here:

- :class:`ConnectionSlots`: at most ``max_negotiating`` connections still negotiating, and at most
  ``max_connections_per_host`` from one peer address, counted before a thread is started;
- :func:`read_association_request`: the first PDU must be an A-ASSOCIATE-RQ no longer than
  :data:`MAX_ASSOCIATE_RQ_LENGTH` that decodes, all of it within one deadline (TLS handshake
  included, see :func:`tls_handshake`), however slowly its bytes drip in.

Only a request that passes reaches pynetdicom, which then negotiates at once.
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading
import time

from pynetdicom.pdu import A_ASSOCIATE_RQ

#: Longest A-ASSOCIATE-RQ accepted (PDU length field). 128 presentation contexts with a dozen
#: transfer syntaxes each and a 64 KiB user identity fit well within it.
MAX_ASSOCIATE_RQ_LENGTH = 256 * 1024
#: Type, reserved byte and 32-bit length that open every PDU (PS3.8 9.3.1).
PDU_HEADER = struct.Struct(">BBL")
_A_ASSOCIATE_RQ = 0x01
_READ_CHUNK = 64 * 1024
#: A-ABORT reasons of the service-provider (PS3.8 Table 9-26).
UNRECOGNIZED_PDU = 0x01
UNEXPECTED_PDU = 0x02
INVALID_PARAMETER_VALUE = 0x06
#: A-ASSOCIATE-RJ: rejected-permanent by the service-provider (ACSE related function), protocol
#: version not supported (PS3.8 9.3.4), as pynetdicom itself would answer.
_PROTOCOL_VERSION_NOT_SUPPORTED = PDU_HEADER.pack(0x03, 0, 4) + bytes((0, 0x01, 0x02, 0x02))


def a_abort(reason: int) -> bytes:
    """An A-ABORT PDU from the DICOM UL service-provider (source 2) with ``reason`` (PS3.8 9.3.8)."""
    return PDU_HEADER.pack(0x07, 0, 4) + bytes((0, 0, 0x02, reason))


class Refused(Exception):
    """A connection is closed before association; ``reply`` is the PDU to send first, if any."""

    def __init__(self, why: str, reply: bytes | None = None) -> None:
        super().__init__(why)
        self.reply = reply


class ConnectionSlots:
    """Counts connections per peer address and those still negotiating; thread-safe.

    :meth:`take` is asked in the accept loop, before a thread exists for the connection; the
    connection's own thread calls :meth:`negotiated` once its A-ASSOCIATE-RQ is in (or it is
    refused) and :meth:`release` when it closes. Associated connections then count only against
    the per-host cap and pynetdicom's ``maximum_associations``.
    """

    def __init__(self, max_negotiating: int, max_per_host: int) -> None:
        self.max_negotiating = max_negotiating
        self.max_per_host = max_per_host
        self._lock = threading.Lock()
        self._negotiating = 0
        self._per_host: dict[str, int] = {}

    def take(self, host: str) -> str | None:
        """Count a new connection from ``host``; None if it may go on, else why it may not."""
        with self._lock:
            if self._negotiating >= self.max_negotiating:
                return "too many connections are negotiating"
            if self._per_host.get(host, 0) >= self.max_per_host:
                return "too many connections from this address"
            self._negotiating += 1
            self._per_host[host] = self._per_host.get(host, 0) + 1
            return None

    def negotiated(self) -> None:
        """The connection is past its A-ASSOCIATE-RQ (or refused): its negotiating slot is free."""
        with self._lock:
            self._negotiating -= 1

    def release(self, host: str) -> None:
        """The connection from ``host`` is closed."""
        with self._lock:
            left = self._per_host[host] - 1
            if left:
                self._per_host[host] = left
            else:
                del self._per_host[host]


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise Refused("association not requested in time")
    return left


def _read_exactly(sock: socket.socket, count: int, deadline: float) -> bytes:
    """``count`` bytes from ``sock`` before ``deadline`` (time.monotonic), or :class:`Refused`."""
    received = bytearray()
    while len(received) < count:
        sock.settimeout(_remaining(deadline))
        try:
            chunk = sock.recv(min(count - len(received), _READ_CHUNK))
        except TimeoutError:
            raise Refused("association not requested in time") from None
        except OSError as exc:
            raise Refused(f"connection failed ({type(exc).__name__})") from None
        if not chunk:
            raise Refused("connection closed before the association request was complete")
        received += chunk
    return bytes(received)


def tls_handshake(sock: socket.socket, context: ssl.SSLContext, deadline: float) -> ssl.SSLSocket:
    """Wrap an accepted socket in TLS, the handshake bounded by the negotiation deadline."""
    wrapped = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
    try:
        wrapped.settimeout(_remaining(deadline))
        wrapped.do_handshake()
    except (Refused, OSError) as exc:  # ssl.SSLError and TimeoutError are OSErrors
        wrapped.close()  # it owns the file descriptor now
        if isinstance(exc, Refused):
            raise
        why = "not completed in time" if isinstance(exc, TimeoutError) else f"failed ({type(exc).__name__})"
        raise Refused(f"TLS handshake {why}") from None
    return wrapped


def read_association_request(sock: socket.socket, deadline: float) -> bytes:
    """Read the first PDU, which must be a decodable A-ASSOCIATE-RQ, before ``deadline``.

    The length in the header is checked before a byte of the body is read, and the body is read
    in chunks as it arrives, so a connection holds at most :data:`MAX_ASSOCIATE_RQ_LENGTH` bytes.
    The request is decoded here too: one that pynetdicom could not decode would leave its
    association thread waiting for the ACSE timeout, counted against ``maximum_associations``.

    Raises
    ------
    Refused
        With an A-ABORT (or A-ASSOCIATE-RJ) to send for a bad PDU, without one on a timeout or a
        closed connection.
    """
    header = _read_exactly(sock, PDU_HEADER.size, deadline)
    pdu_type, _, length = PDU_HEADER.unpack(header)
    if pdu_type != _A_ASSOCIATE_RQ:
        reason = UNEXPECTED_PDU if 0x01 <= pdu_type <= 0x07 else UNRECOGNIZED_PDU
        raise Refused(f"first PDU is of type 0x{pdu_type:02X}, not an A-ASSOCIATE-RQ", a_abort(reason))
    if length > MAX_ASSOCIATE_RQ_LENGTH:
        raise Refused(f"A-ASSOCIATE-RQ of {length} bytes is over the limit of {MAX_ASSOCIATE_RQ_LENGTH}",
                      a_abort(INVALID_PARAMETER_VALUE))
    pdu = header + _read_exactly(sock, length, deadline)
    request = A_ASSOCIATE_RQ()
    try:
        request.decode(pdu)
        request.to_primitive()
    except Exception:  # hostile bytes can fail pynetdicom's decoder in many ways
        raise Refused("A-ASSOCIATE-RQ does not decode", a_abort(INVALID_PARAMETER_VALUE)) from None
    if request.protocol_version != 0x0001:
        raise Refused("A-ASSOCIATE-RQ protocol version not supported", _PROTOCOL_VERSION_NOT_SUPPORTED)
    return pdu
