"""FaceMasker on real photos: faces replaced, eyes kept, background policy, failing closed."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.errors import NoFaceFound, ResidualFace, UnsupportedPixelFormat
from gateway.mask import FaceMasker, MaskSettings
from gateway.mask.topology import LEFT_EYE_OPENING, LEFT_IRIS_CENTRE, RIGHT_EYE_OPENING, RIGHT_IRIS_CENTRE
from tests.support.photos import photo

LIDS = np.concatenate([RIGHT_EYE_OPENING, LEFT_EYE_OPENING])
IRISES = [RIGHT_IRIS_CENTRE, LEFT_IRIS_CENTRE]


@pytest.fixture(scope="module")
def hopper() -> np.ndarray:
    return photo("grace_hopper")


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return photo("astronaut")


def interocular(points: np.ndarray) -> float:
    return float(np.linalg.norm(points[RIGHT_IRIS_CENTRE, :2] - points[LEFT_IRIS_CENTRE, :2]))


def face_box(points: np.ndarray, shape: tuple[int, ...]) -> tuple[slice, slice]:
    x0, y0 = np.maximum(points[:, :2].min(axis=0).astype(int), 0)
    x1, y1 = np.minimum(points[:, :2].max(axis=0).astype(int), [shape[1], shape[0]])
    return slice(y0, y1), slice(x0, x1)


@pytest.mark.parametrize("name", ["grace_hopper", "astronaut"])
def test_face_is_replaced_and_eyes_are_found_where_they_were(masker: FaceMasker, name: str) -> None:
    rgb = photo(name)
    original = masker.detect(rgb)
    masked = masker.mask_image(rgb)

    assert masked.shape == rgb.shape and masked.dtype == np.uint8
    region = face_box(original[0].points, rgb.shape)
    changed = np.abs(masked[region].astype(int) - rgb[region].astype(int)).max(axis=2) > 24
    assert changed.mean() > 0.6

    again = masker.detect(masked)
    assert len(again) == 1
    before, after = original[0].points, again[0].points
    iod = interocular(before)
    eyelid_error = np.linalg.norm(before[LIDS, :2] - after[LIDS, :2], axis=1).mean() / iod
    iris_error = np.linalg.norm(before[IRISES, :2] - after[IRISES, :2], axis=1).mean() / iod
    assert eyelid_error < 0.025
    assert iris_error < 0.015


def test_fill_background_leaves_nothing_of_the_photo_outside_the_mask(masker: FaceMasker, hopper: np.ndarray) -> None:
    masked = masker.mask_image(hopper)
    points = masker.detect(hopper)[0].points
    rows, columns = face_box(points, hopper.shape)
    outside = np.ones(hopper.shape[:2], dtype=bool)
    # The mask has the template's outline, which may reach a little beyond the patient's.
    margin = 30
    outside[rows.start - margin: rows.stop + margin, columns.start - margin: columns.stop + margin] = False
    assert (masked[outside] == masker.settings.fill_color).all()


def test_keep_background_keeps_the_room_and_fills_the_face_outline(hopper: np.ndarray) -> None:
    settings = MaskSettings(background="keep", residual_check=False)
    with FaceMasker(settings) as masker:
        masked = masker.mask_image(hopper)
        points = masker.detect(hopper)[0].points
    rows, columns = face_box(points, hopper.shape)
    assert np.array_equal(masked[:, : columns.start - 40], hopper[:, : columns.start - 40])
    assert np.array_equal(masked[rows.stop + 60:], hopper[rows.stop + 60:])
    # the cheek beside the template-shaped mask is the patient's: it must not survive
    cheek = points[234, :2].astype(int)  # 234: the right cheek on the face outline
    assert not np.array_equal(masked[cheek[1], cheek[0]], hopper[cheek[1], cheek[0]])


def test_blur_background_hides_detail_away_from_the_face(astronaut: np.ndarray) -> None:
    with FaceMasker(MaskSettings(background="blur")) as masker:
        masked = masker.mask_image(astronaut)
    corner_original, corner_masked = astronaut[300:, :200].astype(float), masked[300:, :200].astype(float)
    assert np.abs(np.diff(corner_masked, axis=1)).mean() < np.abs(np.diff(corner_original, axis=1)).mean() / 3
    assert abs(corner_masked.mean() - corner_original.mean()) < 20


def test_photo_without_a_face_is_refused(masker: FaceMasker) -> None:
    with pytest.raises(NoFaceFound) as raised:
        masker.mask_image(photo("retina"))
    assert raised.value.reason == "no-face"


def test_two_faces_side_by_side_are_both_masked(masker: FaceMasker, hopper: np.ndarray, astronaut: np.ndarray) -> None:
    height = min(hopper.shape[0], astronaut.shape[0])
    pair = np.ascontiguousarray(np.hstack([hopper[:height], astronaut[:height]]))
    faces = masker.detect(pair)
    assert len(faces) == 2
    masked = masker.mask_image(pair)
    for face in faces:
        region = face_box(face.points, pair.shape)
        assert (np.abs(masked[region].astype(int) - pair[region].astype(int)).max(axis=2) > 24).mean() > 0.6


def test_a_face_left_unmasked_is_caught_by_the_second_detector(hopper: np.ndarray, astronaut: np.ndarray) -> None:
    height = min(hopper.shape[0], astronaut.shape[0])
    pair = np.ascontiguousarray(np.hstack([hopper[:height], astronaut[:height]]))
    with FaceMasker(MaskSettings(background="keep")) as masker:
        faces = masker.detect(pair)
        only_one = masker.render(pair, faces[:1])
        with pytest.raises(ResidualFace) as raised:
            masker.check_residual(only_one, faces[:1])
        masker.check_residual(masker.render(pair, faces), faces)
    assert raised.value.reason == "residual-face"


def test_output_is_byte_identical_across_maskers(masker: FaceMasker, astronaut: np.ndarray) -> None:
    first = masker.mask_image(astronaut)
    with FaceMasker(MaskSettings(skin_albedo=(90, 90, 90))) as other:  # one masker per profile
        darker = other.mask_image(astronaut)
        second = masker.mask_image(astronaut)  # drawn while the other's GL context exists
    assert np.array_equal(first, second)
    assert not np.array_equal(first, darker)


def test_a_key_draws_the_template_variation_deterministically(masker: FaceMasker, astronaut: np.ndarray) -> None:
    unkeyed = masker.mask_image(astronaut)
    with FaceMasker(MaskSettings(), key=b"k" * 32) as keyed, FaceMasker(MaskSettings(), key=b"j" * 32) as other:
        first, second, third = keyed.mask_image(astronaut), keyed.mask_image(astronaut), other.mask_image(astronaut)
    assert np.array_equal(first, second)
    assert not np.array_equal(first, unkeyed)
    assert not np.array_equal(first, third)


@pytest.mark.parametrize("turns", [1, 2, 3])
def test_rotated_photo_is_found_and_masked(masker: FaceMasker, astronaut: np.ndarray, turns: int) -> None:
    upright = masker.detect(astronaut)[0].points
    rotated = np.ascontiguousarray(np.rot90(astronaut, turns))
    faces = masker.detect(rotated)
    assert len(faces) == 1
    back = faces[0].points[RIGHT_IRIS_CENTRE, :2]
    height, width = astronaut.shape[:2]
    x, y = upright[RIGHT_IRIS_CENTRE, :2]
    expected = {1: (y, width - x), 2: (width - x, height - y), 3: (height - y, x)}[turns]
    assert np.linalg.norm(back - expected) < 0.03 * interocular(upright)
    masker.mask_image(rotated)


def test_small_face_in_a_large_photo_is_found(masker: FaceMasker, hopper: np.ndarray) -> None:
    canvas = np.full((3000, 4000, 3), 90, dtype=np.uint8)
    small = hopper[::3, ::3]
    canvas[1200: 1200 + small.shape[0], 2500: 2500 + small.shape[1]] = small
    faces = masker.detect(canvas)
    assert len(faces) == 1
    x0, y0, x1, y1 = faces[0].box()
    assert 2500 < x0 < x1 < 2500 + small.shape[1] and 1200 < y0 < y1 < 1200 + small.shape[0]


def test_input_that_is_not_rgb_uint8_is_refused(masker: FaceMasker, hopper: np.ndarray) -> None:
    with pytest.raises(UnsupportedPixelFormat):
        masker.mask_image(hopper[..., 0])
    with pytest.raises(UnsupportedPixelFormat):
        masker.mask_image(hopper.astype(np.uint16))


def test_original_eyes_keep_the_pixels_inside_the_lid_openings_only(hopper: np.ndarray) -> None:
    with FaceMasker(MaskSettings(eyes="original")) as masker:
        points = masker.detect(hopper)[0].points
        masked = masker.mask_image(hopper)
    for centre in points[IRISES, :2].astype(int):
        assert np.array_equal(masked[centre[1], centre[0]], hopper[centre[1], centre[0]])
    nose = points[1, :2].astype(int)
    assert not np.array_equal(masked[nose[1], nose[0]], hopper[nose[1], nose[0]])
