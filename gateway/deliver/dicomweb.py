"""STOW-RS client (PS3.18 10.5): a DICOMweb destination, with per-instance results.

A request carries up to ``max_instances_per_request`` Part 10 files as multipart/related parts
and is answered with a data set naming what was stored (ReferencedSOPSequence) and what was not
(FailedSOPSequence, each item with its FailureReason). :meth:`StowSender.store` returns the
failures by SOP Instance UID, so that an instance the server refused is retried or dead-lettered
on its own while the others of its request count as delivered.

In the serve loop the results of several jobs are gathered into one call of
:meth:`StowSender.store` (:mod:`gateway.deliver.batching`), which sends them up to the cap per
request (see docs/operations.md, "Retries and dead letter").

How a response is read:

- 200: every instance not listed in FailedSOPSequence was stored (Orthanc and others answer 200
  with an empty or absent ReferencedSOPSequence in some versions);
- 202 and 409: the instances in ReferencedSOPSequence were stored, every other one failed;
- 401: the cached credential is dropped and the request sent once more;
- anything else (a 503 while the server is busy, a 5xx, a 4xx): none was stored.

A kept-alive connection that the server closed in the meantime is replaced once before the
request counts as failed, as :class:`~gateway.deliver.forward.DicomSender` does with a stale
association.
"""

from __future__ import annotations

import http.client
import ssl
import urllib.parse
from collections.abc import Sequence

from gateway.config import DicomWebDestination, HttpsClientTLS
from gateway.deliver.http_auth import credentials
from gateway.deliver.outgoing import Outgoing
from gateway.dicom.multipart import encode_parts, new_boundary, request_content_type
from gateway.dicom.stow_response import MEDIA_TYPE, FailureReason, parse_response
from gateway.errors import ForwardError

_UNAUTHORIZED = 401


def _tls_context(tls: HttpsClientTLS | None) -> ssl.SSLContext:
    """A client context that verifies the server (TLS 1.2 or later), with our certificate if set."""
    cafile = str(tls.ca_certificates) if tls is not None and tls.ca_certificates else None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls is not None and tls.certificate is not None and tls.private_key is not None:
        context.load_cert_chain(str(tls.certificate), str(tls.private_key))
    return context


class StowSender:
    """STOW-RS towards one DICOMweb server, keeping its HTTP connection alive between requests."""

    def __init__(self, destination: DicomWebDestination) -> None:
        self.destination = destination
        url = urllib.parse.urlsplit(destination.url)
        self._https = url.scheme == "https"
        self._host = url.hostname or ""
        self._port = url.port or (443 if self._https else 80)
        self._path = f"{url.path}/studies"
        self._tls = _tls_context(destination.tls) if self._https else None
        self._credentials = credentials(destination.auth)
        self._connection: http.client.HTTPConnection | None = None

    def send(self, outgoing: Outgoing) -> None:
        """Store one instance; raise ForwardError when the server did not store it."""
        failure = self.store([outgoing]).get(outgoing.sop_instance_uid)
        if failure is not None:
            raise failure

    def store(self, outgoings: Sequence[Outgoing]) -> dict[str, ForwardError]:
        """Store instances, ``max_instances_per_request`` per request; return the failures by
        SOP Instance UID (an instance absent from the result was stored)."""
        cap = self.destination.max_instances_per_request
        failures: dict[str, ForwardError] = {}
        for start in range(0, len(outgoings), cap):
            failures.update(self._request(outgoings[start:start + cap]))
        return failures

    def _request(self, batch: Sequence[Outgoing]) -> dict[str, ForwardError]:
        unauthorized_once = False
        stale_once = False
        while True:
            reused = self._connection is not None
            try:
                status, body = self._post(batch)
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                if reused and not stale_once:
                    stale_once = True
                    continue
                error = ForwardError(f"STOW-RS request failed: {type(exc).__name__}")
                return {outgoing.sop_instance_uid: error for outgoing in batch}
            if status == _UNAUTHORIZED and not unauthorized_once:
                unauthorized_once = True
                self._credentials.expire()
                continue
            return _failures(batch, status, body)

    def _post(self, batch: Sequence[Outgoing]) -> tuple[int, bytes]:
        boundary = new_boundary()
        length, chunks = encode_parts([outgoing.path for outgoing in batch], boundary)
        headers = {"Content-Type": request_content_type(boundary), "Content-Length": str(length),
                   "Accept": MEDIA_TYPE}
        authorization = self._credentials.header()
        if authorization is not None:
            headers["Authorization"] = authorization
        connection = self._connect()
        connection.request("POST", self._path, body=chunks, headers=headers)
        reply = connection.getresponse()
        body = reply.read()
        if reply.will_close:
            self.close()
        return reply.status, body

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is None:
            timeout = self.destination.connect_timeout
            connection = (http.client.HTTPSConnection(self._host, self._port, timeout=timeout,
                                                      context=self._tls)
                          if self._https else
                          http.client.HTTPConnection(self._host, self._port, timeout=timeout))
            connection.connect()
            assert connection.sock is not None
            connection.sock.settimeout(self.destination.read_timeout)
            self._connection = connection
        return self._connection

    def close(self) -> None:
        """Close the kept-alive connection, if any."""
        if self._connection is not None:
            self._connection.close()
        self._connection = None


def _failures(batch: Sequence[Outgoing], status: int, body: bytes) -> dict[str, ForwardError]:
    """Which instances of ``batch`` the response says were not stored, with why."""
    try:
        results = parse_response(body) if body.strip() else []
    except (ValueError, TypeError, AttributeError):
        results = None
    if status not in (200, 202, 409) or (results is None and status != 200):
        error = ForwardError(f"the destination answered HTTP {status} to STOW-RS")
        return {outgoing.sop_instance_uid: error for outgoing in batch}
    failed = {r.sop_instance_uid: r.failure_reason for r in results or [] if r.failure_reason is not None}
    stored = {r.sop_instance_uid for r in results or [] if r.failure_reason is None}
    failures: dict[str, ForwardError] = {}
    for outgoing in batch:
        uid = outgoing.sop_instance_uid
        if uid in failed:
            reason = failed[uid]
            assert reason is not None
            name = FailureReason(reason).name if reason in FailureReason._value2member_map_ else "failure"
            failures[uid] = ForwardError(f"the destination did not store the instance "
                                         f"(FailureReason 0x{reason:04X}, {name.lower()})")
        elif status != 200 and uid not in stored:
            failures[uid] = ForwardError(f"the destination answered HTTP {status} without "
                                         "listing the instance as stored")
    return failures
