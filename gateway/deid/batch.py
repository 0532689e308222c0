"""De-identify files and folders outside the gateway (``dmask deid``).

Each input file gives one output file at the same relative path under the output folder, so
that ``dmask audit phi`` can pair inputs with outputs afterwards. The batch is only the file
handling around ``scrub``: pixels are not touched (a tags-only run).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from gateway.deid.scrub import scrub
from gateway.deid.settings import DeidSettings
from gateway.errors import DeidentificationError, DmaskError, FileAccessError, InvalidDataset


@dataclass(frozen=True)
class FileJob:
    """One input file and where its output goes."""

    source: Path
    target: Path


def plan_files(inputs: Iterable[Path], output: Path) -> list[FileJob]:
    """Pair every input file (folders walked recursively, sorted) with its output path."""
    jobs = []
    for given in inputs:
        if given.is_dir():
            jobs += [
                FileJob(path, output / given.name / path.relative_to(given))
                for path in sorted(given.rglob("*"))
                if path.is_file()
            ]
        else:
            jobs.append(FileJob(given, output / given.name))
    return jobs


def read_instance(path: Path) -> Dataset:
    """Read a DICOM file, with or without preamble and file meta.

    Raises
    ------
    InvalidDataset
        If the file is not a DICOM dataset.
    """
    try:
        ds = pydicom.dcmread(path, force=True)
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise InvalidDataset(f"not a readable DICOM file ({type(exc).__name__})") from None
    if "SOPClassUID" not in ds:
        raise InvalidDataset("no SOP Class UID: not a DICOM instance")
    meta = getattr(ds, "file_meta", None) or FileMetaDataset()
    if "TransferSyntaxUID" not in meta:
        implicit, little = ds.original_encoding
        meta.TransferSyntaxUID = UID(
            ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
        )
        ds.file_meta = meta
    return ds


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
