"""Mask shape: the identity-free template, eye-derived placement, preserved regions."""

from __future__ import annotations

import numpy as np
import pytest

from dicom_instances import photo
from gateway.mask.calibration import CALIBRATED, displacement, load_calibration
from gateway.mask.geometry import eye_centres, eye_frame, mask_shape, preservation_weights
from gateway.mask.landmarks import LandmarkDetector
from gateway.mask.settings import MaskSettings
from gateway.mask.template import load_template, mirror_map
from gateway.mask.topology import MESH_VERTEX_COUNT, REGION_VERTICES, Region

DEFAULT = MaskSettings().preserved_regions()


@pytest.fixture(scope="module")
def hopper_points() -> np.ndarray:
    detector = LandmarkDetector(MaskSettings())
    try:
        return detector.detect(photo("grace_hopper"))[0].points
    finally:
        detector.close()


def test_template_is_a_normalised_symmetric_mean_of_at_least_40_people() -> None:
    template = load_template()
    assert template.people >= 40 and template.photos >= template.people
    right, left = eye_centres(template.vertices)
    assert np.allclose(right, [-0.5, 0.0, 0.0], atol=1e-3) and np.allclose(left, [0.5, 0.0, 0.0], atol=1e-3)
    mirrored = template.vertices[mirror_map(template.vertices)] * [-1.0, 1.0, 1.0]
    assert np.abs(mirrored - template.vertices).max() < 1e-4


def test_preservation_weights_keep_regions_and_fall_off_to_the_template() -> None:
    template = load_template().vertices
    weights = preservation_weights(template, DEFAULT)
    kept = np.concatenate([REGION_VERTICES[r] for r in DEFAULT])
    assert (weights[kept] == 1.0).all()
    assert weights[152] == 0.0 and weights[1] == 0.0  # chin and nose tip come from the template
    between = weights[:MESH_VERTEX_COUNT][(weights[:MESH_VERTEX_COUNT] > 0) & (weights[:MESH_VERTEX_COUNT] < 1)]
    assert between.size > 10  # a fall-off, not a seam
    assert (preservation_weights(template, None) == 1.0).all()
    assert (preservation_weights(template, frozenset({Region.IRISES}))[:MESH_VERTEX_COUNT] == 0.0).all()


def test_face_proportions_do_not_reach_the_mask(hopper_points: np.ndarray) -> None:
    """A longer, wider face with the same eyes gets the same mask outside the kept regions."""
    template = load_template().vertices
    weights = preservation_weights(template, DEFAULT)
    origin, iod = eye_frame(hopper_points)
    stretched = hopper_points.copy()
    below = stretched[:, 1] > origin[1] + 0.3 * iod
    stretched[below, :2] = origin[:2] + (stretched[below, :2] - origin[:2]) * [1.15, 1.25]
    free = weights == 0.0
    moved = np.linalg.norm(stretched[free] - hopper_points[free], axis=1).max() / iod
    change = np.linalg.norm(
        mask_shape(stretched, template, weights)[free] - mask_shape(hopper_points, template, weights)[free], axis=1
    ).max() / iod
    assert moved > 0.2
    assert change < 0.03
    kept = weights == 1.0
    assert np.allclose(mask_shape(hopper_points, template, weights)[kept], hopper_points[kept])


def test_calibration_moves_eye_landmarks_against_the_measured_displacement(hopper_points: np.ndarray) -> None:
    calibration = load_calibration()
    assert calibration.photos > 0 and np.abs(calibration.offsets).max() < 0.1
    moved = calibration.apply(hopper_points, hopper_points)
    assert np.allclose(displacement(hopper_points, moved), -calibration.offsets)
    untouched = np.setdiff1d(np.arange(MESH_VERTEX_COUNT), CALIBRATED)
    assert np.array_equal(moved[untouched], hopper_points[untouched])
