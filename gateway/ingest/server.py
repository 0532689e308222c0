"""pynetdicom's association server with the listener's admission in front and a PDU bound inside.

What changes against ``AE.start_server``, step by step of a connection:

1. accept (the server's own thread): :class:`~gateway.ingest.admission.ConnectionSlots` decides
   before a thread is started; a connection over a cap is closed at once.
2. the connection's thread: TLS handshake and A-ASSOCIATE-RQ within ``negotiation_timeout``
   (:mod:`gateway.ingest.admission`); pynetdicom's ``get_request`` would do the handshake in the
   accept loop, where one silent client stalls every other.
3. pynetdicom's association, on a :class:`BoundedAssociationSocket` that hands it the request
   already read and refuses any later PDU longer than our maximum PDU size before reading it.
4. once the association has ended, ``on_closed(assoc)`` (the listener removes what a broken
   C-STORE left), then the connection's slot is released.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from typing import Any, cast

from pynetdicom import evt
from pynetdicom.ae import ApplicationEntity
from pynetdicom.association import Association
from pynetdicom.events import EventHandlerType
from pynetdicom.transport import AssociationSocket, RequestHandler, ThreadedAssociationServer

from gateway.ingest.admission import (
    INVALID_PARAMETER_VALUE,
    ConnectionSlots,
    Refused,
    a_abort,
    read_association_request,
    tls_handshake,
)

log = logging.getLogger("dmask.receive")

#: Longest PDU accepted when ``max_pdu_size`` is 0: the caller is told there is no limit, yet
#: what one PDU may make us buffer stays bounded.
MAX_PDU_LENGTH_WHEN_UNLIMITED = 64 * 1024 * 1024


class BoundedAssociationSocket(AssociationSocket):
    """pynetdicom's socket wrapper, replaying the request admission read and bounding PDUs.

    pynetdicom's DUL reads a PDU as ``recv(6)`` (type and length) then ``recv(length)``, and
    would buffer the whole announced length; a ``recv`` for more than ``max_pdu_length`` is
    answered here with an A-ABORT, a shut socket and no bytes, which the DUL takes as a closed
    connection.
    """

    _pending: bytearray
    max_pdu_length: int

    @classmethod
    def adopt(cls, sock: AssociationSocket, pending: bytes, max_pdu_length: int) -> None:
        """Make the wrapper pynetdicom built for an association one of these, in place.

        pynetdicom creates its wrapper inside the request handler and queues the transport
        event on creation; converting that instance keeps its state and its single event.
        """
        sock.__class__ = cls
        bounded = cast(BoundedAssociationSocket, sock)
        bounded._pending = bytearray(pending)
        bounded.max_pdu_length = max_pdu_length

    @property
    def ready(self) -> bool:
        return bool(self._pending) or super().ready

    def recv(self, nr_bytes: int) -> bytearray:
        if self._pending:
            replayed = self._pending[:nr_bytes]
            del self._pending[:nr_bytes]
            return replayed
        if nr_bytes > self.max_pdu_length:
            self._refuse_pdu(nr_bytes)
            return bytearray()
        return super().recv(nr_bytes)

    def _refuse_pdu(self, length: int) -> None:
        log.warning("association aborted: a PDU of %d bytes is over the limit of %d", length,
                    self.max_pdu_length, extra={"peer": str(self.assoc.requestor.address)})
        if self.socket is not None:
            with suppress(OSError):
                self.socket.sendall(a_abort(INVALID_PARAMETER_VALUE))
                self.socket.shutdown(socket.SHUT_RDWR)


class _AdmittingRequestHandler(RequestHandler):
    """One connection, from its TLS handshake to the end of its association."""

    server: GuardedAssociationServer

    def handle(self) -> None:
        host = str(self.client_address[0])
        try:
            request = self._association_request(host)
            if request is None:
                return
            assoc = self._create_association()
            BoundedAssociationSocket.adopt(cast(AssociationSocket, assoc.dul.socket), request,
                                           self.server.max_pdu_length)
            # As pynetdicom's own handle(), then wait: this thread owns the connection's end.
            evt.trigger(assoc, evt.EVT_CONN_OPEN, {"address": self.client_address})
            assoc.start()
            assoc.join()
            self.server.on_closed(assoc)
        finally:
            self.server.slots.release(host)

    def _association_request(self, host: str) -> bytes | None:
        """The A-ASSOCIATE-RQ read within the negotiation deadline; None once refused and closed."""
        deadline = time.monotonic() + self.server.negotiation_timeout
        try:
            if self.server.ssl_context is not None:
                self.request = tls_handshake(self.request, self.server.ssl_context, deadline)
            request = read_association_request(self.request, deadline)
        except Refused as refusal:
            level = logging.WARNING if refusal.reply else logging.INFO
            log.log(level, "connection closed before association: %s", refusal, extra={"peer": host})
            if refusal.reply:
                with suppress(OSError):
                    self.request.sendall(refusal.reply)
            self.server.shutdown_request(self.request)
            return None
        finally:
            self.server.slots.negotiated()
        self.request.settimeout(self.server.ae.network_timeout)  # a PDU stalled mid-way ends too
        return request


class GuardedAssociationServer(ThreadedAssociationServer):
    """A threaded association server whose connections go through admission first.

    Connection threads are daemons and are not joined on close, as pynetdicom's own are done
    right after starting the association: stopping the server does not wait for associations.
    """

    daemon_threads = True
    block_on_close = False
    #: Listen backlog (socketserver's default is 5): a burst of connections waits in the kernel
    #: for the accept loop instead of having its SYNs dropped, which makes clients retry later.
    request_queue_size = 128

    def __init__(self, ae: ApplicationEntity, address: tuple[str, int], ae_title: str,
                 contexts: list[Any], ssl_context: ssl.SSLContext | None = None,
                 evt_handlers: list[EventHandlerType] | None = None, *, slots: ConnectionSlots,
                 negotiation_timeout: float, max_pdu_size: int,
                 on_closed: Callable[[Association], None]) -> None:
        self.slots = slots
        self.negotiation_timeout = negotiation_timeout
        self.max_pdu_length = max_pdu_size or MAX_PDU_LENGTH_WHEN_UNLIMITED
        self.on_closed = on_closed
        super().__init__(ae, address, ae_title, contexts, ssl_context, evt_handlers,
                         request_handler=_AdmittingRequestHandler)

    def get_request(self) -> tuple[socket.socket, Any]:
        """Accept without TLS: the handshake happens in the connection's thread, under a deadline."""
        return socketserver.TCPServer.get_request(self)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        why = self.slots.take(str(client_address[0]))
        if why is not None:
            log.warning("connection refused: %s", why, extra={"peer": str(client_address[0])})
        return why is None

    def process_request(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request(request, client_address)
        except Exception:  # no thread for it (e.g. none can be started): give its slots back
            self.slots.negotiated()
            self.slots.release(str(client_address[0]))
            raise


def start_server(ae: ApplicationEntity, address: tuple[str, int], *,
                 ssl_context: ssl.SSLContext | None, evt_handlers: list[EventHandlerType],
                 slots: ConnectionSlots, negotiation_timeout: float, max_pdu_size: int,
                 on_closed: Callable[[Association], None]) -> GuardedAssociationServer:
    """Start a :class:`GuardedAssociationServer` for ``ae`` in a background thread.

    As ``AE.start_server(block=False)`` does, the server is registered with the AE, so that
    ``server.shutdown()`` and ``ae.shutdown()`` find it.
    """
    server = cast(GuardedAssociationServer, ae.make_server(
        address, ssl_context=ssl_context, evt_handlers=evt_handlers,
        server_class=GuardedAssociationServer, slots=slots, negotiation_timeout=negotiation_timeout,
        max_pdu_size=max_pdu_size, on_closed=on_closed))
    threading.Thread(target=server.serve_forever, name="AcceptorServer", daemon=True).start()
    ae._servers.append(server)
    return server
