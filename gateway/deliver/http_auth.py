"""The Authorization header a DICOMweb destination is sent, from credentials kept outside the YAML.

Tokens expire, and whoever renews them is usually another program: a sidecar that rewrites a
token file, or a command that prints a fresh token. So a bearer token file is read again as
soon as it changes (its size, time or inode), a command's token is used for ``token_lifetime``
and then fetched again, and a 401 from the server (:meth:`Credentials.expire`) drops the cached
token at once. A basic password is read at each request, so a rotated password file takes
effect without a reload.

Failing to get a credential raises :class:`~gateway.errors.ForwardError`: the instance waits
and is retried like any delivery failure, since a token refresher that is late is not a reason
to lose it.
"""

from __future__ import annotations

import base64
import os
import subprocess
import time
from typing import Protocol

from gateway.config import BasicAuth, BearerAuth, HttpAuth, NoAuth
from gateway.errors import ForwardError


class Credentials(Protocol):
    """Where the value of the Authorization header comes from."""

    def header(self) -> str | None:
        """The Authorization header value, or None to send none."""

    def expire(self) -> None:
        """The server refused the last header (401): fetch the credential again next time."""


class Anonymous:
    """No credentials."""

    def header(self) -> str | None:
        return None

    def expire(self) -> None:
        """Nothing is cached."""


class BasicCredentials:
    """``Basic`` user:password, the password read from its file or variable at each request."""

    def __init__(self, auth: BasicAuth) -> None:
        self.auth = auth

    def header(self) -> str | None:
        try:
            password = self.auth.password.read()
        except ValueError as exc:
            raise ForwardError(f"the destination's password is unavailable: {exc}") from None
        pair = f"{self.auth.username}:{password}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")

    def expire(self) -> None:
        """Nothing is cached."""


class BearerCredentials:
    """``Bearer`` token from a file (read again when it changes) or from a command's output."""

    def __init__(self, auth: BearerAuth) -> None:
        self.auth = auth
        self._token: str | None = None
        self._file_state: tuple[int, int, int] | None = None
        self._fetched_at = 0.0

    def header(self) -> str | None:
        return f"Bearer {self._file_token() if self.auth.token_file else self._command_token()}"

    def expire(self) -> None:
        self._token = None
        self._file_state = None

    def _file_token(self) -> str:
        path = self.auth.token_file
        assert path is not None
        try:
            status = os.stat(path)
            state = (status.st_mtime_ns, status.st_size, status.st_ino)
            if self._token is None or state != self._file_state:
                token = path.read_text(encoding="utf-8").strip()
                if not token:
                    raise ForwardError(f"the token file '{path}' is empty")
                self._token, self._file_state = token, state
        except (OSError, UnicodeDecodeError) as exc:
            raise ForwardError(f"the token file '{path}' cannot be read: {exc}") from None
        return self._token

    def _command_token(self) -> str:
        if self._token is not None and time.monotonic() - self._fetched_at < self.auth.token_lifetime:
            return self._token
        command = self.auth.token_command
        assert command
        try:
            done = subprocess.run(command, capture_output=True, timeout=self.auth.command_timeout,
                                  check=False, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ForwardError(f"the token command failed to run: {type(exc).__name__}") from None
        token = done.stdout.decode("utf-8", "replace").strip()
        if done.returncode != 0 or not token:
            raise ForwardError(f"the token command exited with {done.returncode} and printed "
                               f"{'a token' if token else 'no token'}")
        self._token, self._fetched_at = token, time.monotonic()
        return token


def credentials(auth: HttpAuth) -> Credentials:
    """The credentials for a destination's ``auth`` section."""
    if isinstance(auth, BasicAuth):
        return BasicCredentials(auth)
    if isinstance(auth, BearerAuth):
        return BearerCredentials(auth)
    assert isinstance(auth, NoAuth)
    return Anonymous()
