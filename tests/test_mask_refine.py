"""Closed-loop eye correction of stills: irises and lids found closer on the mask, bounded steps."""

from __future__ import annotations

import numpy as np
import pytest

from dicom_instances import photo
from gateway.mask import FaceMasker, MaskSettings
from gateway.mask.geometry import eye_frame
from gateway.mask.refine import IRISES, LARGEST_STEP, LID_GAIN, LIDS, MISMATCH, corrected


@pytest.fixture(scope="module")
def masker() -> FaceMasker:
    with FaceMasker(MaskSettings()) as masker:
        yield masker


def iris_error(displacement: np.ndarray) -> float:
    return float(np.mean([np.linalg.norm(displacement[iris].mean(axis=0)) for iris in IRISES]))


def lid_error(displacement: np.ndarray) -> float:
    return float(np.linalg.norm(displacement[LIDS], axis=1).mean())


@pytest.mark.parametrize("name", ["grace_hopper", "astronaut"])
def test_corrected_eyes_are_found_closer_than_the_calibrated_drawing(masker: FaceMasker, name: str) -> None:
    rgb = photo(name)
    face = masker.detect(rgb)[0]
    region = masker._region(face, rgb.shape)
    refiner = masker._refiner

    drawn = refiner.displacement(masker.render(rgb, [face]), region, face.points)
    refined = refiner.displacement(masker.render(rgb, [face], refine_eyes=True), region, face.points)

    assert drawn is not None and refined is not None
    assert iris_error(refined) < iris_error(drawn)
    assert lid_error(refined) < lid_error(drawn)
    assert np.array_equal(masker.mask_image(rgb), masker.render(rgb, [face], refine_eyes=True))


@pytest.fixture(scope="module")
def points(masker: FaceMasker) -> np.ndarray:
    return masker.detect(photo("grace_hopper"))[0].points


def test_correction_moves_irises_and_lids_back_within_the_largest_step(points: np.ndarray) -> None:
    _, scale = eye_frame(points)
    displacement = np.zeros((len(points), 2))
    displacement[IRISES[0]] = [0.01 * scale, -0.2 * scale]
    displacement[LIDS] = [0.02 * scale, -0.1 * scale]  # within MISMATCH, beyond the step

    moved = corrected(points, points, displacement)

    assert moved is not None
    assert np.allclose(moved[IRISES[0], :2] - points[IRISES[0], :2], [-0.01 * scale, LARGEST_STEP * scale])
    assert np.array_equal(moved[IRISES[1]], points[IRISES[1]])
    expected_lids = LID_GAIN * np.array([-0.02 * scale, LARGEST_STEP * scale])
    assert np.allclose(moved[LIDS, :2] - points[LIDS, :2], expected_lids)


def test_a_redetection_of_other_eyes_is_not_followed(points: np.ndarray) -> None:
    _, scale = eye_frame(points)
    displacement = np.full((len(points), 2), MISMATCH * scale)

    assert corrected(points, points, displacement) is None

