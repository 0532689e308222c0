"""Face Mesh views: what the model is shown, and its landmarks mapped back to the image."""

from __future__ import annotations

import mediapipe as mp
import numpy as np
import pytest
from mediapipe.framework.formats import landmark_pb2

from gateway.mask.geometry import eye_frame
from gateway.mask.landmarks import DETECTION_SIDE, REDUCTION_SLACK, MeshView, _as_array, model_input
from tests.support.photos import photo


@pytest.fixture(scope="module")
def mesh() -> mp.solutions.face_mesh.FaceMesh:
    graph = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=2, refine_landmarks=True)
    yield graph
    graph.close()


def test_a_turned_crop_maps_its_landmarks_back_onto_the_whole_image(mesh: mp.solutions.face_mesh.FaceMesh) -> None:
    astronaut = photo("astronaut")
    whole = MeshView((0, 0, astronaut.shape[1], astronaut.shape[0]), DETECTION_SIDE)
    crop = MeshView((100, 0, 300, 220), 128, turns=1)

    expected = whole.faces(mesh, astronaut)[0]
    found = crop.faces(mesh, astronaut)

    assert crop.image(astronaut).shape == (116, 128, 3)  # 200 x 220 reduced, then turned
    _, scale = eye_frame(expected)
    assert len(found) == 1
    assert np.linalg.norm(found[0][:, :2] - expected[:, :2], axis=1).mean() < 0.05 * scale


def test_images_a_little_larger_than_the_side_are_shown_as_they_are() -> None:
    near = np.zeros((700, int(DETECTION_SIDE * REDUCTION_SLACK), 3), np.uint8)
    far = np.zeros((700, int(DETECTION_SIDE * REDUCTION_SLACK) + 1, 3), np.uint8)

    assert model_input(near, DETECTION_SIDE)[0] is near
    reduced, factor = model_input(far, DETECTION_SIDE)
    assert reduced.shape[1] == DETECTION_SIDE and factor > REDUCTION_SLACK


def landmark_list(values: np.ndarray) -> landmark_pb2.NormalizedLandmarkList:
    landmarks = landmark_pb2.NormalizedLandmarkList()
    for x, y, z in values:
        landmarks.landmark.add(x=x, y=y, z=z)
    return landmarks


def test_landmarks_read_from_the_encoded_message_equal_those_read_one_by_one() -> None:
    values = np.random.default_rng(5).random((478, 3)) - [0.0, 0.0, 0.5]
    landmarks = landmark_list(values)
    one_by_one = np.array([(p.x, p.y, p.z) for p in landmarks.landmark]) * [640, 480, 640]

    assert np.array_equal(_as_array(landmarks, 640, 480), one_by_one)
    landmarks.landmark[7].visibility = 0.9  # another encoding: read one by one
    assert np.array_equal(_as_array(landmarks, 640, 480), one_by_one)
