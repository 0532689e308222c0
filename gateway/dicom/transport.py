"""TCP and TLS settings shared by the listener (receive) and the DICOM destinations (forward).

pynetdicom leaves Nagle's algorithm on; a C-STORE response or a small PDU then waits for the
peer's delayed ACK, once per object. :func:`set_tcp_nodelay` is bound to the listener's
``evt.EVT_CONN_OPEN`` to switch it off (the forwarding SCU sets it on its own socket).
"""

from __future__ import annotations

import socket
import ssl

from pynetdicom.events import Event

from gateway.config import TLSSettings


def set_tcp_nodelay(event: Event) -> None:
    """``EVT_CONN_OPEN`` handler: disable Nagle's algorithm on the association's socket."""
    transport = event.assoc.dul.socket
    sock = getattr(transport, "socket", None)
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # the peer already closed; nothing to tune


def ssl_context(tls: TLSSettings, *, server_side: bool) -> ssl.SSLContext:
    """A TLS context from the configured PEM files (TLS 1.2 or later).

    On the listener, ``require_peer_certificate`` makes client certificates mandatory (the
    DICOM TLS secure transport connection profile authenticates both ends); towards a
    destination the server certificate is always verified against ``ca_certificates``.
    """
    purpose = ssl.Purpose.CLIENT_AUTH if server_side else ssl.Purpose.SERVER_AUTH
    context = ssl.create_default_context(
        purpose, cafile=str(tls.ca_certificates) if tls.ca_certificates else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(tls.certificate), str(tls.private_key))
    if server_side:
        context.verify_mode = (ssl.CERT_REQUIRED if tls.require_peer_certificate
                               else ssl.CERT_OPTIONAL)
    return context
