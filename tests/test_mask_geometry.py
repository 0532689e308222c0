"""Mask shape: the identity-free template, eye-derived placement, preserved regions."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.mask.calibration import CALIBRATED, displacement, load_calibration
from gateway.mask.geometry import VARIATION_VALUES, eye_centres, eye_frame, mask_shape, mesh_blend, variation_of
from gateway.mask.masker import FaceMasker
from gateway.mask.settings import BrowKeeping, MaskSettings, Region
from gateway.mask.template import load_template
from gateway.mask.topology import LEFT_BROW, MESH_VERTEX_COUNT, REGION_VERTICES, RIGHT_BROW
from tests.support.photos import photo
from tools.build_mask_template import mirror_map

DEFAULT = MaskSettings().preserved_regions()


@pytest.fixture(scope="module")
def hopper_points(masker: FaceMasker) -> np.ndarray:
    return masker.detect(photo("grace_hopper"))[0].points


def test_template_is_a_normalised_symmetric_mean_of_at_least_40_people() -> None:
    template = load_template()
    assert template.people >= 40 and template.photos >= template.people
    # Fitted on a tuning set, never on the set the privacy audit reports on.
    assert template.source.startswith("faces-tune") and f"{template.photos} photos" in template.source
    right, left = eye_centres(template.vertices)
    assert np.allclose(right, [-0.5, 0.0, 0.0], atol=1e-3) and np.allclose(left, [0.5, 0.0, 0.0], atol=1e-3)
    mirrored = template.vertices[mirror_map(template.vertices)] * [-1.0, 1.0, 1.0]
    assert np.abs(mirrored - template.vertices).max() < 1e-4


def test_blend_keeps_regions_exactly_and_falls_off_to_the_template() -> None:
    template = load_template().vertices
    weights = mesh_blend(template, DEFAULT).shape
    kept = np.concatenate([REGION_VERTICES[r] for r in DEFAULT if r is not Region.BROWS])
    assert (weights[kept] == 1.0).all()
    assert weights[152] == 0.0 and weights[1] == 0.0  # chin and nose tip come from the template
    mesh = weights[:MESH_VERTEX_COUNT]
    assert ((mesh > 0) & (mesh < 1)).sum() > 10  # a fall-off, not a seam
    assert (mesh_blend(template, None).shape == 1.0).all()
    assert (mesh_blend(template, frozenset({Region.IRISES})).shape[:MESH_VERTEX_COUNT] == 0.0).all()


def test_face_proportions_and_brow_shape_do_not_reach_the_mask(hopper_points: np.ndarray) -> None:
    """A longer, wider face with other brows but the same eyes gets the same mask there."""
    template = load_template().vertices
    blend = mesh_blend(template, DEFAULT)
    origin, iod = eye_frame(hopper_points)
    changed = hopper_points.copy()
    below = changed[:, 1] > origin[1] + 0.3 * iod
    changed[below, :2] = origin[:2] + (changed[below, :2] - origin[:2]) * [1.15, 1.25]
    for brow in (RIGHT_BROW, LEFT_BROW):  # arch each brow, same mean position
        bend = (changed[brow, 0] - changed[brow, 0].mean()) ** 2 / iod
        changed[brow, 1] -= bend - bend.mean()
    before, after = mask_shape(hopper_points, template, blend), mask_shape(changed, template, blend)
    free = blend.shape == 0.0
    assert np.linalg.norm(changed[free] - hopper_points[free], axis=1).max() / iod > 0.2
    assert np.linalg.norm(after[free] - before[free], axis=1).max() / iod < 1e-9
    kept = blend.shape == 1.0
    assert np.allclose(before[kept], hopper_points[kept])


def test_brows_keep_their_height_not_their_shape(hopper_points: np.ndarray) -> None:
    template = load_template().vertices
    blend = mesh_blend(template, DEFAULT)
    _, iod = eye_frame(hopper_points)
    raised = hopper_points.copy()
    raised[RIGHT_BROW, 1] -= 0.1 * iod  # a raised right brow (left unchanged)
    before, after = mask_shape(hopper_points, template, blend), mask_shape(raised, template, blend)
    lift = before[RIGHT_BROW, 1] - after[RIGHT_BROW, 1]
    assert np.allclose(lift, 0.1 * iod * blend.groups[0][1][RIGHT_BROW], atol=1e-9)
    assert np.allclose(lift, 0.1 * iod)
    assert np.allclose(before[LEFT_BROW], after[LEFT_BROW], atol=0.02 * iod)


@pytest.mark.parametrize(("brows", "follows"), [(BrowKeeping.HEIGHT, False), (BrowKeeping.POSITION, True)])
def test_brows_follow_a_sideways_shift_only_when_kept_by_position(
    hopper_points: np.ndarray, brows: BrowKeeping, follows: bool
) -> None:
    """Brows moved apart: the mask's brows move apart too only with ``brows: position``."""
    template = load_template().vertices
    blend = mesh_blend(template, DEFAULT, brows)
    _, iod = eye_frame(hopper_points)
    apart = hopper_points.copy()
    apart[RIGHT_BROW, 0] -= 0.1 * iod
    apart[LEFT_BROW, 0] += 0.1 * iod
    before, after = mask_shape(hopper_points, template, blend), mask_shape(apart, template, blend)
    spread = after[LEFT_BROW, 0].mean() - after[RIGHT_BROW, 0].mean()
    spread -= before[LEFT_BROW, 0].mean() - before[RIGHT_BROW, 0].mean()
    assert spread / iod == pytest.approx(0.2 if follows else 0.0, abs=0.01)


def test_calibration_moves_eye_landmarks_against_the_measured_displacement(hopper_points: np.ndarray) -> None:
    calibration = load_calibration()
    assert calibration.photos > 0 and np.abs(calibration.offsets).max() < 0.1
    assert calibration.source.startswith("faces-tune")
    moved = calibration.apply(hopper_points, hopper_points)
    assert np.allclose(displacement(hopper_points, moved), -calibration.offsets)
    untouched = np.setdiff1d(np.arange(MESH_VERTEX_COUNT), CALIBRATED)
    assert np.array_equal(moved[untouched], hopper_points[untouched])


def test_variation_changes_the_template_away_from_the_kept_eyes(hopper_points: np.ndarray) -> None:
    template = load_template().vertices
    blend = mesh_blend(template, DEFAULT)
    variation = variation_of(hopper_points)
    assert np.array_equal(variation, variation_of(hopper_points.copy()))  # deterministic
    assert not np.array_equal(variation, variation_of(hopper_points + 0.5))
    assert variation.shape == (VARIATION_VALUES,) and (np.abs(variation) <= 1.0).all()
    _, iod = eye_frame(hopper_points)
    plain = mask_shape(hopper_points, template, blend)
    varied = mask_shape(hopper_points, template, blend, np.ones(VARIATION_VALUES), 0.12)
    kept = blend.shape == 1.0
    assert np.allclose(varied[kept], plain[kept])
    assert np.linalg.norm(varied[152] - plain[152]) / iod > 0.1  # the chin moves
