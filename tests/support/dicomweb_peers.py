"""DICOMweb test peers on loopback, written apart from the gateway's own multipart code:
a STOW-RS server that plays a PACS (or a proxy in front of one) and a STOW-RS client.

:class:`StowPeer` parses requests with the standard library's ``email`` package, checks the
bearer token it is told to expect, can answer 503 for a while, can refuse chosen instances
once with a FailureReason, and either keeps what it stored or passes the request on to an
upstream DICOMweb server (Orthanc) and relays its answer (when it refuses some instances of a
request, the others go upstream in a request of their own, and the answer lists both).
"""

from __future__ import annotations

import email.parser
import email.policy
import io
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pydicom

from tests.support.loopback import free_port

FAILED_SOP_SEQUENCE = "00081198"
REFERENCED_SOP_SEQUENCE = "00081199"
FAILURE_REASON = "00081197"
REFERENCED_SOP_INSTANCE_UID = "00081155"


def split_multipart(content_type: str, body: bytes) -> list[tuple[str, bytes]]:
    """The (content type, bytes) of each part of a multipart body, parsed by ``email``."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    assert message.is_multipart(), "not a multipart body"
    return [(part.get_content_type(), part.get_payload(decode=True) or b"")
            for part in message.iter_parts()]


def _item(ds: pydicom.Dataset, reason: int | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"00081150": {"vr": "UI", "Value": [str(ds.SOPClassUID)]},
                            REFERENCED_SOP_INSTANCE_UID: {"vr": "UI", "Value": [str(ds.SOPInstanceUID)]}}
    if reason is not None:
        item[FAILURE_REASON] = {"vr": "US", "Value": [reason]}
    return item


class StowPeer:
    """A STOW-RS server on 127.0.0.1 (``url`` is its base URL, POST to ``url/studies``)."""

    def __init__(self, upstream: str | None = None, upstream_auth: str | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/dicom-web"
        self.upstream = upstream
        self.upstream_auth = upstream_auth
        self.expected_token: str | None = None
        self.unavailable_until = 0.0
        #: SOP Instance UID (or InstanceNumber, which de-identification keeps) -> FailureReason
        #: to answer once for that instance.
        self.fail_once: dict[str | int, int] = {}
        #: The same, answered every time.
        self.fail_always: dict[str | int, int] = {}
        self.requests: list[list[str]] = []  # SOP Instance UIDs of each request that got through
        self.statuses: list[int] = []
        self.authorizations: list[str | None] = []
        self.stored: dict[str, pydicom.Dataset] = {}
        self.lock = threading.Lock()
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status, content_type, reply = peer.answer(self.headers, body)
                with peer.lock:
                    peer.statuses.append(status)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, headers: Any, body: bytes) -> tuple[int, str, bytes]:
        with self.lock:
            self.authorizations.append(headers.get("Authorization"))
        if self.expected_token is not None and headers.get("Authorization") != f"Bearer {self.expected_token}":
            return 401, "text/plain", b"bad token\n"
        if time.monotonic() < self.unavailable_until:
            return 503, "text/plain", b"busy\n"
        raw = [data for _, data in split_multipart(headers["Content-Type"], body)]
        parts = [pydicom.dcmread(io.BytesIO(data)) for data in raw]
        with self.lock:
            self.requests.append([str(ds.SOPInstanceUID) for ds in parts])
            refused = {str(ds.SOPInstanceUID): self.fail_once.pop(key) for ds in parts
                       for key in (str(ds.SOPInstanceUID), int(ds.get("InstanceNumber") or 0))
                       if key in self.fail_once}
            refused.update({str(ds.SOPInstanceUID): self.fail_always[key] for ds in parts
                            for key in (str(ds.SOPInstanceUID), int(ds.get("InstanceNumber") or 0))
                            if key in self.fail_always})
        if self.upstream is not None and not refused:
            return self._forward(headers["Content-Type"], body)
        response: dict[str, Any] = {}
        failed = [_item(ds, refused[str(ds.SOPInstanceUID)]) for ds in parts
                  if str(ds.SOPInstanceUID) in refused]
        stored = [ds for ds in parts if str(ds.SOPInstanceUID) not in refused]
        if self.upstream is not None and stored:
            kept = [("application/dicom", data) for data, ds in zip(raw, parts, strict=True)
                    if str(ds.SOPInstanceUID) not in refused]
            upstream = self._forward(*multipart_body(kept))
            if upstream[0] != 200:
                return upstream
        if failed:
            response[FAILED_SOP_SEQUENCE] = {"vr": "SQ", "Value": failed}
        if stored:
            response[REFERENCED_SOP_SEQUENCE] = {"vr": "SQ", "Value": [_item(ds) for ds in stored]}
        with self.lock:
            self.stored.update({str(ds.SOPInstanceUID): ds for ds in stored})
        status = 200 if not failed else 202 if stored else 409
        return status, "application/dicom+json", json.dumps(response).encode()

    def _forward(self, content_type: str, body: bytes) -> tuple[int, str, bytes]:
        headers = {"Content-Type": content_type, "Accept": "application/dicom+json"}
        if self.upstream_auth is not None:
            headers["Authorization"] = self.upstream_auth
        request = urllib.request.Request(f"{self.upstream}/studies", data=body, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                return reply.status, reply.headers["Content-Type"], reply.read()
        except urllib.error.HTTPError as error:
            return error.code, error.headers.get("Content-Type", "text/plain"), error.read()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def multipart_body(parts: Iterable[tuple[str, bytes]], boundary: str | None = None) -> tuple[str, bytes]:
    """A STOW-RS request body of (content type, bytes) parts, and its Content-Type."""
    boundary = boundary or f"test-{uuid.uuid4().hex}"
    body = b"".join(f"--{boundary}\r\nContent-Type: {kind}\r\n\r\n".encode() + data + b"\r\n"
                    for kind, data in parts) + f"--{boundary}--\r\n".encode()
    return f'multipart/related; type="application/dicom"; boundary={boundary}', body


def post_studies(url: str, body: bytes, content_type: str, token: str | None = None,
                 context: Any = None) -> tuple[int, str, bytes]:
    """POST a body to ``url`` with urllib; (status, Content-Type, body), error statuses included."""
    headers = {"Content-Type": content_type, "Accept": "application/dicom+json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as reply:
            return reply.status, reply.headers.get_content_type(), reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get_content_type(), error.read()


def post_files(url: str, files: Iterable[Path], token: str | None = None) -> tuple[int, str, bytes]:
    """POST DICOM files as one STOW-RS request."""
    content_type, body = multipart_body(("application/dicom", path.read_bytes()) for path in files)
    return post_studies(url, body, content_type, token)


def sequence_uids(response: bytes, tag: str) -> dict[str, int | None]:
    """SOP Instance UID -> FailureReason (None for stored items) of one sequence of a response."""
    data = json.loads(response)
    found: dict[str, int | None] = {}
    for item in data.get(tag, {}).get("Value", []):
        uid = (item.get(REFERENCED_SOP_INSTANCE_UID, {}).get("Value") or [""])[0]
        reason = (item.get(FAILURE_REASON, {}).get("Value") or [None])[0]
        found[uid] = reason
    return found
