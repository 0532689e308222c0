"""An independent judge of eye fidelity: dlib's 68-point shape model.

The mask's eyes are drawn and then corrected by looking at them with Face Mesh, the same model
the audit's fidelity re-detects them with (``gateway.audit.fidelity``). A correction can then
learn Face Mesh's quirks rather than put the lids where they are: its figure improves while the
drawing does not. dlib's 68-point model (iBUG 300-W markup, a regression-tree ensemble on HOG-like
features, trained on other photos by other people) has quirks of its own, so a mask that is
closer for Face Mesh but further for dlib has been fitted to Face Mesh, not to the eye.

The judge is run on the original's face box (the attacker's detection on the original) for the
original and for every released image, so that it finds no face of its own and every transform
is judged on the same region. Points 36-41 are the subject's right eye, 42-47 the left, each
from the outer corner along the upper lid to the inner corner and back along the lower lid.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gateway.audit.attacker import import_dlib, model_directory

SHAPE_PREDICTOR_68_FILE = "shape_predictor_68_face_landmarks.dat"
#: The six points of each eye in the 68-point markup: subject's right eye, then left.
RIGHT_EYE_POINTS = tuple(range(36, 42))
LEFT_EYE_POINTS = tuple(range(42, 48))
JUDGED_POINTS = RIGHT_EYE_POINTS + LEFT_EYE_POINTS


def eye_centre(points: np.ndarray, eye: tuple[int, ...]) -> np.ndarray:
    """Mean of an eye's six points."""
    return points[list(eye)].mean(axis=0)


def interocular_distance(points: np.ndarray) -> float:
    """Distance between the two eyes' centres, the unit the judge's errors are expressed in."""
    return float(np.linalg.norm(eye_centre(points, LEFT_EYE_POINTS) - eye_centre(points, RIGHT_EYE_POINTS)))


def eye_aperture(points: np.ndarray, eye: tuple[int, ...]) -> float:
    """Eyelid opening: mean of the two lid-to-lid heights over the corner-to-corner width."""
    p = points[list(eye)]
    heights = np.linalg.norm(p[1] - p[5]) + np.linalg.norm(p[2] - p[4])
    return float(heights / 2.0 / np.linalg.norm(p[3] - p[0]))


@dataclass(frozen=True)
class JudgedFidelity:
    """How far dlib finds the eyes of a transformed image from where it finds the original's.

    Attributes
    ----------
    eye_error:
        Mean distance of the 12 eye points, in the original's inter-ocular distances.
    aperture_difference:
        Mean over both eyes of the absolute difference of the apertures.
    """

    eye_error: float
    aperture_difference: float


def judge_eyes(original: np.ndarray, transformed: np.ndarray) -> JudgedFidelity:
    """Compare dlib's eye points (``(68, 2)`` pixels each) of a transformed image and its original."""
    if original.shape != (68, 2) or transformed.shape != original.shape:
        raise ValueError("expected two (68, 2) landmark arrays")
    points = list(JUDGED_POINTS)
    error = np.linalg.norm(transformed[points] - original[points], axis=1).mean() / interocular_distance(original)
    eyes = (RIGHT_EYE_POINTS, LEFT_EYE_POINTS)
    aperture = np.mean([abs(eye_aperture(transformed, eye) - eye_aperture(original, eye)) for eye in eyes])
    return JudgedFidelity(eye_error=float(error), aperture_difference=float(aperture))


class ShapeJudge:
    """dlib's 68-point shape predictor, loaded once by path from ``face_recognition_models``."""

    def __init__(self, models: Path | None = None) -> None:
        dlib = import_dlib()
        self._dlib = dlib
        self._predictor = dlib.shape_predictor(str((models or model_directory()) / SHAPE_PREDICTOR_68_FILE))

    def landmarks(self, rgb: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        """The 68 points in pixels, ``(68, 2)``, of the face in ``box`` (left, top, right, bottom)."""
        shape = self._predictor(np.ascontiguousarray(rgb), self._dlib.rectangle(*box))
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
