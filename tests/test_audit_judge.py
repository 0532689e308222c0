"""The independent judge of eye fidelity: dlib's 68-point model on the original's face box."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from gateway.audit.judge import (
    LEFT_EYE_POINTS,
    RIGHT_EYE_POINTS,
    ShapeJudge,
    eye_aperture,
    interocular_distance,
    judge_eyes,
)
from tests.support.photos import photo

pytestmark = pytest.mark.audit
pytest.importorskip("dlib")


def synthetic_eyes() -> np.ndarray:
    """68 points whose eyes are 20 px wide, 6 px open and 40 px apart (centre to centre)."""
    points = np.zeros((68, 2))
    for eye, x in ((RIGHT_EYE_POINTS, 80.0), (LEFT_EYE_POINTS, 120.0)):
        points[list(eye)] = [(x - 10, 100), (x - 4, 97), (x + 4, 97), (x + 10, 100), (x + 4, 103), (x - 4, 103)]
    return points


def test_errors_are_in_interocular_distances_and_aperture_is_height_over_width() -> None:
    original = synthetic_eyes()
    assert interocular_distance(original) == pytest.approx(40.0)
    assert eye_aperture(original, RIGHT_EYE_POINTS) == pytest.approx(6 / 20)
    moved = original + (2.0, 0.0)
    assert judge_eyes(original, moved).eye_error == pytest.approx(0.05)
    drooping = original.copy()
    drooping[[37, 38, 43, 44], 1] += 3.0  # both upper lids half closed
    assert judge_eyes(original, drooping).aperture_difference == pytest.approx(3 / 20)
    with pytest.raises(ValueError):
        judge_eyes(np.zeros((5, 2)), np.zeros((5, 2)))


def test_the_judge_finds_the_eyes_in_the_box_and_follows_the_image() -> None:
    judge = ShapeJudge()
    rgb = photo("grace_hopper")
    height, width = rgb.shape[:2]
    box = (width // 6, height // 8, 5 * width // 6, 7 * height // 8)
    points = judge.landmarks(rgb, box)
    assert points.shape == (68, 2)
    # The subject's right eye is on the left of the photo.
    assert points[list(RIGHT_EYE_POINTS), 0].mean() < points[list(LEFT_EYE_POINTS), 0].mean()
    assert judge_eyes(points, judge.landmarks(rgb.copy(), box)).eye_error == 0.0
    right_by_6 = np.array([[1, 0, 6], [0, 1, 0]], dtype=np.float32)
    shifted = cv2.warpAffine(rgb, right_by_6, (width, height), borderMode=cv2.BORDER_REPLICATE)
    eyes = list(RIGHT_EYE_POINTS + LEFT_EYE_POINTS)
    # The box stays where it was; the eyes found in it move with the image, roughly.
    assert np.median(judge.landmarks(shifted, box)[eyes, 0] - points[eyes, 0]) > 3.0
