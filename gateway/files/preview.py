"""Side-by-side previews of what ``dmask mask`` and ``dmask deid`` did to a file.

A preview is a PNG next to the output, named after it (``NAME.preview.png``): the input on the
left, the output on the right with every region the burned-in text step filled outlined, so that
an administrator can see what was changed before passing a batch on. Previews are never inputs:
planning a batch over a folder that holds some leaves them out.
"""

from __future__ import annotations

from collections.abc import Sequence
from io import BytesIO
from pathlib import Path

import cv2
import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset

from gateway.codec.pixels import decode_frames
from gateway.text.redactor import outlined

PREVIEW_SUFFIX = ".preview.png"


def preview_path(target: Path) -> Path:
    """Where the preview of the output ``target`` goes."""
    return target.with_name(target.name + PREVIEW_SUFFIX)


def is_preview(path: Path) -> bool:
    """Whether ``path`` is a preview written next to an earlier output."""
    return path.name.endswith(PREVIEW_SUFFIX)


def side_by_side(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """``before`` and ``after`` next to each other (only ``after`` when their sizes differ)."""
    return np.hstack([before, after]) if before.shape == after.shape else after


def write_preview(target: Path, before: np.ndarray, after: np.ndarray, polygons: Sequence[np.ndarray]) -> None:
    """Write the preview of ``target``: ``before`` beside ``after`` with ``polygons`` outlined.

    Raises
    ------
    OSError
        The PNG cannot be written.
    """
    rgb = side_by_side(before, outlined(after, polygons))
    path = preview_path(target)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write {path.name}")


def write_instance_preview(target: Path, source: Dataset, encoded: bytes, polygons: Sequence[np.ndarray]) -> None:
    """The preview of a DICOM output: the first frame of ``source`` beside that of ``encoded``."""
    before = next(iter(decode_frames(source)))
    after = next(iter(decode_frames(dcmread(BytesIO(encoded)))))
    write_preview(target, before, after, polygons)
