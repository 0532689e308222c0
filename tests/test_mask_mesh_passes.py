"""Face Mesh in two steps: the landmark model alone on a region the whole graph reported gives
the whole graph's landmarks."""

from __future__ import annotations

from collections.abc import Iterator

import mediapipe as mp
import numpy as np
import pytest

from gateway.mask.mesh_passes import FaceMeshPasses
from tests.support.photos import photo


@pytest.fixture(scope="module")
def passes() -> Iterator[FaceMeshPasses]:
    graphs = FaceMeshPasses(max_faces=4, detection_confidence=0.5)
    yield graphs
    graphs.close()


def coordinates(landmarks: object) -> np.ndarray:
    return np.array([(p.x, p.y, p.z) for p in landmarks.landmark])  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["grace_hopper", "astronaut"])
def test_the_landmark_model_alone_on_the_found_region_gives_the_same_landmarks(
    passes: FaceMeshPasses, name: str
) -> None:
    rgb = photo(name)

    found = passes.find(rgb)

    assert len(found) == 1 and found[0].region is not None
    again = passes.again(rgb, found[0].region)
    assert again is not None
    assert np.array_equal(coordinates(again), coordinates(found[0].landmarks))


def test_the_whole_graph_finds_what_mediapipe_face_mesh_finds(passes: FaceMeshPasses) -> None:
    rgb = photo("astronaut")
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=4, refine_landmarks=True) as mesh:
        expected = mesh.process(rgb).multi_face_landmarks

    found = passes.find(rgb)

    assert [coordinates(face.landmarks).tolist() for face in found] == [coordinates(f).tolist() for f in expected]


def test_a_region_without_a_face_gives_no_landmarks(passes: FaceMeshPasses) -> None:
    hopper = photo("grace_hopper")
    region = passes.find(hopper)[0].region
    assert region is not None

    assert passes.again(np.full_like(hopper, 128), region) is None
    assert passes.find(np.full_like(hopper, 128)) == []
