"""The geometry attacker: kept regions compared after a similarity transform."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.audit.fidelity import FACE_MESH_LANDMARKS, LEFT_IRIS, RIGHT_IRIS
from gateway.audit.geometry import GEOMETRY_REGIONS, geometry_signature, geometry_signatures


def face(seed: int) -> np.ndarray:
    landmarks = np.random.default_rng(seed).uniform(0, 200, (FACE_MESH_LANDMARKS, 2))
    landmarks[list(RIGHT_IRIS)] = np.random.default_rng(seed).normal((70, 100), 2, (5, 2))
    landmarks[list(LEFT_IRIS)] = np.random.default_rng(seed + 1).normal((130, 100), 2, (5, 2))
    return landmarks


def test_signatures_ignore_position_size_and_roll_but_not_shape() -> None:
    original = face(0)
    angle = np.radians(25.0)
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = original @ turn.T * 1.7 + (40.0, -12.0)
    for region in GEOMETRY_REGIONS.values():
        assert np.allclose(geometry_signature(moved, region), geometry_signature(original, region))
        assert not np.allclose(geometry_signature(face(5), region), geometry_signature(original, region))


def test_every_region_and_all_together_or_nothing_without_landmarks() -> None:
    signatures = geometry_signatures(face(0))
    assert list(signatures) == [
        "geometry:eyelids", "geometry:irises", "geometry:brows", "geometry:eyes-irises-brows"
    ]
    together = signatures["geometry:eyes-irises-brows"]
    assert together is not None and together.shape == (2 * (32 + 10 + 20),)
    assert set(geometry_signatures(None).values()) == {None}
    with pytest.raises(IndexError):
        geometry_signature(np.zeros((10, 2)), GEOMETRY_REGIONS["brows"])
