"""Eye landmark definitions and the normalised fidelity errors of the privacy audit."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.audit.fidelity import (
    FACE_MESH_LANDMARKS,
    INNER_LIP_MIDPOINTS,
    LEFT_EYE,
    LEFT_EYELID,
    LEFT_IRIS,
    MOUTH_CORNERS,
    RIGHT_EYE,
    RIGHT_EYELID,
    RIGHT_IRIS,
    FaceMeshLandmarker,
    aperture_ratio,
    compare_landmarks,
    corner_asymmetry,
    gaze_offset,
    interocular_distance,
    iris_centre,
    mouth_aperture,
    nearest_face,
)
from tests.support.photos import photo


def synthetic_face() -> np.ndarray:
    """Landmarks with the irises 40 px apart and eyes 20 px wide, the rest anywhere."""
    landmarks = np.random.default_rng(0).uniform(0, 200, (FACE_MESH_LANDMARKS, 2))
    for eye, x in ((RIGHT_EYE, 80.0), (LEFT_EYE, 120.0)):
        ring = np.array([[0, 0], [3, 0], [0, 3], [-3, 0], [0, -3]], dtype=float)
        landmarks[list(eye.iris)] = ring + (x, 100.0)
        outer, inner = (x + 10.0, x - 10.0) if eye is LEFT_EYE else (x - 10.0, x + 10.0)
        landmarks[list(eye.corners)] = [(outer, 100.0), (inner, 100.0)]
        landmarks[list(eye.lid_midpoints)] = [(x, 96.0), (x, 104.0)]
    landmarks[list(MOUTH_CORNERS)] = [(85.0, 150.0), (115.0, 150.0)]
    landmarks[list(INNER_LIP_MIDPOINTS)] = [(100.0, 149.0), (100.0, 151.0)]
    return landmarks


def test_eye_definitions_are_the_face_mesh_eyelid_and_iris_points() -> None:
    assert len(RIGHT_EYELID) == len(set(RIGHT_EYELID)) == 16
    assert len(LEFT_EYELID) == len(set(LEFT_EYELID)) == 16
    assert not set(RIGHT_EYELID) & set(LEFT_EYELID)
    assert RIGHT_IRIS == tuple(range(468, 473)) and LEFT_IRIS == tuple(range(473, 478))
    for eye in (RIGHT_EYE, LEFT_EYE):
        assert set(eye.corners) <= set(eye.eyelid)
        assert set(eye.lid_midpoints) <= set(eye.eyelid)


def test_interocular_distance_is_iris_centre_to_iris_centre() -> None:
    landmarks = synthetic_face()
    assert iris_centre(landmarks, RIGHT_EYE) == pytest.approx([80.0, 100.0])
    assert interocular_distance(landmarks) == pytest.approx(40.0)


def test_errors_are_in_interocular_distances() -> None:
    original = synthetic_face()
    moved = original.copy()
    moved[list(RIGHT_EYELID + LEFT_EYELID)] += (4.0, 0.0)
    moved[list(RIGHT_IRIS + LEFT_IRIS)] += (0.0, 2.0)
    fidelity = compare_landmarks(original, moved)
    assert fidelity.eyelid_error == pytest.approx(4.0 / 40.0)
    assert fidelity.iris_error == pytest.approx(2.0 / 40.0)


def test_errors_do_not_depend_on_photo_scale_or_position() -> None:
    original = synthetic_face()
    moved = original + np.random.default_rng(1).normal(0, 1.5, original.shape)
    reference = compare_landmarks(original, moved)
    for scale, shift in ((0.25, (0, 0)), (3.0, (500, -20))):
        scaled = compare_landmarks(original * scale + shift, moved * scale + shift)
        assert scaled.eyelid_error == pytest.approx(reference.eyelid_error)
        assert scaled.iris_error == pytest.approx(reference.iris_error)
        assert scaled.aperture_difference == pytest.approx(reference.aperture_difference)
        assert scaled.gaze_difference == pytest.approx(reference.gaze_difference)


def test_same_landmarks_have_no_error() -> None:
    landmarks = synthetic_face()
    fidelity = compare_landmarks(landmarks, landmarks.copy())
    assert (fidelity.eyelid_error, fidelity.iris_error) == (0.0, 0.0)
    assert (fidelity.aperture_difference, fidelity.gaze_difference) == (0.0, 0.0)


def test_aperture_is_lid_height_over_corner_width() -> None:
    landmarks = synthetic_face()
    assert aperture_ratio(landmarks, RIGHT_EYE) == pytest.approx(8.0 / 20.0)
    drooping = landmarks.copy()
    drooping[RIGHT_EYE.lid_midpoints[0]] += (0.0, 4.0)  # ptosis: the upper lid comes down
    assert aperture_ratio(drooping, RIGHT_EYE) == pytest.approx(4.0 / 20.0)
    assert compare_landmarks(landmarks, drooping).aperture_difference == pytest.approx(0.2 / 2)


def test_gaze_offset_follows_the_iris_and_ignores_head_roll() -> None:
    landmarks = synthetic_face()
    assert gaze_offset(landmarks, LEFT_EYE) == pytest.approx([0.0, 0.0])
    looking = landmarks.copy()
    looking[list(LEFT_IRIS)] += (-2.0, 0.0)  # towards the nose: 2 px of a 20 px wide eye
    assert gaze_offset(looking, LEFT_EYE) == pytest.approx([0.1, 0.0])
    angle = np.deg2rad(30)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    assert gaze_offset(looking @ rotation.T, LEFT_EYE) == pytest.approx([0.1, 0.0])


def test_compare_landmarks_rejects_other_landmark_sets() -> None:
    with pytest.raises(ValueError):
        compare_landmarks(np.zeros((468, 2)), np.zeros((468, 2)))


def test_face_mesh_finds_the_subjects_right_iris_on_the_left_of_the_photo() -> None:
    landmarker = FaceMeshLandmarker()
    try:
        landmarks = landmarker.landmarks(photo("grace_hopper"))
        assert landmarker.landmarks(photo("retina")) is None
    finally:
        landmarker.close()
    assert landmarks is not None and landmarks.shape == (FACE_MESH_LANDMARKS, 2)
    right, left = iris_centre(landmarks, RIGHT_EYE), iris_centre(landmarks, LEFT_EYE)
    assert right[0] < left[0]
    for eye, centre in ((RIGHT_EYE, right), (LEFT_EYE, left)):
        lid = landmarks[list(eye.eyelid)]
        assert np.all(lid.min(axis=0) < centre) and np.all(centre < lid.max(axis=0))
    assert 60 < interocular_distance(landmarks) < 100  # the face is ~190 px wide



def test_of_several_faces_the_one_whose_eyelids_are_nearest_is_compared() -> None:
    original = synthetic_face()
    beside = original + [150.0, 0.0]
    slightly_off = original + [2.0, 1.0]

    assert nearest_face([beside, slightly_off], original) is slightly_off
    assert nearest_face([slightly_off, beside], beside) is beside


def test_mouth_aperture_is_inner_lip_gap_over_mouth_width() -> None:
    closed = synthetic_face()
    assert mouth_aperture(closed) == pytest.approx(2 / 30)
    opened = closed.copy()
    opened[INNER_LIP_MIDPOINTS[1]] += (0.0, 7.0)
    assert mouth_aperture(opened) == pytest.approx(9 / 30)
    assert compare_landmarks(closed, opened).mouth_aperture_difference == pytest.approx(7 / 30)


def test_corner_asymmetry_is_the_right_corner_drop_in_interocular_distances_whatever_the_roll() -> None:
    level = synthetic_face()
    assert corner_asymmetry(level) == pytest.approx(0.0)
    palsy = level.copy()
    palsy[MOUTH_CORNERS[0]] += (0.0, 4.0)  # the subject's right corner 4 px lower, irises 40 px apart
    assert corner_asymmetry(palsy) == pytest.approx(0.1)
    angle = np.radians(20.0)
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    assert corner_asymmetry(palsy @ turn.T) == pytest.approx(0.1)
    assert compare_landmarks(level, palsy).corner_asymmetry_difference == pytest.approx(0.1)
