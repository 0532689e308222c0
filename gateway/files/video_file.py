"""Plain video files (.mp4, .mov) for ``dmask mask``, and previews of masked clips.

A convenience beside DICOM: a clinician can try the mask on a clip from a phone or a slit lamp
camera. The output is H.264 High Profile in the same container type, at the same frame rate,
size and frame count, with no audio and no metadata of the input (voices and device tags
identify). Frames are streamed: the clip is never held in memory as decoded RGB.

Burned-in text is then looked for in the written clip as in a DICOM video instance
(``gateway.process.pipeline.redact_text``: the frames the text step samples, the union of what
it finds filled in every frame, the filled frames verified). Only the sampled frames are held
for it: the clip is decoded once to choose them (``gateway.text.redactor.examined_frames``) and
once to collect them, and the redactor examines exactly those. When something was found every
frame is filled and the clip encoded again; a clip refused for its text, or whose text step
fails, leaves no output.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import overload

import av
import cv2
import numpy as np
from pydicom.uid import MPEG4HP41, MPEG4HP422D

from gateway.codec.video import read_video_stream, write_video_stream
from gateway.errors import PixelDataError
from gateway.mask.masker import FaceMasker
from gateway.mask.video import mask_frames
from gateway.process.pipeline import redact_text
from gateway.text.redactor import examined_frames, outlined
from gateway.text.regions import fill_mask
from gateway.text.settings import TextAction, TextSettings

VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".m4v"})
"""File name suffixes ``dmask mask`` treats as plain video files."""

CONTACT_SHEET_FRAMES = 6
"""Frames (original beside masked) in a preview contact sheet."""

CONTACT_SHEET_WIDTH = 960
"""Width in pixels of one row (original + masked) of the contact sheet."""


@dataclass(frozen=True)
class VideoInfo:
    """What the output must reproduce: size, frame rate and (as the container states it) length."""

    width: int
    height: int
    frame_rate: Fraction
    frame_count: int


def probe(path: Path) -> VideoInfo:
    """Size, frame rate and frame count of the first video stream of `path`.

    Raises
    ------
    PixelDataError
        The file does not open or has no video stream.
    """
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise PixelDataError("the file has no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            if not rate:
                raise PixelDataError("the video stream states no frame rate")
            return VideoInfo(stream.width, stream.height, Fraction(rate), stream.frames)
    except av.error.FFmpegError as exc:
        raise PixelDataError(f"the video file cannot be opened ({type(exc).__name__})") from exc


def read_frames(path: Path) -> Iterator[np.ndarray]:
    """The frames of `path`'s first video stream as ``H x W x 3`` ``uint8`` RGB, one at a time."""
    try:
        with av.open(str(path)) as container:
            yield from read_video_stream(container)
    except av.error.FFmpegError as exc:
        raise PixelDataError(f"the video file cannot be opened ({type(exc).__name__})") from exc


def write_frames(path: Path, frames: Iterable[np.ndarray], frame_rate: Fraction) -> int:
    """Write `frames` to `path` as H.264 (container from the suffix), returning the frame count.

    Level 4.1 up to 30 frames/s, 4.2 above, as for DICOM video.
    """
    target = MPEG4HP422D if frame_rate > 30 else MPEG4HP41
    with av.open(str(path), mode="w") as container:
        return write_video_stream(container, frames, target, frame_rate)[2]


