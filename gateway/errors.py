"""Typed errors of dmask.

Every failure that can stop an instance is a type here, so that the pipeline can map it to a
quarantine reason and a DICOM status in one place (``gateway.process.pipeline``) instead of parsing
messages. Messages never carry patient data: they name what went wrong, not whose data it was.
"""

from __future__ import annotations

import errno

#: ``errno`` of a write refused for lack of space: the file system is full, or the user's quota.
OUT_OF_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class DmaskError(Exception):
    """Base of every error dmask raises on purpose.

    ``reason`` is a short, stable, machine-readable code used for quarantine reasons, metric
    labels and ``dmask requeue --reason``.
    """

    reason = "error"


class ConfigError(DmaskError):
    """The configuration is invalid; the message names the key path, the line and what was expected."""

    reason = "config"


class StartupError(DmaskError):
    """``dmask serve`` cannot start: a port it is configured to listen on cannot be bound."""

    reason = "startup"

    @classmethod
    def cannot_bind(cls, host: str, port: int, error: OSError) -> StartupError:
        """``cannot bind 127.0.0.1:11112: Address already in use``."""
        return cls(f"cannot bind {host}:{port}: {error.strerror or error}")


class InvalidDataset(DmaskError):
    """The received bytes are not a DICOM dataset we can read (truncated, wrong VR, bad meta)."""

    reason = "invalid-dataset"


class UnsupportedTransferSyntax(DmaskError):
    """The pixel data is in a transfer syntax we cannot decode (or encode)."""

    reason = "unsupported-transfer-syntax"


class PixelDataError(DmaskError):
    """The pixel data cannot be decoded: shorter than declared, corrupt codestream, bad attributes."""

    reason = "pixel-data"


class UnsupportedPixelFormat(DmaskError):
    """The decoded pixels have a layout the mask cannot work on (bit depth, samples, planes)."""

    reason = "unsupported-pixel-format"


class NoFaceFound(DmaskError):
    """A profile requires a face and none was found in the image (or in some frames)."""

    reason = "no-face"


class ResidualFace(DmaskError):
    """An independent detector still finds a face on the masked output that no mask covers."""

    reason = "residual-face"


class BurnedInText(DmaskError):
    """The profile refuses instances with text in the pixels, and text was found."""

    reason = "burned-in-text"


class TrackingGap(DmaskError):
    """In a frame sequence the face was lost for longer than the tolerated gap."""

    reason = "tracking-gap"


class RouteRejected(DmaskError):
    """The first matching route says ``reject`` (or no route matches)."""

    reason = "route-rejected"


class DeidentificationError(DmaskError):
    """The attribute scrubber could not apply the profile (e.g. an attribute it cannot clean)."""

    reason = "deidentification"


class FileAccessError(DmaskError):
    """A file of a batch command (``dmask mask``, ``dmask deid``) cannot be read or written."""

    reason = "file-access"


class KeyFileError(DmaskError):
    """``dmask keygen`` cannot make the pseudonym key file: it exists already, or cannot be written."""

    reason = "key-file"


class AuditError(DmaskError):
    """An audit cannot run on its input (faces folder layout, transform name, missing extra)."""

    reason = "audit"


class SpoolFull(DmaskError):
    """The spool cannot take an instance or record a change: disk below its free-space floor,
    size cap, or its disk (or quota) ran out of space. A state to wait out, never a job's fault:
    receive answers 0xA700 and the serve loop retries its writes once space is freed."""

    reason = "spool-full"


class SpoolUnavailable(SpoolFull):
    """The shared queue (PostgreSQL) or payload store cannot be reached. Handled as a full
    spool: receive answers 0xA700 (never Success) and the serve loop retries its writes."""

    reason = "spool-unavailable"


class DuplicateInstance(DmaskError):
    """A folder destination already holds another instance with this SOP Instance UID and its
    policy is to quarantine such a job rather than choose between them; not retried."""

    reason = "duplicate-instance"


class SpoolSchemaError(DmaskError):
    """The spool's state database has tables this dmask cannot use: a newer schema version, or
    an unversioned database that is not a spool's. The gateway refuses to start on it."""

    reason = "spool-schema"


class ForwardError(DmaskError):
    """A destination did not take an instance (unreachable, refused, failure status); retried."""

    reason = "forward-failed"



class MultipartError(DmaskError):
    """A multipart/related body (a STOW-RS request) is malformed or ends before its closing
    boundary; the whole request is refused (HTTP 400) and nothing of it is admitted."""

    reason = "multipart"
