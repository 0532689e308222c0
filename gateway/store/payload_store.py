"""Where a shared queue keeps its payloads: a folder every node mounts, or an S3 bucket.

Receivers write an original here before its job row is committed, so a job never names a
payload that is not durable yet; processors read originals and keep results for retry rounds
here, so any processor can take over any job. A payload is written from a local file and read
back into one, in chunks: a multi-frame video is never held whole in memory.

Failures of the store itself (unreachable, refused, out of space) raise
:class:`~gateway.errors.SpoolUnavailable` or :class:`~gateway.errors.SpoolFull`: states to wait
out, never a job's fault; receive answers 0xA700 and the serve loop tries again later.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path
from typing import Any, Protocol

from gateway.config import FolderPayloads, PayloadStore, S3Payloads
from gateway.errors import OUT_OF_SPACE_ERRNOS, SpoolFull, SpoolUnavailable
from gateway.store.payload_files import fsync_dir, secure_delete

_CHUNK = 1 << 20


def new_key(kind: str, suffix: str = ".dcm") -> str:
    """A fresh payload key, e.g. ``originals/3f2a....dcm`` (never derived from patient data)."""
    return f"{kind}/{secrets.token_hex(16)}{suffix}"


class Payloads(Protocol):
    """A durable store of payloads addressed by key."""

    def put(self, source: Path, key: str) -> None:
        """Store a local file under ``key``; durable once this returns."""

    def fetch(self, key: str, target: Path) -> None:
        """Copy the payload to a local file. Raises :class:`LookupError` when it is missing."""

    def in_place(self, key: str) -> Path | None:
        """The payload as a file every node can read directly, or None (fetch it)."""

    def delete(self, key: str) -> None:
        """Remove a payload for good (a missing one is not an error)."""

    def check(self) -> None:
        """Raise SpoolUnavailable when the store cannot be reached."""


def _copy(source: Path, target: Path) -> None:
    """Stream a file to another, fsynced, 0600."""
    with open(source, "rb") as reader, \
            open(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as writer:
        shutil.copyfileobj(reader, writer, _CHUNK)
        writer.flush()
        os.fsync(writer.fileno())


class FolderStore:
    """Payloads as files in a shared folder: temporary file, fsync, rename, directory fsync."""

    def __init__(self, settings: FolderPayloads) -> None:
        self.path = Path(settings.path)
        try:
            for kind in ("originals", "outputs"):
                (self.path / kind).mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise SpoolUnavailable(f"the payload folder cannot be used: {exc.strerror}") from None

    def _file(self, key: str) -> Path:
        return self.path / key

    def put(self, source: Path, key: str) -> None:
        target = self._file(key)
        temporary = target.with_name(f".{target.name}.tmp")
        try:
            _copy(source, temporary)
            os.rename(temporary, target)
            fsync_dir(target.parent)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            if exc.errno in OUT_OF_SPACE_ERRNOS:
                raise SpoolFull("the payload folder is full") from None
            raise SpoolUnavailable(f"cannot write to the payload folder: {exc.strerror}") from None

    def fetch(self, key: str, target: Path) -> None:
        try:
            _copy(self._file(key), target)
        except FileNotFoundError:
            raise LookupError(f"no payload {key}") from None
        except OSError as exc:
            raise SpoolUnavailable(f"cannot read the payload folder: {exc.strerror}") from None

    def in_place(self, key: str) -> Path | None:
        return self._file(key)

    def delete(self, key: str) -> None:
        secure_delete(self._file(key))

    def check(self) -> None:
        if not os.access(self.path / "originals", os.W_OK | os.X_OK):
            raise SpoolUnavailable("the payload folder is not writable (is it mounted?)")


class S3Store:
    """Payloads as objects in an S3-compatible bucket, uploaded and downloaded in parts.

    A PUT (or a completed multipart upload) that S3 answered with success is durable by the
    store's contract; nothing is acknowledged before that answer.
    """

    def __init__(self, settings: S3Payloads) -> None:
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        credentials: dict[str, str] = {}
        if settings.access_key_id is not None and settings.secret_access_key is not None:
            try:
                credentials = {"aws_access_key_id": settings.access_key_id.read(),
                               "aws_secret_access_key": settings.secret_access_key.read()}
            except ValueError as exc:
                raise SpoolUnavailable(f"payload store credentials: {exc}") from None
        self.bucket = settings.bucket
        self.prefix = settings.prefix
        self._client: Any = boto3.client(
            "s3", endpoint_url=settings.endpoint_url, region_name=settings.region or "us-east-1",
            config=Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 2}),
            **credentials)
        self._transfer = TransferConfig(multipart_threshold=settings.part_size,
                                        multipart_chunksize=settings.part_size,
                                        max_concurrency=4, use_threads=True)

    def _key(self, key: str) -> str:
        return self.prefix + key

    def _unavailable(self, exc: Exception) -> SpoolUnavailable:
        return SpoolUnavailable(f"the payload store failed: {type(exc).__name__}")

    def put(self, source: Path, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.upload_file(str(source), self.bucket, self._key(key), Config=self._transfer)
        except (BotoCoreError, ClientError) as exc:
            raise self._unavailable(exc) from None

    def fetch(self, key: str, target: Path) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.download_file(self.bucket, self._key(key), str(target), Config=self._transfer)
            os.chmod(target, 0o600)
        except ClientError as exc:
            target.unlink(missing_ok=True)
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                raise LookupError(f"no payload {key}") from None
            raise self._unavailable(exc) from None
        except BotoCoreError as exc:
            target.unlink(missing_ok=True)
            raise self._unavailable(exc) from None

    def in_place(self, key: str) -> Path | None:
        return None

    def delete(self, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except (BotoCoreError, ClientError) as exc:
            raise self._unavailable(exc) from None

    def check(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as exc:
            raise self._unavailable(exc) from None


def open_payloads(settings: PayloadStore) -> Payloads:
    """The payload store a ``spool.payloads`` section names."""
    if isinstance(settings, S3Payloads):
        return S3Store(settings)
    return FolderStore(settings)
