"""Closed-loop eye correction for stills: look at the drawn eyes the way an analysis will.

The calibration (``gateway.mask.calibration``) removes the mean displacement between the eye
landmarks of a photo and those Face Mesh finds on its mask, but for each photo the landmark model
still sees the drawn irises and lid margins a little off, by an amount that depends on the face
around them. For a still there is time to look once: Face Mesh runs on a reduced crop around the
rendered face, each drawn iris is moved against the displacement found there, each lid margin
point against ``LID_GAIN`` of its own, and the eyes are drawn again (a second look gained
0.02 points of eyelid error for another landmark pass).

The lids move less than the full displacement: on faces-dev a gain of 0.7 brought the eyelid
points from 1.48% to 1.34% of the inter-ocular distance with the irises at 0.75% (a gain of 1
gave the same lids and irises at 0.76%), and the strong attacker's line-ups stayed within target
(same photo 19%, other photo 18%, mask to mask 18%; closed set 4% / 0% / 5%). Moving the lids
by the whole displacement on the earlier drawing, without lid lines and eye sockets, had raised
the same-photo line-up to 22%.

Frame sequences do not use it: their landmarks are smoothed over time, and another landmark
pass per frame would cost a third of the frame rate.
"""

from __future__ import annotations

import mediapipe as mp
import numpy as np

from gateway.mask.geometry import eye_frame
from gateway.mask.landmarks import reduced
from gateway.mask.topology import LEFT_EYE_OPENING, LEFT_IRIS, RIGHT_EYE_OPENING, RIGHT_IRIS

#: Side of the square crop Face Mesh looks at, in multiples of the face region's longer side:
#: the landmark model finds a face best with about as much context as a portrait photo gives.
CROP_GROWTH = 2.2
#: Longest side of that crop once reduced: Face Mesh works at 192 pixels anyway.
CROP_SIDE = 256
#: Largest correction of an iris, in inter-ocular distances (larger displacements are clipped:
#: a big step overshoots where the lids clip the iris).
LARGEST_STEP = 0.05
#: Share of its re-detected displacement by which each drawn lid margin point is moved back.
LID_GAIN = 0.7
#: A re-detection whose eyelid points are on average further off than this (inter-ocular
#: distances) is not of the drawn eyes (another face, a failed fit) and is not followed.
MISMATCH = 0.25
LIDS = np.concatenate([RIGHT_EYE_OPENING, LEFT_EYE_OPENING])
IRISES = (RIGHT_IRIS, LEFT_IRIS)


class EyeRefiner:
    """Re-detects the eyes of a drawn mask; holds its own Face Mesh graph (one per process)."""

    def __init__(self, detection_confidence: float) -> None:
        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True,
            max_num_faces=1,
            refine_landmarks=True,
            min_detection_confidence=detection_confidence,
        )

    def close(self) -> None:
        """Release the Face Mesh graph."""
        self._mesh.close()

    def displacement(
        self, image: np.ndarray, region: tuple[int, int, int, int], points: np.ndarray
    ) -> np.ndarray | None:
        """Where Face Mesh finds the eye landmarks on ``image`` minus where ``points`` has them.

        ``region`` is the face's box in ``image`` (the masked output); the result is (478, 2)
        pixels, or None when no face is found around it.
        """
        x0, y0, x1, y1 = region
        height, width = image.shape[:2]
        half = max(x1 - x0, y1 - y0) * CROP_GROWTH / 2.0
        cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
        cx0, cy0 = int(max(cx - half, 0)), int(max(cy - half, 0))
        cx1, cy1 = int(min(cx + half, width)), int(min(cy + half, height))
        crop, factor = reduced(image[cy0:cy1, cx0:cx1], CROP_SIDE)
        result = self._mesh.process(np.ascontiguousarray(crop))
        if not result.multi_face_landmarks:
            return None
        ch, cw = crop.shape[:2]
        found = np.array([(p.x * cw, p.y * ch) for p in result.multi_face_landmarks[0].landmark])
        return found * factor + np.array([cx0, cy0]) - points[:, :2]


def corrected(shape: np.ndarray, points: np.ndarray, displacement: np.ndarray) -> np.ndarray | None:
    """``shape`` with each drawn iris moved, as a whole, against its ``displacement``, and each
    lid margin point against ``LID_GAIN`` of its own.

    Each displacement is clipped to ``LARGEST_STEP`` first. None when the re-detection is not of this face's
    eyes (its eyelid points are off by more than ``MISMATCH``).
    """
    _, scale = eye_frame(points)
    if np.linalg.norm(displacement[LIDS], axis=1).mean() > MISMATCH * scale:
        return None
    largest = LARGEST_STEP * scale
    moved = shape.copy()
    moved[LIDS, :2] -= LID_GAIN * np.clip(displacement[LIDS], -largest, largest)
    for iris in IRISES:
        moved[iris, :2] -= np.clip(displacement[iris].mean(axis=0), -largest, largest)
    return moved
