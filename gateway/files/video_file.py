"""Plain video files (.mp4, .mov) for ``dmask mask``, and previews of masked clips.

A convenience beside DICOM: a clinician can try the mask on a clip from a phone or a slit lamp
camera. The output is H.264 High Profile in the same container type, at the same frame rate,
size and frame count, with no audio and no metadata of the input (voices and device tags
identify). Frames are streamed: the clip is never held in memory as decoded RGB.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from pydicom.uid import MPEG4HP41, MPEG4HP422D

from gateway.codec.video import read_video_stream, write_video_stream
from gateway.errors import PixelDataError
from gateway.mask.masker import FaceMasker
from gateway.mask.video import mask_frames

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


def mask_video_file(masker: FaceMasker, source: Path, target: Path, preview: Path | None = None) -> int:
    """Mask every frame of the video file `source` into `target`; optionally a contact sheet.

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
    """
    info = probe(source)
    rate = float(info.frame_rate)
    sheet = None
    if preview is None:
        masked = mask_frames(masker, read_frames(source), rate)
    else:  # the tee holds only the frames the tracker's window runs ahead by
        originals, to_mask = itertools.tee(read_frames(source))
        sheet = ContactSheet(info.frame_count or CONTACT_SHEET_FRAMES)
        masked = sheet.pairs(originals, mask_frames(masker, to_mask, rate))
    try:
        count = write_frames(target, masked, info.frame_rate)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    if sheet is not None and preview is not None:
        sheet.write(preview)
    return count