class ContactSheet:
    """Collects original/masked frame pairs at evenly spaced positions of a clip of known length.

    Parameters
    ----------
    frame_count
        Frames in the clip; the sheet shows :data:`CONTACT_SHEET_FRAMES` of them, first and last
        included.
    """

    def __init__(self, frame_count: int) -> None:
        count = max(1, min(CONTACT_SHEET_FRAMES, frame_count))
        self._wanted = {round(i * (frame_count - 1) / max(count - 1, 1)) for i in range(count)}
        self._rows: list[np.ndarray] = []

    def pairs(self, originals: Iterable[np.ndarray], masked: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Pass `masked` through unchanged, keeping a reduced copy of the wanted pairs."""
        for index, (original, output) in enumerate(zip(originals, masked, strict=True)):
            if index in self._wanted:
                row = np.hstack([original, output])
                scale = CONTACT_SHEET_WIDTH / row.shape[1]
                size = (CONTACT_SHEET_WIDTH, max(1, round(row.shape[0] * scale)))
                self._rows.append(cv2.resize(row, size, interpolation=cv2.INTER_AREA))
            yield output

    def write(self, path: Path) -> None:
        """Write the collected rows, top to bottom, as a PNG."""
        if not self._rows:
            raise ValueError("no frames were collected for the contact sheet")
        sheet = np.vstack(self._rows)
        if not cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
            raise OSError(f"cannot write {path}")


class WrittenClip(Sequence[np.ndarray]):
    """The frames of a clip file of known length, decoded anew on every pass, never held.

    For :func:`gateway.text.redactor.examined_frames`, which goes through the frames once and
    needs their count; indexing decodes up to the frame asked for.
    """

    def __init__(self, path: Path, count: int) -> None:
        self._path = path
        self._count = count

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[np.ndarray]:
        return read_frames(self._path)

    @overload
    def __getitem__(self, index: int) -> np.ndarray: ...

    @overload
    def __getitem__(self, index: slice) -> list[np.ndarray]: ...

    def __getitem__(self, index: int | slice) -> np.ndarray | list[np.ndarray]:
        if isinstance(index, slice):
            wanted = range(*index.indices(self._count))
            return [frame for number, frame in enumerate(read_frames(self._path)) if number in wanted]
        if not -self._count <= index < self._count:
            raise IndexError(index)
        return next(itertools.islice(read_frames(self._path), index % self._count, None))


def redact_clip_text(path: Path, count: int, frame_rate: Fraction, text: TextSettings) -> tuple[np.ndarray, ...]:
    """Redact the burned-in text of the clip file ``path`` (``count`` frames) in place.

    The frames the text step samples are collected and given to the pipeline's redaction as
    they are, each examined (``sample_every`` 1): what it finds in them, fills and verifies is
    what it would on the whole clip held in memory. Returns the filled polygons.

    Raises
    ------
    BurnedInText
        The profile refuses text and some was found.
    """
    chosen = set(examined_frames(WrittenClip(path, count), text.sample_every, text.scene_change))
    sampled = [frame for index, frame in enumerate(read_frames(path)) if index in chosen]
    redaction = redact_text(sampled, text.model_copy(update={"sample_every": 1}), {})
    if redaction.filled:
        mask = fill_mask(redaction.polygons, (sampled[0].shape[0], sampled[0].shape[1]))
        filling = path.with_name(f".{path.stem}.filling{path.suffix}")  # the suffix names the container
        try:
            write_frames(filling, _filled(read_frames(path), mask, text.fill_color), frame_rate)
            filling.replace(path)
        finally:
            filling.unlink(missing_ok=True)
    return redaction.polygons


def _filled(frames: Iterable[np.ndarray], mask: np.ndarray, colour: tuple[int, int, int]) -> Iterator[np.ndarray]:
    for frame in frames:
        frame[mask] = colour
        yield frame


def mask_video_file(masker: FaceMasker, source: Path, target: Path, preview: Path | None = None, *,
                    text: TextSettings) -> int:
    """Mask every frame of the video file `source` into `target`, then its burned-in text as
    `text` says (when the masks leave pixels of the source to hold any); optionally a contact
    sheet (the text filled outlined).

    Returns
    -------
    int
        The number of frames written (the same as read).

    Raises
    ------
    PixelDataError
        The input does not open or decode.
    TrackingGap, NoFaceFound, ResidualFace
        As :func:`gateway.mask.video.mask_frames`; `target` is then removed, never left half
        written with unmasked frames.
    BurnedInText
        `text` refuses text and some was found; `target` is removed.
    """
    info = probe(source)
    polygons: tuple[np.ndarray, ...] = ()
    try:
        count = write_frames(target, mask_frames(masker, read_frames(source), float(info.frame_rate)),
                             info.frame_rate)
        if text.action != TextAction.KEEP and masker.keeps_source_pixels:
            polygons = redact_clip_text(target, count, info.frame_rate, text)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    if preview is not None:
        sheet = ContactSheet(count)
        for _ in sheet.pairs(read_frames(source), (outlined(frame, polygons) for frame in read_frames(target))):
            pass
        sheet.write(preview)
    return count
