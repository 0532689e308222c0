"""The baseline face transforms of the privacy audit and how transform specs are read."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.audit.transforms import (
    EYECROP_GREY,
    PIXELATE_BLOCKS,
    TRANSFORMS,
    DigitalMask,
    FaceRegion,
    eye_strip,
    transform_from_spec,
)
from gateway.errors import AuditError
from tests.support import photos

# Where dlib's detector and 5-point predictor put her face and eye centres.
REGION = FaceRegion(box=(180, 139, 366, 325), right_eye=(226.0, 191.5), left_eye=(305.0, 189.0))


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    rgb = photos.photo("grace_hopper")
    rgb.setflags(write=False)  # a transform must never write into its input
    return rgb


def box_mask(shape: tuple[int, ...], box: tuple[int, int, int, int]) -> np.ndarray:
    inside = np.zeros(shape[:2], dtype=bool)
    left, top, right, bottom = box
    inside[top:bottom, left:right] = True
    return inside


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_transforms_keep_size_and_are_deterministic(photo: np.ndarray, name: str) -> None:
    transform = transform_from_spec(name)
    assert transform.name == name
    released = transform.apply(photo, REGION)
    assert released.shape == photo.shape and released.dtype == np.uint8
    assert np.array_equal(released, transform.apply(photo, REGION))


def test_none_releases_the_photo_unchanged(photo: np.ndarray) -> None:
    assert np.array_equal(transform_from_spec("none").apply(photo, REGION), photo)


def test_jpeg75_changes_only_what_compression_changes(photo: np.ndarray) -> None:
    released = transform_from_spec("jpeg75").apply(photo, REGION).astype(int)
    difference = np.abs(released - photo.astype(int))
    assert 0.5 < difference.mean() < 4.0  # every block re-quantised, nothing replaced
    assert np.percentile(difference, 99) < 25


def test_blur_smooths_only_the_face_box(photo: np.ndarray) -> None:
    released = transform_from_spec("blur").apply(photo, REGION)
    inside = box_mask(photo.shape, REGION.box)
    assert np.array_equal(released[~inside], photo[~inside])
    left, top, right, bottom = REGION.box
    face, blurred = photo[top:bottom, left:right].astype(float), released[top:bottom, left:right].astype(float)
    # sigma = 186 / 8 px: neighbouring pixels become nearly equal.
    assert np.abs(np.diff(blurred, axis=1)).mean() < 0.1 * np.abs(np.diff(face, axis=1)).mean()


def test_pixelate_makes_a_grid_of_flat_blocks(photo: np.ndarray) -> None:
    released = transform_from_spec("pixelate").apply(photo, REGION)
    inside = box_mask(photo.shape, REGION.box)
    assert np.array_equal(released[~inside], photo[~inside])
    left, top, right, bottom = REGION.box
    face = released[top:bottom, left:right].reshape(-1, 3)
    assert len(np.unique(face, axis=0)) <= PIXELATE_BLOCKS * PIXELATE_BLOCKS
    row = released[(top + bottom) // 2, left:right]
    runs = 1 + np.count_nonzero(np.any(np.diff(row.astype(int), axis=0) != 0, axis=1))
    assert runs <= PIXELATE_BLOCKS


def test_blur_and_pixelate_clip_a_box_that_leaves_the_photo(photo: np.ndarray) -> None:
    outside = FaceRegion(box=(-40, -30, 120, 140), right_eye=(20.0, 40.0), left_eye=(70.0, 40.0))
    for name in ("blur", "pixelate"):
        released = transform_from_spec(name).apply(photo, outside)
        assert not np.array_equal(released[:140, :120], photo[:140, :120])
        assert np.array_equal(released[140:], photo[140:])


def test_eye_strip_is_measured_in_interocular_distances_and_follows_roll() -> None:
    level = FaceRegion(box=(0, 0, 1, 1), right_eye=(100.0, 100.0), left_eye=(140.0, 100.0))
    corners = eye_strip(level, half_length=1.0, half_height=0.5)
    assert sorted(map(tuple, corners)) == [(80, 80), (80, 120), (160, 80), (160, 120)]
    rolled = FaceRegion(box=(0, 0, 1, 1), right_eye=(100.0, 100.0), left_eye=(100.0, 140.0))
    corners = eye_strip(rolled, half_length=1.0, half_height=0.5)
    assert sorted(map(tuple, corners)) == [(80, 80), (80, 160), (120, 80), (120, 160)]


def test_eyecrop_keeps_only_the_eyes(photo: np.ndarray) -> None:
    released = transform_from_spec("eyecrop").apply(photo, REGION)
    for x, y in (REGION.right_eye, REGION.left_eye):
        assert np.array_equal(released[int(y), int(x)], photo[int(y), int(x)])
    grey = np.all(released == EYECROP_GREY, axis=2)
    assert grey.mean() > 0.9
    assert grey[300, 270]  # mouth
    assert grey[150, 270]  # forehead


def test_eyebar_blackens_the_eyes_only(photo: np.ndarray) -> None:
    released = transform_from_spec("eyebar").apply(photo, REGION)
    for x, y in (REGION.right_eye, REGION.left_eye):
        assert not released[int(y), int(x)].any()
    changed = np.any(released != photo, axis=2)
    assert 0.005 < changed.mean() < 0.05
    assert not changed[300, 270] and not changed[150, 270]


def test_unknown_transform_is_refused() -> None:
    with pytest.raises(AuditError, match="unknown transform 'smudge'"):
        transform_from_spec("smudge")


def test_mask_specs_carry_settings() -> None:
    from gateway.mask.settings import EyeRendering, MaskSettings

    default = transform_from_spec("mask")
    assert isinstance(default, DigitalMask) and default.name == "mask"
    original_eyes = transform_from_spec("mask:eyes=original:residual_check=false")
    assert original_eyes.name == "mask:eyes=original:residual_check=false"
    assert original_eyes.settings == MaskSettings(eyes=EyeRendering.ORIGINAL, residual_check=False)
    profiles = {"research": MaskSettings(eyes=EyeRendering.ORIGINAL), "tags-only": None}
    assert transform_from_spec("mask@research", profiles).settings == profiles["research"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("mask:no_such_option=1", "invalid mask settings"),
        ("mask:eyes", "expected KEY=VALUE"),
        ("mask:preserve=[eyes", "preserve has a value that is not YAML"),
        ("mask@tags-only", "does not mask pixels"),
        ("mask@missing", "no profile 'missing'"),
    ],
)
def test_bad_mask_specs_are_refused(spec: str, message: str) -> None:
    with pytest.raises(AuditError, match=message):
        transform_from_spec(spec, {"tags-only": None})


def test_the_mask_transform_releases_its_masker_and_builds_another_when_used_again(photo: np.ndarray) -> None:
    mask = transform_from_spec("mask")
    first = mask.apply(photo, REGION)
    mask.close()
    mask.close()  # closing twice is harmless

    assert np.array_equal(mask.apply(photo, REGION), first)
    mask.close()
