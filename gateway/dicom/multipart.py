"""multipart/related framing of STOW-RS requests (RFC 2046 5.1, RFC 2387, PS3.18 8.6.1.2).

A STOW-RS request carries one DICOM Part 10 file per body part. Both directions stream: the
sender yields the parts from their files chunk by chunk, and the receiver writes each part to
its own file as it arrives, so neither holds a study in memory. Only the delimiter search keeps
a buffer, of one chunk plus the delimiter's length.
"""

from __future__ import annotations

import email.message
import os
import secrets
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from gateway.errors import MultipartError

DICOM_MEDIA_TYPE = "application/dicom"
_CHUNK = 1 << 20
_MAX_PART_HEADERS = 16384
_CRLF = b"\r\n"


def media_type(header: str | None) -> tuple[str, dict[str, str]]:
    """The media type of a Content-Type header (lower case, ``""`` when absent) and its
    parameters (names lower case, quoted values unquoted)."""
    if not header:
        return "", {}
    message = email.message.Message()
    message["content-type"] = header
    params = message.get_params() or []
    kind = params[0][0].lower() if params else ""
    return kind, {name.lower(): str(value) for name, value in params[1:]}


def new_boundary() -> str:
    """A boundary that no DICOM file will contain by chance (128 random bits)."""
    return f"dmask-{secrets.token_hex(16)}"


def request_content_type(boundary: str) -> str:
    """The Content-Type of a STOW-RS request of Part 10 instances."""
    return f'multipart/related; type="{DICOM_MEDIA_TYPE}"; boundary={boundary}'


def encode_parts(paths: Sequence[Path], boundary: str) -> tuple[int, Iterator[bytes]]:
    """The length of a multipart/related body of the files at ``paths`` and its bytes, in chunks.

    The length is known before the first byte is read, so the request carries a Content-Length
    (many servers refuse chunked uploads).
    """
    head = f"--{boundary}\r\nContent-Type: {DICOM_MEDIA_TYPE}\r\n\r\n".encode("ascii")
    tail = f"--{boundary}--\r\n".encode("ascii")
    length = sum(len(head) + path.stat().st_size + len(_CRLF) for path in paths) + len(tail)

    def chunks() -> Iterator[bytes]:
        for path in paths:
            yield head
            with open(path, "rb") as handle:
                while chunk := handle.read(_CHUNK):
                    yield chunk
            yield _CRLF
        yield tail

    return length, chunks()


class Readable(Protocol):
    """A stream of the body (a socket's file, a buffered file)."""

    def read(self, size: int = -1, /) -> bytes:
        """Up to ``size`` bytes; empty at the end."""


@dataclass(frozen=True)
class ReceivedPart:
    """One body part written to a file: its media type (``""`` when it named none)."""

    content_type: str
    path: Path


class _Body:
    """The request body, read at most ``length`` bytes, with a delimiter search over a small buffer."""

    def __init__(self, stream: Readable, length: int) -> None:
        self.stream = stream
        self.remaining = length
        self.buffer = b""

    def _fill(self) -> None:
        if self.remaining <= 0:
            raise MultipartError("the body ends before its closing boundary")
        chunk = self.stream.read(min(_CHUNK, self.remaining))
        if not chunk:
            raise MultipartError("the connection closed before the whole body arrived")
        self.remaining -= len(chunk)
        self.buffer += chunk

    def take(self, count: int) -> bytes:
        """The next ``count`` bytes."""
        while len(self.buffer) < count:
            self._fill()
        taken, self.buffer = self.buffer[:count], self.buffer[count:]
        return taken

    def drain(self) -> None:
        """Read and drop what is left of the body (so the connection can take another request)."""
        self.buffer = b""
        while self.remaining > 0:
            self._fill()
            self.buffer = b""

    def until(self, delimiter: bytes, sink: Callable[[bytes], object], limit: int | None = None) -> None:
        """Pass everything before ``delimiter`` to ``sink`` and consume the delimiter."""
        keep = len(delimiter) - 1
        passed = 0
        while True:
            found = self.buffer.find(delimiter)
            if found >= 0:
                sink(self.buffer[:found])
                self.buffer = self.buffer[found + len(delimiter):]
                return
            if len(self.buffer) > keep:
                cut = len(self.buffer) - keep
                sink(self.buffer[:cut])
                passed += cut
                self.buffer = self.buffer[cut:]
            if limit is not None and passed > limit:
                raise MultipartError("a part's headers are too long")
            self._fill()


def _ignore(_: bytes) -> None:
    """A sink for bytes that carry no meaning (preamble, padding, epilogue)."""


def _part_content_type(raw: bytes) -> str:
    for line in raw.split(_CRLF):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-type":
            return media_type(value.decode("latin-1").strip())[0]
    return ""


def receive_parts(stream: Readable, length: int, boundary: str, folder: Path) -> list[ReceivedPart]:
    """Write each body part of a multipart body of ``length`` bytes to a new file in ``folder``.

    Raises
    ------
    MultipartError
        The body is not multipart framing with this boundary, or it ends (or the connection
        closes) before the closing delimiter. The files written so far are removed.
    """
    body = _Body(stream, length)
    dash_boundary = b"--" + boundary.encode("latin-1")
    parts: list[ReceivedPart] = []
    try:
        body.until(dash_boundary, _ignore)  # the preamble
        while (after := body.take(2)) != b"--":
            body.buffer = after + body.buffer
            body.until(_CRLF, _ignore)  # transport padding up to the end of the delimiter line
            headers = bytearray()
            if (start := body.take(2)) != _CRLF:  # a part without headers starts right away
                body.buffer = start + body.buffer
                body.until(_CRLF * 2, headers.extend, limit=_MAX_PART_HEADERS)
            parts.append(_receive_part(body, dash_boundary, _part_content_type(bytes(headers)),
                                       folder))
        body.drain()  # the epilogue
    except BaseException:
        for part in parts:
            part.path.unlink(missing_ok=True)
        raise
    return parts


def _receive_part(body: _Body, dash_boundary: bytes, content_type: str, folder: Path) -> ReceivedPart:
    descriptor, name = tempfile.mkstemp(dir=folder, suffix=".part")
    path = Path(name)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            body.until(_CRLF + dash_boundary, handle.write)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return ReceivedPart(content_type, path)
