"""The identity-free template face: the mean of many normalised faces, shipped as package data.

A mean over enough people belongs to nobody; the mask draws every face from it outside the
preserved regions. ``template.npz`` holds the normalised landmarks (eye midpoint at the origin,
inter-ocular distance 1, eyes on the x axis, y down) with the number of photos and of people it
was computed from and the name of the set they came from (``source``): a tuning set of people
the privacy audit does not report on, so that the audit's figures speak for faces the template
has never seen. ``tools/build_mask_template.py`` builds it.
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
    source
        The set of faces it was computed from, with its counts (``faces-tune: 1039 photos of
        300 people``).
    """

    vertices: np.ndarray
    photos: int
    people: int
    source: str


def load_template() -> Template:
    """The template shipped with the package."""
    with resources.files("gateway.mask").joinpath(PACKAGED).open("rb") as stream:
        data = np.load(stream)
        return Template(
            data["vertices"].astype(np.float64), int(data["photos"]), int(data["people"]), str(data["source"])
        )
