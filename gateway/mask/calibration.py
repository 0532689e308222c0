"""Eye calibration: where to draw the eyelid margins and irises so that landmarks land back on them.

Face Mesh does not put its eyelid landmarks exactly on the visible lid margin of a photo; it has
a bias of its own, and on a rendered face it adds that bias again. Drawing the margins exactly
at the patient's landmarks therefore gives back landmarks measurably away from them, mostly in
the same direction for every face. The calibration stores, per eyelid landmark
and per iris, the mean of that displacement in the eye frame (x from the right to the left eye,
y perpendicular, downwards; units of the inter-ocular distance), measured over many faces, and
the mask draws each point that much the other way. It is a property of the renderer and the
landmark model, the same for every patient, so it carries no identity.

``eye_calibration.npz`` is computed by ``tools/calibrate_eyes.py`` on a tuning set of people the
privacy audit does not report on; ``source`` names it.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import numpy as np

from gateway.mask.geometry import eye_centres
from gateway.mask.topology import LEFT_EYE_OPENING, LEFT_IRIS, RIGHT_EYE_OPENING, RIGHT_IRIS

PACKAGED = "eye_calibration.npz"
#: The landmarks that are calibrated: eyelid margins, then the two irises (each as the mean of
#: its five points, the steadiest estimate of its centre).
CALIBRATED = np.concatenate([RIGHT_EYE_OPENING, LEFT_EYE_OPENING, RIGHT_IRIS[:1], LEFT_IRIS[:1]])


@dataclass(frozen=True)
class EyeCalibration:
    """Mean displacement of re-detected eye landmarks, in the eye frame.

    Attributes
    ----------
    offsets
        (len(CALIBRATED), 2) displacement of each calibrated landmark, in inter-ocular distances.
    photos
        How many photos it was measured on.
    source
        The set of faces those photos came from, with its counts.
    """

    offsets: np.ndarray
    photos: int
    source: str = ""

    def apply(self, shape: np.ndarray, points: np.ndarray) -> np.ndarray:
        """``shape`` with its eye landmarks moved against the calibrated displacement.

        The eye frame comes from the patient's ``points``; each iris moves as a whole with its
        centre so that its disc keeps its size.
        """
        right, left = eye_centres(points)
        axis = (left - right)[:2]
        across = np.array([-axis[1], axis[0]])
        pixels = self.offsets[:, :1] * axis + self.offsets[:, 1:] * across
        moved = shape.copy()
        lids = len(RIGHT_EYE_OPENING) + len(LEFT_EYE_OPENING)
        moved[CALIBRATED[:lids], :2] -= pixels[:lids]
        moved[RIGHT_IRIS, :2] -= pixels[lids]
        moved[LEFT_IRIS, :2] -= pixels[lids + 1]
        return moved


def load_calibration() -> EyeCalibration:
    """The calibration shipped with the package."""
    with resources.files("gateway.mask").joinpath(PACKAGED).open("rb") as stream:
        data = np.load(stream)
        return EyeCalibration(data["offsets"].astype(np.float64), int(data["photos"]), str(data["source"]))


def displacement(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Displacement of the calibrated landmarks from ``before`` to ``after``, in the eye frame."""
    right, left = eye_centres(before)
    axis = (left - right)[:2]
    scale = float(axis @ axis)
    across = np.array([-axis[1], axis[0]])
    lids = len(RIGHT_EYE_OPENING) + len(LEFT_EYE_OPENING)
    delta = np.vstack([
        (after - before)[CALIBRATED[:lids], :2],
        [(after[iris, :2] - before[iris, :2]).mean(axis=0) for iris in (RIGHT_IRIS, LEFT_IRIS)],
    ])
    return np.stack([delta @ axis, delta @ across], axis=1) / scale
