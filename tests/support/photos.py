"""RGB photos for tests and benchmarks, from files that ship inside installed packages.

``grace_hopper`` (matplotlib) and ``astronaut`` (scikit-image) show one face each, ``retina``
(scikit-image) is a fundus photo with no face, ``camera`` (scikit-image) the greyscale
cameraman. Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import matplotlib
import numpy as np
import skimage


def photo_path(name: str) -> Path:
    """The file of a shipped photo: grace_hopper, astronaut, camera or retina."""
    if name == "grace_hopper":
        return Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    suffix = ".jpg" if name == "retina" else ".png"
    return Path(skimage.__file__).parent / "data" / f"{name}{suffix}"


def photo(name: str) -> np.ndarray:
    """A shipped photo as an RGB array (see :func:`photo_path` for the names)."""
    return read_rgb(photo_path(name))


def read_rgb(path: Path) -> np.ndarray:
    """An image file (JPEG, PNG) as an RGB array."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, path
    return np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))


def resized(image: np.ndarray, pixels: int) -> np.ndarray:
    """The image scaled (aspect kept) to about ``pixels`` pixels, e.g. 1_000_000 for 1 MP."""
    scale = (pixels / (image.shape[0] * image.shape[1])) ** 0.5
    size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
    return np.ascontiguousarray(cv2.resize(image, size, interpolation=cv2.INTER_LINEAR))
