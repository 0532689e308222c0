"""The fail-closed check: an independent detector looks for faces the masks do not cover.

Face Mesh and its detector decide where the masks go; if they missed a face, they would miss it
again on the output. OpenCV's Haar cascade (shipped in the opencv wheel) is a detector of a
different kind, so it is the one asked whether any face is left outside the masks.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import cv2.data
import numpy as np

from gateway.mask.landmarks import Box, reduced

CASCADE = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
#: Longest side of the grey copy the cascade scans.
SCAN_SIDE = 640
MIN_FACE = 24
MIN_NEIGHBOURS = 6
#: A detection counts as masked when at least this share of its box lies in masked regions.
COVERED = 0.5


class ResidualFaceCheck:
    """Counts faces that a second detector finds outside the masked regions of an output."""

    def __init__(self) -> None:
        self._cascade = cv2.CascadeClassifier(str(CASCADE))
        if self._cascade.empty():
            raise RuntimeError("the OpenCV face cascade could not be loaded")

    def uncovered_faces(self, output: np.ndarray, masked: list[Box]) -> int:
        """How many faces in ``output`` (RGB) lie mostly outside the ``masked`` boxes (x0, y0, x1, y1)."""
        small, factor = reduced(output, SCAN_SIDE)
        grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        found = self._cascade.detectMultiScale(
            cv2.equalizeHist(grey), scaleFactor=1.1, minNeighbors=MIN_NEIGHBOURS, minSize=(MIN_FACE, MIN_FACE)
        )
        covered = np.zeros(grey.shape, dtype=bool)
        for x0, y0, x1, y1 in masked:
            covered[int(y0 / factor): int(np.ceil(y1 / factor)), int(x0 / factor): int(np.ceil(x1 / factor))] = True
        return sum(1 for x, y, w, h in found if covered[y: y + h, x: x + w].mean() < COVERED)
