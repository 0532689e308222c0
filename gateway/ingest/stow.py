"""The STOW-RS endpoint (PS3.18 10.5): ``POST /studies`` over HTTP(S) into the same spool.

It is the DICOM listener's twin for senders that speak DICOMweb, with the same promise: an
instance listed in the response's ReferencedSOPSequence is durably in the spool (the response
is written only after :meth:`Intake.admit` returned for it). Like the listener it never decodes
a data set: it reads each part's file meta, and the Study Instance UID only when the request
names a study.

A request is handled in three steps, so that a broken request admits nothing:

1. who is calling: the common name of a verified client certificate, or a bearer token, maps
   to a configured client whose ``name`` becomes the job's calling AE title (routes match it
   like one); anyone else gets 401 before the body is read;
2. the body: ``multipart/related; type="application/dicom"`` only (else 415), with a
   Content-Length (else 411) no larger than ``max_request_bytes`` (else 413); every part is
   written to its own file in the spool's ``incoming/``; a body that breaks off or misses its
   closing boundary is 400 and its files are removed;
3. each part is checked and admitted on its own; the response lists it in ReferencedSOPSequence
   or in FailedSOPSequence with a FailureReason, and its status is 200 (all stored), 202 (some)
   or 409 (none).

The spool refusing everything up front (below its free-space floor) is 503 with Retry-After,
as is a request beyond ``max_concurrent_requests``.
"""

from __future__ import annotations

import hmac
import logging
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_file_meta_info

from gateway.config import StowClient, StowListener
from gateway.dicom.multipart import DICOM_MEDIA_TYPE, ReceivedPart, media_type, receive_parts
from gateway.dicom.part10 import HEAD_LENGTH, data_set_offset
from gateway.dicom.stow_response import MEDIA_TYPE, FailureReason, InstanceResult, response_body
from gateway.dicom.transport import ssl_context
from gateway.errors import MultipartError, SpoolFull
from gateway.store.queue import Intake

log = logging.getLogger("dmask.stow")

_UID = r"[0-9]+(?:\.[0-9]+)*"
_RETRY_AFTER_S = "30"
#: After a refusal, what the client is still sending is read and dropped for at most this long
#: and this much, so that it gets to read the answer: a socket closed with unread data is
#: reset, and a client still sending its body sees a broken pipe instead of the status.
_DISCARD_S = 2.0
_DISCARD_BYTES = 64 * 1024 * 1024


