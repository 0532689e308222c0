"""Closed-loop eye correction of stills: the eyes looked at in the photo's own view, corrected,
and the drawing found closest kept."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.mask import FaceLandmarks, FaceMasker, MaskSettings
from gateway.mask.geometry import eye_frame
from gateway.mask.landmarks import MeshView
from gateway.mask.refine import (
    IRISES,
    LARGEST_CORRECTION,
    LIDS,
    MISMATCH,
    EyeRefiner,
    corrected,
    crop_view,
    eye_error,
)
from tests.support.photos import photo


@pytest.fixture(scope="module")
def refiner() -> EyeRefiner:
    refiner = EyeRefiner(MaskSettings())
    yield refiner
    refiner.close()


def seen_error(refiner: EyeRefiner, output: np.ndarray, face: FaceLandmarks) -> float:
    """How far Face Mesh finds the eyes of ``face`` on ``output``, looking the way the mask does."""
    found = refiner.look(output, face.view, face.points)
    assert found is not None
    return eye_error(found.displacement, face.points)


@pytest.mark.parametrize("name", ["grace_hopper", "astronaut"])
def test_more_corrections_never_leave_the_eyes_found_further_off(refiner: EyeRefiner, name: str) -> None:
    rgb = photo(name)
    errors = []
    for corrections in (0, 1, 3):
        with FaceMasker(MaskSettings(eye_corrections=corrections)) as masker:
            face = masker.detect(rgb)[0]
            output = masker.mask_image(rgb)
            assert np.array_equal(output, masker.render(rgb, [face], refine_eyes=True))
            errors.append(seen_error(refiner, output, face))

    assert errors[0] >= errors[1] >= errors[2]  # each count's drawings include the smaller count's
    assert errors[2] < errors[0]


def test_the_eyes_are_looked_at_in_the_view_the_photo_was_measured_in(masker: FaceMasker, refiner: EyeRefiner) -> None:
    rgb = photo("astronaut")
    face = masker.detect(rgb)[0]

    assert face.view == MeshView((0, 0, rgb.shape[1], rgb.shape[0]), face.view.side)
    found = refiner.look(rgb, face.view, face.points)
    assert found is not None and not found.displacement.any()


def test_a_look_on_the_region_of_a_whole_look_finds_the_same_eyes(masker: FaceMasker, refiner: EyeRefiner) -> None:
    rgb = photo("grace_hopper")
    face = masker.detect(rgb)[0]
    output = masker.render(rgb, [face])

    whole = refiner.look(output, face.view, face.points)

    assert whole is not None and whole.region is not None
    again = refiner.look(output, face.view, face.points, whole.region)
    assert again is not None and again.region == whole.region
    assert np.array_equal(again.displacement, whole.displacement)


def test_without_corrections_the_calibrated_drawing_is_left_as_it_is(masker: FaceMasker) -> None:
    rgb = photo("grace_hopper")
    face = masker.detect(rgb)[0]

    with FaceMasker(MaskSettings(eye_corrections=0)) as uncorrected:
        assert np.array_equal(uncorrected.mask_image(rgb), masker.render(rgb, [face]))


def test_landmarks_without_a_view_are_looked_at_around_their_face(masker: FaceMasker, refiner: EyeRefiner) -> None:
    rgb = photo("grace_hopper")
    face = masker.detect(rgb)[0]
    region = masker._region(masker._shape(face), face.points, rgb.shape)
    view = crop_view(region, rgb.shape)

    found = refiner.look(masker.render(rgb, [face]), view, face.points)

    assert found is not None
    assert eye_error(found.displacement, face.points) < MISMATCH


def test_a_view_without_these_eyes_gives_no_displacement(masker: FaceMasker, refiner: EyeRefiner) -> None:
    hopper = photo("grace_hopper")
    face = masker.detect(hopper)[0]
    elsewhere = face.points + [hopper.shape[1] / 2, 0.0, 0.0]

    assert refiner.look(hopper, face.view, elsewhere) is None
    blank = np.full_like(hopper, 128)
    assert refiner.look(blank, face.view, face.points) is None


@pytest.fixture(scope="module")
def points(masker: FaceMasker) -> np.ndarray:
    return masker.detect(photo("grace_hopper"))[0].points


def test_correction_moves_lids_and_irises_against_their_displacement(points: np.ndarray) -> None:
    _, scale = eye_frame(points)
    displacement = np.zeros((len(points), 2))
    displacement[IRISES[0]] = [0.01 * scale, -0.02 * scale]
    displacement[LIDS] = [-0.02 * scale, 0.01 * scale]

    moved = corrected(points, displacement, points, points)

    assert np.allclose(moved[IRISES[0], :2] - points[IRISES[0], :2], [-0.01 * scale, 0.02 * scale])
    assert np.array_equal(moved[IRISES[1]], points[IRISES[1]])
    assert np.allclose(moved[LIDS, :2] - points[LIDS, :2], [0.02 * scale, -0.01 * scale])
    others = np.setdiff1d(np.arange(len(points)), np.concatenate([LIDS, *IRISES]))
    assert np.array_equal(moved[others], points[others])


def test_corrections_add_up_to_at_most_the_largest_correction(points: np.ndarray) -> None:
    _, scale = eye_frame(points)
    step = np.zeros((len(points), 2))
    step[LIDS] = [0.03 * scale, -0.03 * scale]

    once = corrected(points, step, points, points)
    twice = corrected(once, step, points, points)

    assert np.allclose(once[LIDS, :2] - points[LIDS, :2], [-0.03 * scale, 0.03 * scale])
    largest = LARGEST_CORRECTION * scale
    assert np.allclose(twice[LIDS, :2] - points[LIDS, :2], [-largest, largest])
