"""The mouth's state from the patient: opening and corner heights, on the template's lips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gateway.audit.fidelity import FaceMeshLandmarker, mouth_aperture
from gateway.audit.mouths import mouth_class
from gateway.mask import FaceMasker, MaskSettings
from gateway.mask.compose import MOUTH
from gateway.mask.mouth import (
    CLOSED_APERTURE,
    DRAWN_CLOSED_BELOW,
    MouthState,
    aperture,
    corner_lift,
    is_closed,
    mouth_state,
    posed_template,
)
from gateway.mask.template import load_template
from gateway.mask.topology import (
    LEFT_BROW,
    LEFT_EYE_OPENING,
    LOWER_INNER_LIP,
    MOUTH_CORNERS,
    MOUTH_OPENING,
    RIGHT_EYE_OPENING,
    UPPER_INNER_LIP,
)
from tests.support.photos import photo, read_rgb

TEMPLATE = load_template().vertices
UNTOUCHED = np.concatenate([RIGHT_EYE_OPENING, LEFT_EYE_OPENING, LEFT_BROW, [1, 152]])  # eyes, brow, nose, chin


def test_the_template_mouth_is_open_and_a_closed_state_closes_it_along_its_length() -> None:
    assert aperture(TEMPLATE) > 0.12
    closed = posed_template(TEMPLATE, MouthState(0.0, corner_lift(TEMPLATE)))
    assert aperture(closed) == pytest.approx(0.0, abs=1e-9)
    upper, lower = closed[UPPER_INNER_LIP], closed[LOWER_INNER_LIP]
    order = np.argsort(upper[:, 0])
    upper_at = np.interp(lower[:, 0], upper[order, 0], upper[order, 1])
    assert np.abs(lower[:, 1] - upper_at).max() < 0.005  # the lips touch from corner to corner
    # The lips keep the template's width, and nothing away from the mouth moves.
    assert np.allclose(closed[list(MOUTH_CORNERS), 0], TEMPLATE[list(MOUTH_CORNERS), 0])
    assert np.array_equal(closed[UNTOUCHED], TEMPLATE[UNTOUCHED])
    wide = posed_template(TEMPLATE, MouthState(0.4, corner_lift(closed)))
    assert aperture(wide) == pytest.approx(0.4, abs=0.01)


def test_a_mouth_measured_a_little_apart_is_drawn_closed_and_one_past_the_cut_parted() -> None:
    # Landmarks put the lips of many closed mouths a little apart: under the cut they are drawn
    # touching, past it with an opening (not the closed mouth's seam).
    for measured, closed in ((CLOSED_APERTURE + 0.01, True), (DRAWN_CLOSED_BELOW + 0.01, False)):
        face = posed_template(TEMPLATE, MouthState(measured, corner_lift(TEMPLATE))) * 80.0 + (300.0, 200.0, 0.0)
        state = mouth_state(face, TEMPLATE)
        assert (state.aperture == 0.0) is closed
        assert is_closed(posed_template(TEMPLATE, state)) is closed


def test_each_corner_takes_its_own_height() -> None:
    right, left = corner_lift(TEMPLATE)
    palsy = posed_template(TEMPLATE, MouthState(aperture(TEMPLATE), (right - 0.08, left)))
    new_right, new_left = corner_lift(palsy)
    assert new_right == pytest.approx(right - 0.08, abs=0.005) and new_left == pytest.approx(left, abs=0.005)
    assert np.array_equal(palsy[UNTOUCHED], TEMPLATE[UNTOUCHED])


def test_corners_by_asymmetry_keep_a_drop_but_not_a_shared_smile() -> None:
    right, left = corner_lift(TEMPLATE)
    smile = MouthState(aperture(TEMPLATE), (right + 0.06, left + 0.06))
    assert np.allclose(corner_lift(posed_template(TEMPLATE, smile, heights=False)), (right, left), atol=0.005)
    assert corner_lift(posed_template(TEMPLATE, smile))[0] == pytest.approx(right + 0.06, abs=0.005)
    palsy = posed_template(TEMPLATE, MouthState(aperture(TEMPLATE), (right - 0.08, left)), heights=False)
    new_right, new_left = corner_lift(palsy)
    assert new_right - new_left == pytest.approx(right - left - 0.08, abs=0.005)
    assert (new_right + new_left) / 2 == pytest.approx((right + left) / 2, abs=0.005)


def test_the_state_is_measured_in_the_template_frame_whatever_the_pose() -> None:
    state = mouth_state(TEMPLATE * 80.0 + (300.0, 200.0, 0.0), TEMPLATE)
    turned = TEMPLATE @ np.array([[np.cos(0.3), -np.sin(0.3), 0], [np.sin(0.3), np.cos(0.3), 0], [0, 0, 1]]).T
    again = mouth_state(turned * 80.0 + (300.0, 200.0, 0.0), TEMPLATE)
    assert again.aperture == pytest.approx(state.aperture, abs=1e-6)
    assert np.allclose(again.corner_lift, state.corner_lift, atol=1e-6)


def test_a_closed_mouth_is_masked_closed_and_an_open_template_is_the_setting_off(masker: FaceMasker) -> None:
    hopper = photo("grace_hopper")
    landmarker = FaceMeshLandmarker()
    try:
        original = landmarker.landmarks(hopper)
        assert original is not None and mouth_aperture(original) < CLOSED_APERTURE
        face = masker.detect(hopper)[0]
        shape = masker._shape(face)
        assert is_closed(shape)
        masked = masker.mask_image(hopper)
        again = landmarker.landmarks(masked, near=original)
        # Face Mesh reads the mask's mouth as closed too (under the audit's closed threshold).
        assert again is not None and mouth_class(mouth_aperture(again)) == "closed"
        # No dark interior where the lips touch.
        lips = shape[MOUTH_OPENING, :2]
        x0, y0 = np.floor(lips.min(axis=0)).astype(int) - 2
        x1, y1 = np.ceil(lips.max(axis=0)).astype(int) + 2
        assert not (np.abs(masked[y0:y1, x0:x1].astype(int) - MOUTH).max(axis=2) < 12).any()
        with FaceMasker(MaskSettings(mouth_state=False)) as template_mouth:
            assert not is_closed(template_mouth._shape(face))
    finally:
        landmarker.close()


FACES_TUNE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "faces-tune"
#: faces-tune photos whose lips touch (Face Mesh reads under 0.01 on the original) and whose mask,
#: with the lips' middle left skin coloured and no seam drawn over them, read as parted (0.08 to 0.11).
CLOSED_TUNE_PHOTOS = (
    "Alexander_Downer/Alexander_Downer_0003.jpg",
    "Bill_Clinton/Bill_Clinton_0006.jpg",
    "Clay_Aiken/Clay_Aiken_0003.jpg",
    "Elizabeth_Hurley/Elizabeth_Hurley_0001.jpg",
)


@pytest.mark.skipif(not FACES_TUNE.is_dir(), reason="faces-tune is not available")
def test_closed_mouths_of_real_photos_read_closed_on_the_mask(masker: FaceMasker) -> None:
    landmarker = FaceMeshLandmarker()
    try:
        for name in CLOSED_TUNE_PHOTOS:
            rgb = read_rgb(FACES_TUNE / name)
            original = landmarker.landmarks(rgb)
            assert original is not None and mouth_aperture(original) < 0.01, name
            again = landmarker.landmarks(masker.mask_image(rgb), near=original)
            assert again is not None and mouth_class(mouth_aperture(again)) == "closed", name
    finally:
        landmarker.close()
