"""The identity-free template face: the mean of many normalised faces, shipped as package data.

A mean over enough people belongs to nobody; the mask draws every face from it outside the
preserved regions. ``template.npz`` holds the normalised landmarks (eye midpoint at the origin,
inter-ocular distance 1, eyes on the x axis, y down) with the number of photos and of people it
was computed from. ``tools/build_mask_template.py`` builds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import numpy as np

PACKAGED = "template.npz"


@dataclass(frozen=True)
class Template:
    """The identity-free face shape.

    Attributes
    ----------
    vertices
        (478, 3) normalised landmark positions.
    photos, people
        How many photos and distinct people the mean was computed from.
    """

    vertices: np.ndarray
    photos: int
    people: int


def load_template() -> Template:
    """The template shipped with the package."""
    with resources.files("gateway.mask").joinpath(PACKAGED).open("rb") as stream:
        data = np.load(stream)
        return Template(data["vertices"].astype(np.float64), int(data["photos"]), int(data["people"]))
