"""Compositing of the drawn eyes: the lid lines over the rendered lids."""

from __future__ import annotations

import numpy as np

from gateway.mask.compose import LASH_WIDTH, draw_lid_margins, flat
from gateway.mask.topology import INNER_CORNER, OUTER_CORNER

SKIN = (196, 172, 156)
#: A synthetic eye opening: centre, half width and half height in pixels.
CENTRE, HALF_WIDTH, HALF_HEIGHT = np.array([100.0, 60.0]), 50.0, 18.0


def eye_opening() -> np.ndarray:
    """An elliptic opening (16 x 3) in the ring order of ``topology``: just below the outer corner
    (left, x smaller), the outer corner, the upper lid, the inner corner, the lower lid."""
    upper = np.linspace(np.pi, 0.0, INNER_CORNER - OUTER_CORNER + 1)
    lower = -np.pi * np.arange(1, 8) / 8
    angles = np.concatenate([lower[-1:], upper, lower[:-1]])
    x = CENTRE[0] + HALF_WIDTH * np.cos(angles)
    y = CENTRE[1] - HALF_HEIGHT * np.sin(angles)
    return np.stack([x, y, np.zeros_like(x)], axis=1)


def test_lid_lines_are_drawn_along_the_lids_only() -> None:
    canvas = flat((120, 200, 3), SKIN)
    draw_lid_margins(canvas, eye_opening())
    brightness = canvas.astype(int).sum(axis=2)
    skin = sum(SKIN)
    x = int(CENTRE[0])
    upper = brightness[int(CENTRE[1] - HALF_HEIGHT) - 2 : int(CENTRE[1] - HALF_HEIGHT) + 1, x].min()
    lower = brightness[int(CENTRE[1] + HALF_HEIGHT) - 1 : int(CENTRE[1] + HALF_HEIGHT) + 2, x].min()
    assert upper < lower < skin  # a dark lash line above, a lighter lower margin below
    reach = int(np.ceil(2 * LASH_WIDTH * 2 * HALF_WIDTH)) + 1
    inside = brightness[int(CENTRE[1]) - 5 : int(CENTRE[1]) + 5, x - 20 : x + 20]
    outside = np.ones(brightness.shape, dtype=bool)
    outside[
        int(CENTRE[1] - HALF_HEIGHT) - reach : int(CENTRE[1] + HALF_HEIGHT) + reach,
        int(CENTRE[0] - HALF_WIDTH) - reach : int(CENTRE[0] + HALF_WIDTH) + reach,
    ] = False
    assert (inside == skin).all() and (brightness[outside] == skin).all()


def test_lash_line_tapers_towards_the_corners() -> None:
    canvas = flat((120, 200, 3), SKIN)
    draw_lid_margins(canvas, eye_opening())
    changed = (canvas != np.array(SKIN, dtype=np.uint8)).any(axis=2)
    top = int(CENTRE[1])  # rows above the centre: the upper lid's line only
    middle = changed[:top, int(CENTRE[0])].sum()
    near_corner = changed[:top, int(CENTRE[0] - 0.8 * HALF_WIDTH)].sum()
    assert middle > near_corner > 0
