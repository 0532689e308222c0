"""Headless render of the mask mesh: coverage, openings, shading, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.mask.geometry import mask_shape, mesh_blend
from gateway.mask.masker import FaceMasker
from gateway.mask.render import MaskRenderer
from gateway.mask.settings import MaskSettings
from gateway.mask.template import load_template
from gateway.mask.topology import FACE_OVAL, RIGHT_IRIS_CENTRE
from tests.support.photos import photo

ALBEDO = (196, 172, 156)


@pytest.fixture(scope="module")
def shape(masker: FaceMasker) -> np.ndarray:
    points = masker.detect(photo("grace_hopper"))[0].points
    template = load_template().vertices
    return mask_shape(points, template, mesh_blend(template, MaskSettings().preserved_regions()))


@pytest.fixture(scope="module")
def renderer() -> MaskRenderer:
    renderer = MaskRenderer(ALBEDO)
    yield renderer
    renderer.close()


def test_render_covers_the_face_and_leaves_the_eyes_open(renderer: MaskRenderer, shape: np.ndarray) -> None:
    region = (100, 80, 420, 420)
    rgba = renderer.render(shape, region)
    assert rgba.shape == (340, 320, 4) and rgba.dtype == np.uint8
    nose = shape[1, :2].astype(int) - region[:2]
    assert rgba[nose[1], nose[0], 3] == 255
    iris = shape[RIGHT_IRIS_CENTRE, :2].astype(int) - region[:2]
    assert rgba[iris[1], iris[0], 3] == 0
    assert rgba[0, 0, 3] == 0  # outside the face outline
    covered = rgba[..., 3] == 255
    assert (rgba[covered][:, :3] <= np.array(ALBEDO) + 1).all()  # Lambert + ambient never brightens
    edge = (rgba[..., 3] > 0) & (rgba[..., 3] < 255)
    assert edge.any()  # multisampled rim


def test_render_is_deterministic_and_independent_of_the_region_size(renderer: MaskRenderer, shape: np.ndarray) -> None:
    oval = shape[FACE_OVAL, :2]
    x0, y0 = np.floor(oval.min(axis=0)).astype(int) - 2
    x1, y1 = np.ceil(oval.max(axis=0)).astype(int) + 2
    first = renderer.render(shape, (x0, y0, x1, y1))
    renderer.render(shape, (0, 0, 1100, 900))  # grows the framebuffers in between
    second = renderer.render(shape, (x0, y0, x1, y1))
    assert np.array_equal(first, second)
