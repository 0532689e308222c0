"""Masking files and folders outside the gateway (``dmask mask``).

JPEG and PNG photos are masked as they are and written in the same format. DICOM files go
through the gateway's own steps with the chosen profile
(``gateway.process.pipeline.apply_profile``: no routing), so what comes out is what the gateway
would forward: masked and de-identified. They are read as ``dmask deid`` reads them
(``gateway.dicom.read``): with or without the Part 10 preamble and file meta. Each input gives
one output at the same relative path under the output folder; a refused file is reported with
its reason and the batch goes on. Burned-in text is redacted after the mask as the profile (or
the default) says. ``--preview`` adds a side-by-side PNG (input left, output right, the
redacted text boxes outlined) next to each output. Plain video files (.mp4, .mov) are masked
frame by frame with tracking (``gateway.files.video_file``); their preview is a contact sheet
of frames.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from gateway.config import Profile
from gateway.errors import ConfigError, DmaskError, FileAccessError, PixelDataError
from gateway.files.plan import FileJob
from gateway.files.preview import preview_path, write_instance_preview, write_preview
from gateway.files.video_file import VIDEO_SUFFIXES, mask_video_file
from gateway.mask.masker import FaceMasker
from gateway.mask.settings import MaskSettings
from gateway.text.settings import TextAction, TextSettings

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
JPEG_QUALITY = 95


@dataclass(frozen=True)
class MaskOutcome:
    """What became of one file: ``error`` is None when the output was written."""

    job: FileJob
    error: DmaskError | None = None


@dataclass(frozen=True)
class MaskProfile:
    """The mask settings to use and, for DICOM files, the configuration's profile and key."""

    settings: MaskSettings
    name: str | None = None
    profile: Profile | None = None
    secret: bytes | None = None


def resolve_profile(config_path: Path, profile: str | None) -> MaskProfile:
    """The named profile of the configuration, or its first masking profile, or the defaults.

    Without ``profile`` a configuration that cannot be loaded is not an error: photos are masked
    with the default settings and DICOM files are refused (they need the profile's scrubbing).

    Raises
    ------
    ConfigError
        ``profile`` is named but the configuration cannot be loaded, has no such profile, or
        the profile does not mask pixels.
    """
    from gateway.config import load_config

    try:
        loaded = load_config(config_path)
        secret = loaded.load_secret()
    except ConfigError:
        if profile is not None:
            raise
        return MaskProfile(MaskSettings())
    name = profile or next((n for n, p in loaded.profiles.items() if p.mask is not None), None)
    if name is None:
        return MaskProfile(MaskSettings())
    if name not in loaded.profiles:
        raise ConfigError(f"no profile {name!r} (have: {', '.join(loaded.profiles)})")
    chosen = loaded.profiles[name]
    if chosen.mask is None:
        raise ConfigError(f"profile {name!r} does not mask pixels (mask: null)")
    return MaskProfile(chosen.mask, name, chosen, secret)


def read_image(path: Path) -> np.ndarray:
    """A JPEG or PNG file as HxWx3 uint8 RGB."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise PixelDataError("the image file cannot be decoded")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def write_image(path: Path, rgb: np.ndarray) -> None:
    """Write ``rgb`` in the format ``path``'s suffix names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, encoded = cv2.imencode(path.suffix.lower(), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise PixelDataError("the masked image cannot be encoded")
    path.write_bytes(encoded.tobytes())


class MaskBatch:
    """Masks files with one masker; DICOM files through the pipeline of one profile.

    Parameters
    ----------
    masker
        The masker, made with ``profile.settings``.
    profile
        The settings and, for DICOM files, the configuration's profile and pseudonym key.
    preview
        Write side-by-side previews.
    """

    def __init__(self, masker: FaceMasker, profile: MaskProfile, preview: bool = False) -> None:
        self._masker = masker
        self._profile = profile
        self._preview = preview

    def run(self, jobs: list[FileJob]) -> Iterator[MaskOutcome]:
        """Mask every job, one outcome each; failures do not stop the batch."""
        for job in jobs:
            try:
                if job.source.suffix.lower() in IMAGE_SUFFIXES:
                    self._mask_photo(job)
                elif job.source.suffix.lower() in VIDEO_SUFFIXES:
                    self._mask_video(job)
                else:
                    self._mask_instance(job)
            except DmaskError as error:
                yield MaskOutcome(job, error)
            except OSError as error:  # unreadable input, unwritable output: this file only
                yield MaskOutcome(job, FileAccessError(f"cannot read or write a file ({error.strerror})"))
            else:
                yield MaskOutcome(job)

    def _mask_photo(self, job: FileJob) -> None:
        from gateway.process.pipeline import redact_text

        rgb = read_image(job.source)
        still = self._masker.mask_still(rgb)
        masked = still.rgb
        text = self._text_settings()
        polygons: tuple[np.ndarray, ...] = ()
        if text.action != TextAction.KEEP:
            redaction = redact_text([masked], text, {}, [still.rendered])
            masked, polygons = redaction.frames[0], redaction.polygons
        write_image(job.target, masked)
        if self._preview:
            write_preview(job.target, rgb, masked, polygons)

    def _mask_video(self, job: FileJob) -> None:
        job.target.parent.mkdir(parents=True, exist_ok=True)
        preview = preview_path(job.target) if self._preview else None
        mask_video_file(self._masker, job.source, job.target, preview, text=self._text_settings())

    def _text_settings(self) -> TextSettings:
        """The profile's burned-in text step; the defaults (redact) without a profile."""
        return self._profile.profile.burned_in_text if self._profile.profile is not None else TextSettings()

    def _mask_instance(self, job: FileJob) -> None:
        from gateway.dicom.read import read_part10
        from gateway.process.pipeline import apply_profile, parse

        chosen = self._profile
        if chosen.profile is None or chosen.name is None or chosen.secret is None:
            raise ConfigError("DICOM files need a configuration with a masking profile and its secret")
        data = read_part10(job.source)
        processed = apply_profile(parse(data), chosen.profile, chosen.secret, profile_name=chosen.name,
                                  masker=self._masker)
        job.target.parent.mkdir(parents=True, exist_ok=True)
        job.target.write_bytes(processed.encoded)
        if self._preview:
            write_instance_preview(job.target, parse(data), processed.encoded, processed.text_polygons)
