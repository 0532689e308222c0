"""Strabismus survives the mask: each eye's iris keeps its own place between its own corners."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from gateway.audit.fidelity import EYES, FaceMeshLandmarker, gaze_offset
from gateway.mask import FaceMasker
from tests.support.clips import astronaut_clip, squinting

#: Iris moved sideways in one eye only, in iris radii (a marked strabismus).
SQUINT = 0.6
#: Of the moved eye's gaze change on the photo, at least this share must show on its mask ...
KEPT = 0.6
#: ... and the other eye's gaze on the mask may move by at most this share of it.
CROSSTALK = 0.35


@pytest.fixture(scope="module")
def landmarker() -> Iterator[FaceMeshLandmarker]:
    found = FaceMeshLandmarker()
    yield found
    found.close()


def gazes(landmarker: FaceMeshLandmarker, rgb: np.ndarray, near: np.ndarray | None = None) -> np.ndarray:
    landmarks = landmarker.landmarks(rgb, near=near)
    assert landmarks is not None
    return np.array([gaze_offset(landmarks, eye) for eye in EYES])


@pytest.mark.parametrize("eye", [0, 1], ids=["right", "left"])
def test_one_eyes_iris_moved_moves_on_the_mask_and_the_other_stays(
    masker: FaceMasker, landmarker: FaceMeshLandmarker, eye: int
) -> None:
    clip = astronaut_clip(masker, (640, 480), 100.0)
    straight = squinting(clip, eye, (0.0, 0.0))
    squint = squinting(clip, eye, (SQUINT, 0.0))
    reference = landmarker.landmarks(straight)
    photo_change = gazes(landmarker, squint) - gazes(landmarker, straight)
    mask_change = gazes(landmarker, masker.mask_image(squint), reference) - gazes(
        landmarker, masker.mask_image(straight), reference
    )
    moved = float(np.linalg.norm(photo_change[eye]))
    assert moved > 0.05  # the warp really moved the iris within its eye
    assert mask_change[eye] @ photo_change[eye] / moved >= KEPT * moved
    assert np.linalg.norm(mask_change[1 - eye]) <= CROSSTALK * moved
