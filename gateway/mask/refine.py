"""Closed-loop eye correction for stills: look at the drawn eyes the way an analysis will.

The calibration (``gateway.mask.calibration``) removes the mean displacement between the eye
landmarks of a photo and those Face Mesh finds on its mask, but for each photo the landmark model
still sees the drawn irises and lid margins a little off, by an amount that depends on the face
around them and that changes, almost at random, with every small change of the drawing. For a
still there is time to look a few times: Face Mesh runs on the mask in the same view the
photo's landmarks came from (``MeshView``), each drawn lid point and iris is moved against the
displacement found there, and the drawing that was found closest to the photo's eyes is kept.

On faces-dev (``dmask audit privacy``) one look with the lids moved by 0.7 of their
displacement left the eyelid points 1.34% of the inter-ocular distance off and the irises
0.75%. Keeping the best of four looks (three corrections) in the photo's own view brings them
to 1.16% and 0.49%. Looking at a crop around the face instead of the photo's view did worse
(two corrections: 1.29% against 1.22%), and so did following the corrections without keeping
the best (1.28%). Past the second correction Face Mesh finds the lids about as far off on
average, but each drawing by a different amount, and the best one seen is kept.

Frame sequences do not use it: their landmarks are smoothed over time, and another landmark
pass per frame would cost a third of the frame rate.
"""

from __future__ import annotations

import mediapipe as mp
import numpy as np

from gateway.mask.geometry import eye_frame
from gateway.mask.landmarks import Box, MeshView, square_box
from gateway.mask.settings import MaskSettings
from gateway.mask.topology import LEFT_EYE_OPENING, LEFT_IRIS, RIGHT_EYE_OPENING, RIGHT_IRIS

#: For landmarks without a view (made by a caller): the square crop Face Mesh looks at, in
#: multiples of the face region's longer side (about as much context as a portrait gives) ...
CROP_GROWTH = 2.2
#: ... and its longest side once reduced (Face Mesh works at 192 pixels anyway).
CROP_SIDE = 256
#: Largest total correction of a drawn point, in inter-ocular distances: a larger one is not
#: of the drawing (and an iris moved further overshoots where the lids clip it).
LARGEST_CORRECTION = 0.05
#: A re-detection whose eyelid points are on average further off than this (inter-ocular
#: distances) is not of the drawn eyes (another face, a failed fit) and is not followed.
MISMATCH = 0.25
LIDS = np.concatenate([RIGHT_EYE_OPENING, LEFT_EYE_OPENING])
IRISES = (RIGHT_IRIS, LEFT_IRIS)


class EyeRefiner:
    """Re-detects the eyes of a drawn mask; holds its own Face Mesh graph (one per process)."""

    def __init__(self, settings: MaskSettings) -> None:
        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True,
            max_num_faces=settings.max_faces,
            refine_landmarks=True,
            min_detection_confidence=settings.detection_confidence,
        )

    def close(self) -> None:
        """Release the Face Mesh graph."""
        self._mesh.close()

    def displacement(self, image: np.ndarray, view: MeshView, points: np.ndarray) -> np.ndarray | None:
        """Where Face Mesh finds the landmarks of the face at ``points`` on ``view`` of ``image``
        (the masked output), minus ``points``: (478, 2) pixels.

        None when no face found there has its eyelid points within ``MISMATCH`` of ``points``.
        """
        found = view.faces(self._mesh, image)
        if not found:
            return None
        offsets = [face[:, :2] - points[:, :2] for face in found]
        lid_distances = [np.linalg.norm(offset[LIDS], axis=1).mean() for offset in offsets]
        nearest = int(np.argmin(lid_distances))
        _, scale = eye_frame(points)
        return offsets[nearest] if lid_distances[nearest] <= MISMATCH * scale else None


def crop_view(region: Box, shape: tuple[int, ...]) -> MeshView:
    """A view for landmarks that have none: a square around the face's ``region``."""
    x0, y0, x1, y1 = region
    side = max(x1 - x0, y1 - y0) * CROP_GROWTH
    return MeshView(square_box((x0 + x1) / 2.0, (y0 + y1) / 2.0, side, shape), CROP_SIDE)


def eye_error(displacement: np.ndarray, points: np.ndarray) -> float:
    """How far the eyes were found: mean eyelid point distance plus mean iris centre distance,
    in inter-ocular distances (what the privacy audit's fidelity measures)."""
    _, scale = eye_frame(points)
    lids = np.linalg.norm(displacement[LIDS], axis=1).mean()
    irises = np.mean([np.linalg.norm(displacement[iris].mean(axis=0)) for iris in IRISES])
    return float((lids + irises) / scale)


def corrected(drawn: np.ndarray, displacement: np.ndarray, first: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``drawn`` with each lid point moved against its ``displacement`` and each iris, as a
    whole, against the mean of its own; no point ends further than ``LARGEST_CORRECTION`` from
    where the ``first`` drawing had it."""
    moved = drawn.copy()
    moved[LIDS, :2] -= displacement[LIDS]
    for iris in IRISES:
        moved[iris, :2] -= displacement[iris].mean(axis=0)
    _, scale = eye_frame(points)
    largest = LARGEST_CORRECTION * scale
    moved[:, :2] = first[:, :2] + np.clip(moved[:, :2] - first[:, :2], -largest, largest)
    return moved