class StowReceiver:
    """The gateway's STOW-RS origin server.

    Parameters
    ----------
    settings
        The ``stow`` section of the configuration.
    spool
        Where received instances are admitted.
    sop_classes, transfer_syntaxes
        What the DICOM listener accepts; other instances fail with 0x0122 and 0xC122.
    called_ae_title
        The called AE title recorded for STOW-RS jobs (routes may match it).
    on_admitted, on_refused
        As for :class:`~gateway.ingest.listener.Receiver`: called with (job id, client name,
        SOP Class UID) for each admitted instance, and with the FailureReason of each refused one.
    """

    def __init__(self, settings: StowListener, spool: Intake, sop_classes: Iterable[str],
                 transfer_syntaxes: Iterable[str], called_ae_title: str,
                 on_admitted: Callable[[int, str, str], None] | None = None,
                 on_refused: Callable[[int], None] | None = None) -> None:
        self.settings = settings
        self.spool = spool
        self.sop_classes = frozenset(sop_classes)
        self.transfer_syntaxes = frozenset(transfer_syntaxes)
        self.called_ae_title = called_ae_title
        self.on_admitted = on_admitted
        self.on_refused = on_refused
        self._studies = re.compile(rf"^{re.escape(settings.base_path)}/studies(?:/({_UID}))?/?$")
        self.request_slots = threading.BoundedSemaphore(settings.max_concurrent_requests)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- who is calling -----------------------------------------------------------------------

    def client_for(self, certificate_common_name: str | None, authorization: str | None) -> StowClient | None:
        """The configured client a request comes from, or None.

        Every configured token is compared (in constant time) so that the answer's timing does
        not tell how much of a guessed token was right.
        """
        if certificate_common_name is not None:
            for client in self.settings.clients:
                if client.certificate_common_name == certificate_common_name:
                    return client
        scheme, _, presented = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            return None
        found = None
        for client in self.settings.clients:
            if client.token is None:
                continue
            try:
                token = client.token.read()
            except ValueError as exc:
                log.error("a STOW-RS client's token cannot be read: %s", exc,
                          extra={"client": client.name})
                continue
            if hmac.compare_digest(token.encode(), presented.strip().encode()):
                found = client
        return found

    # -- one instance -------------------------------------------------------------------------

    def admit_part(self, part: ReceivedPart, client: StowClient, study_uid: str | None) -> InstanceResult:
        """Check one received part and admit it into the spool; its file is gone afterwards."""
        result = self._check(part, study_uid)
        if result.failure_reason is None:
            try:
                job_id = self.spool.admit(part.path, calling_ae=client.name,
                                          called_ae=self.called_ae_title,
                                          sop_class_uid=result.sop_class_uid,
                                          sop_instance_uid=result.sop_instance_uid)
            except SpoolFull as exc:
                log.error("STOW-RS instance refused: %s", exc, extra={"client": client.name})
                result = InstanceResult(result.sop_class_uid, result.sop_instance_uid,
                                        FailureReason.OUT_OF_RESOURCES)
            else:
                log.debug("instance admitted", extra={"job": job_id, "calling_ae": client.name})
                if self.on_admitted is not None:
                    self.on_admitted(job_id, client.name, result.sop_class_uid)
                return result
        part.path.unlink(missing_ok=True)
        assert result.failure_reason is not None
        if self.on_refused is not None:
            self.on_refused(int(result.failure_reason))
        return result

    def _check(self, part: ReceivedPart, study_uid: str | None) -> InstanceResult:
        if part.content_type not in ("", DICOM_MEDIA_TYPE):
            return InstanceResult("", "", FailureReason.CANNOT_UNDERSTAND)
        try:
            meta = read_file_meta_info(part.path)
            sop_class = str(meta.MediaStorageSOPClassUID)
            sop_instance = str(meta.MediaStorageSOPInstanceUID)
            syntax = str(meta.TransferSyntaxUID)
        except (InvalidDicomError, AttributeError, ValueError, EOFError, OSError):
            return InstanceResult("", "", FailureReason.CANNOT_UNDERSTAND)
        if not _has_data_set(part.path):
            return InstanceResult(sop_class, sop_instance, FailureReason.CANNOT_UNDERSTAND)
        if sop_class not in self.sop_classes:
            return InstanceResult(sop_class, sop_instance, FailureReason.SOP_CLASS_NOT_SUPPORTED)
        if syntax not in self.transfer_syntaxes:
            return InstanceResult(sop_class, sop_instance, FailureReason.TRANSFER_SYNTAX_NOT_SUPPORTED)
        if study_uid is not None and _study_of(part.path) != study_uid:
            # PS3.18 10.5.1: an instance of another study than the one in the URL is not stored.
            return InstanceResult(sop_class, sop_instance,
                                  FailureReason.DATA_SET_DOES_NOT_MATCH_SOP_CLASS)
        return InstanceResult(sop_class, sop_instance)

    # -- server -------------------------------------------------------------------------------

    def start(self) -> tuple[str, int]:
        """Start serving in background threads; return the bound (host, port)."""
        tls = ssl_context(self.settings.tls, server_side=True) if self.settings.tls else None
        self._server = _Server((self.settings.host, self.settings.port), _Handler, self, tls)
        self._thread = threading.Thread(target=self._server.serve_forever, name="stow-rs",
                                        daemon=True)
        self._thread.start()
        host, port = self._server.server_address[:2]
        log.info("STOW-RS listening", extra={"port": port, "tls": tls is not None})
        return str(host), int(port)

    def stop(self) -> None:
        """Stop accepting requests and wait (up to ``request_timeout``) for those being served,
        so that none is admitting into a spool the serve loop is about to close."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        deadline = time.monotonic() + self.settings.request_timeout
        held = sum(self.request_slots.acquire(timeout=max(0.0, deadline - time.monotonic()))
                   for _ in range(self.settings.max_concurrent_requests))
        for _ in range(held):
            self.request_slots.release()

    def study_in(self, path: str) -> tuple[bool, str | None]:
        """Whether ``path`` is the studies resource, and the Study Instance UID it names."""
        found = self._studies.match(path.partition("?")[0])
        return (True, found.group(1)) if found else (False, None)


def _has_data_set(path: Path) -> bool:
    """A data set follows the file meta (an empty one cannot be an instance)."""
    with open(path, "rb") as handle:
        start = data_set_offset(handle.read(HEAD_LENGTH))
        return start is not None and path.stat().st_size > start


def _study_of(path: Path) -> str | None:
    try:
        header = dcmread(path, stop_before_pixels=True, specific_tags=["StudyInstanceUID"])
    except (InvalidDicomError, ValueError, EOFError, OSError):
        return None
    value = header.get("StudyInstanceUID")
    return str(value) if value else None


class _Server(ThreadingHTTPServer):
    """A thread per connection; TLS is negotiated on that thread, never on the accepting one."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 receiver: StowReceiver, tls: ssl.SSLContext | None) -> None:
        self.receiver = receiver
        self.tls = tls
        super().__init__(address, handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(self.receiver.settings.request_timeout)
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        try:
            wrapped = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            log.warning("STOW-RS TLS handshake failed: %s", type(exc).__name__,
                        extra={"peer": client_address[0]})
            return
        try:
            super().finish_request(wrapped, client_address)
        finally:
            wrapped.close()


class _Handler(BaseHTTPRequestHandler):
    """One HTTP connection of the STOW-RS endpoint."""

    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "dmask-stow"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        """The request line holds a Study Instance UID: the outcome is logged instead."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        receiver = self.server.receiver
        if not receiver.request_slots.acquire(blocking=False):
            self._refuse(HTTPStatus.SERVICE_UNAVAILABLE, "too many requests at once",
                         retry_after=True)
            return
        try:
            self._store(receiver)
        finally:
            receiver.request_slots.release()

    def _store(self, receiver: StowReceiver) -> None:
        is_studies, study_uid = receiver.study_in(self.path)
        if not is_studies:
            self._refuse(HTTPStatus.NOT_FOUND, "only POST /studies and /studies/{uid} are served")
            return
        client = receiver.client_for(self._certificate_common_name(),
                                     self.headers.get("Authorization"))
        if client is None:
            log.warning("STOW-RS request refused: unknown client", extra={"peer": self.client_address[0]})
            self._refuse(HTTPStatus.UNAUTHORIZED, "unknown client",
                         extra_headers={"WWW-Authenticate": 'Bearer realm="dmask"'})
            return
        kind, params = media_type(self.headers.get("Content-Type"))
        boundary = params.get("boundary", "")
        if kind != "multipart/related" or params.get("type", DICOM_MEDIA_TYPE).lower() != DICOM_MEDIA_TYPE \
                or not 1 <= len(boundary) <= 70:
            self._refuse(HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                         'only multipart/related; type="application/dicom" with a boundary is taken')
            return
        length = self._content_length()
        if length is None:
            return
        if length > receiver.settings.max_request_bytes:
            self._refuse(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                         f"the body exceeds {receiver.settings.max_request_bytes} bytes")
            return
        try:
            receiver.spool.check_capacity(length)
        except SpoolFull as exc:
            log.error("STOW-RS request refused: %s", exc, extra={"client": client.name})
            self._refuse(HTTPStatus.SERVICE_UNAVAILABLE, "the gateway cannot take instances now",
                         retry_after=True)
            return
        try:
            parts = receive_parts(self.rfile, length, boundary, receiver.spool.incoming_dir())
        except MultipartError as exc:
            log.warning("STOW-RS request refused: %s", exc, extra={"client": client.name})
            self._refuse(HTTPStatus.BAD_REQUEST, str(exc))
            return
        except OSError as exc:  # a timeout, a reset, a full disk
            log.error("STOW-RS request failed while receiving: %s", type(exc).__name__,
                      extra={"client": client.name})
            self._refuse(HTTPStatus.SERVICE_UNAVAILABLE, "the body could not be received",
                         retry_after=True)
            return
        if not parts:
            self._refuse(HTTPStatus.BAD_REQUEST, "the body holds no part")
            return
        results = [receiver.admit_part(part, client, study_uid) for part in parts]
        stored = sum(result.failure_reason is None for result in results)
        status = HTTPStatus.OK if stored == len(results) else \
            HTTPStatus.ACCEPTED if stored else HTTPStatus.CONFLICT
        log.info("STOW-RS request stored", extra={"client": client.name, "stored": stored,
                                                 "failed": len(results) - stored,
                                                 "status": int(status)})
        self._reply(status, MEDIA_TYPE, response_body(results))

    def _content_length(self) -> int | None:
        """The declared body length, or None after refusing a request that has none usable."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self._refuse(HTTPStatus.LENGTH_REQUIRED, "chunked bodies are not taken: send a Content-Length")
            return None
        declared = self.headers.get("Content-Length")
        if declared is None:
            self._refuse(HTTPStatus.LENGTH_REQUIRED, "a Content-Length is required")
            return None
        if not declared.strip().isdigit():
            self._refuse(HTTPStatus.BAD_REQUEST, "the Content-Length is not a number")
            return None
        return int(declared)

    def _certificate_common_name(self) -> str | None:
        if not isinstance(self.connection, ssl.SSLSocket):
            return None
        subject: Any = (self.connection.getpeercert() or {}).get("subject", ())
        names = [value for field in subject for name, value in field if name == "commonName"]
        return str(names[0]) if names else None

    def _refuse(self, status: HTTPStatus, message: str, *, retry_after: bool = False,
                extra_headers: dict[str, str] | None = None) -> None:
        """Answer an error and close the connection: the unread body must not be taken as the
        next request."""
        headers = dict(extra_headers or {})
        if retry_after:
            headers["Retry-After"] = _RETRY_AFTER_S
        self.close_connection = True
        self._reply(status, "text/plain; charset=utf-8", (message + "\n").encode(), headers)
        self._discard_body()

    def _discard_body(self) -> None:
        """Read and drop the refused request's body, within ``_DISCARD_S`` and
        ``_DISCARD_BYTES``; a larger or slower one is cut off as before."""
        declared = self.headers.get("Content-Length", "") if self.headers else ""
        left = min(int(declared), _DISCARD_BYTES) if declared.isdigit() else 0
        deadline = time.monotonic() + _DISCARD_S
        try:
            self.connection.settimeout(_DISCARD_S)
            while left > 0 and time.monotonic() < deadline:
                chunk = self.rfile.read1(min(left, 1 << 16))
                if not chunk:
                    return
                left -= len(chunk)
        except OSError:  # the client went away or stalled: nothing more to do for it
            return

    def _reply(self, status: HTTPStatus, content_type: str, body: bytes,
               headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client went away (or timed out)
            self.close_connection = True
