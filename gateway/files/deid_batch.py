"""De-identify files and folders outside the gateway (``dmask deid``).

Each input file gives one output file at the same relative path under the output folder, so
that ``dmask audit phi`` can pair inputs with outputs afterwards. The batch is only the file
handling around ``scrub``: pixels are not touched (a tags-only run).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from gateway.deid.scrub import scrub
from gateway.deid.settings import DeidSettings
from gateway.dicom.read import read_instance
from gateway.errors import DeidentificationError, DmaskError, FileAccessError
from gateway.files.plan import FileJob


def deidentify_file(
    job: FileJob, settings: DeidSettings, secret: bytes, profile_name: str | None = None
) -> None:
    """Scrub one file's attributes and write the result to ``job.target``.

    Raises
    ------
    DmaskError
        If the file cannot be read or de-identified.
    """
    ds = read_instance(job.source)
    try:
        out = scrub(ds, settings, secret, pixels_masked=False, profile_name=profile_name)
    except DmaskError:
        raise
    except Exception as exc:  # a malformed value pydicom cannot convert: report, go on
        raise DeidentificationError(f"cannot scrub ({type(exc).__name__})") from None
    job.target.parent.mkdir(parents=True, exist_ok=True)
    try:
        out.save_as(job.target, enforce_file_format=True)
    except (OSError, ValueError, TypeError) as exc:
        raise FileAccessError(f"cannot write the output ({type(exc).__name__})") from None


def deidentify_files(
    jobs: Iterable[FileJob], settings: DeidSettings, secret: bytes, profile_name: str | None = None
) -> Iterator[tuple[FileJob, DmaskError | None]]:
    """De-identify every job; yield each with its error (None on success) and go on."""
    for job in jobs:
        try:
            deidentify_file(job, settings, secret, profile_name)
        except DmaskError as exc:
            yield job, exc
        else:
            yield job, None
