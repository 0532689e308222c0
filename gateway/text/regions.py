"""The pixels a redaction fills: text lines grown by a margin, and fixed device boxes."""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

from gateway.text.detector import TextRegion

#: Pixels added to every side of a grown text line, whatever its height.
MIN_MARGIN = 2.0


def grown(region: TextRegion, margin: float) -> np.ndarray:
    """The corners of ``region``'s rectangle grown on every side by ``margin`` x its height."""
    (cx, cy), (w, h), angle = cv2.minAreaRect(region.corners)
    grow = margin * min(w, h) + MIN_MARGIN
    return cv2.boxPoints(((cx, cy), (w + 2 * grow, h + 2 * grow), angle))


def box_corners(box: tuple[int, int, int, int]) -> np.ndarray:
    """The corners of the outermost pixels of an ``(x, y, width, height)`` box (filling is inclusive)."""
    x, y, w, h = box
    right, bottom = x + w - 1, y + h - 1
    return np.array([[x, y], [right, y], [right, bottom], [x, bottom]], np.float32)


def fill_mask(polygons: Iterable[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """A boolean ``shape`` mask of the pixels inside any of ``polygons``."""
    mask = np.zeros(shape, np.uint8)
    for polygon in polygons:
        cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], (1,))
    return mask.astype(bool)
