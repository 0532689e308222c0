"""Loopback helpers for tests that start real servers: ports to listen on, HTTP GET.

A port the kernel picked for a listening socket that was then closed (bind to port 0) lies in
the ephemeral range, where every outgoing connection of the machine also takes its local
port: one may take it before the server binds it. :func:`free_port` hands out ports outside
that range instead, each one only once per test process and checked free when handed out.
"""

from __future__ import annotations

import errno
import os
import random
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
#: Used when the kernel does not say (the range IANA suggests for dynamic ports).
_DEFAULT_EPHEMERAL = (49152, 65535)
#: Below this are the registered ports of common services (11112 DICOM, 4242 Orthanc, 8080 ...).
_LOWEST = 15000


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range of local ports for outgoing connections (first, last)."""
    try:
        low, high = _EPHEMERAL_RANGE.read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return _DEFAULT_EPHEMERAL


def _candidates() -> Iterator[int]:
    """Every port from ``_LOWEST`` up outside the ephemeral range, once, from a starting point
    that differs between processes, so that test runs side by side seldom try the same ports."""
    low, high = ephemeral_range()
    ports = [port for port in range(_LOWEST, 65536) if not low <= port <= high]
    start = random.Random(os.getpid()).randrange(len(ports))
    yield from ports[start:]
    yield from ports[:start]


_unused = _candidates()


def free_port() -> int:
    """A TCP port on 127.0.0.1 outside the ephemeral range that nothing listens on right now
    and that this process has not handed out before."""
    for port in _unused:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError as error:
                if error.errno in (errno.EADDRINUSE, errno.EACCES):
                    continue
                raise
            return port
    raise RuntimeError("no free port left outside the ephemeral range")


def http_get(port: int, path: str) -> tuple[int, str]:
    """Status and body of a GET on a loopback HTTP port; error statuses are returned, not raised."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
