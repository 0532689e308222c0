"""De-identify files and folders outside the gateway (``dmask deid``).

Each input file gives one output file at the same relative path under the output folder, so
that ``dmask audit phi`` and ``dmask audit text`` can pair inputs with outputs afterwards. Faces
are not masked (a tags-only run), but burned-in text is treated as the gateway treats it on a
tags-only route: an instance with Pixel Data goes through the pipeline's own steps
(``gateway.process.pipeline.apply_profile`` with the profile's mask left out), so the text
step, its configuration and the marking are the gateway's. An instance without Pixel Data
(a report, a plan, a key object) and any instance of a profile that keeps text are only
scrubbed: their pixels, if any, are neither decoded nor rewritten.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from io import BytesIO

import numpy as np
from pydicom.dataset import Dataset

from gateway.config import Profile
from gateway.deid.scrub import scrub
from gateway.dicom.read import read_instance
from gateway.errors import DeidentificationError, DmaskError, FileAccessError
from gateway.files.plan import FileJob
from gateway.files.preview import write_instance_preview
from gateway.process.pipeline import apply_profile
from gateway.text.settings import TextAction

#: What :attr:`DeidOutcome.burned_in_text` says of an instance that has no pixels to examine.
NO_PIXEL_DATA = "no pixel data"


@dataclass(frozen=True)
class DeidOutcome:
    """What became of one file: ``error`` is None when the output was written.

    ``burned_in_text`` is the pipeline's summary of the text step (``kept``, ``none found``,
    ``redacted N``, with ``, text left`` when the verification still finds text), or
    :data:`NO_PIXEL_DATA`.
    """

    job: FileJob
    error: DmaskError | None = None
    burned_in_text: str = ""


class DeidBatch:
    """De-identifies files with one profile of the configuration.

    Parameters
    ----------
    profile
        The profile: its ``deid`` block and its ``burned_in_text`` step apply, its mask does not.
    secret
        The pseudonym key.
    profile_name
        The profile's name (recorded in the de-identification method).
    preview
        Write a side-by-side PNG (input, output with the filled text outlined) next to every
        output whose pixels went through the text step.
    """

    def __init__(self, profile: Profile, secret: bytes, profile_name: str, preview: bool = False) -> None:
        self._profile = profile.model_copy(update={"mask": None})  # tags only: faces are not masked
        self._secret = secret
        self._name = profile_name
        self._preview = preview

    def run(self, jobs: Iterable[FileJob]) -> Iterator[DeidOutcome]:
        """De-identify every job, one outcome each; failures do not stop the batch."""
        for job in jobs:
            try:
                summary = self.deidentify(job)
            except DmaskError as exc:
                yield DeidOutcome(job, exc)
            else:
                yield DeidOutcome(job, burned_in_text=summary)

    def deidentify(self, job: FileJob) -> str:
        """De-identify one file into ``job.target``; return what the text step did.

        Raises
        ------
        DmaskError
            If the file cannot be read, de-identified (``burned-in-text`` when the profile
            refuses text and some is found) or written.
        """
        ds = read_instance(job.source)
        has_pixels = "PixelData" in ds
        polygons: tuple[np.ndarray, ...] | None = None  # None: the text step did not run
        try:
            if has_pixels and self._profile.burned_in_text.action != TextAction.KEEP:
                result = apply_profile(ds, self._profile, self._secret, profile_name=self._name, masker=None)
                encoded, summary, polygons = result.encoded, result.burned_in_text, result.text_polygons
            else:
                out = scrub(ds, self._profile.deid, self._secret, pixels_masked=False, profile_name=self._name)
                encoded, summary = _part10(out), "kept" if has_pixels else NO_PIXEL_DATA
        except DmaskError:
            raise
        except Exception as exc:  # a malformed value pydicom cannot convert: report, go on
            raise DeidentificationError(f"cannot de-identify ({type(exc).__name__})") from None
        try:
            job.target.parent.mkdir(parents=True, exist_ok=True)
            job.target.write_bytes(encoded)
            if self._preview and polygons is not None:
                write_instance_preview(job.target, read_instance(job.source), encoded, polygons)
        except OSError as exc:
            raise FileAccessError(f"cannot write the output ({exc.strerror or type(exc).__name__})") from None
        return summary


def _part10(ds: Dataset) -> bytes:
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
