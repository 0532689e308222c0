"""Fixtures shared by the whole test run.

Loading the Face Mesh graphs and the OpenGL context of a masker takes seconds, so one masker
with default settings serves every test that needs no other settings; a test that needs other
settings makes its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest

from tests.support.photos import photo

if TYPE_CHECKING:
    from gateway.mask.masker import FaceMasker


@pytest.fixture(scope="session")
def masker() -> Iterator[FaceMasker]:
    """A masker with default settings, closed at the end of the run. Frame sequences start
    with ``reset_tracking`` (``mask_frames`` does it), so what one test tracked does not
    follow the next."""
    from gateway.mask.masker import FaceMasker  # mediapipe loads only for tests that mask
    from gateway.mask.settings import MaskSettings

    with FaceMasker(MaskSettings()) as default_masker:
        yield default_masker


@pytest.fixture(scope="session")
def small_face() -> np.ndarray:
    """The astronaut photo (a face) reduced to 160 x 120 to keep the codecs fast; read-only,
    since every test of the run sees the same array."""
    rgb = cv2.resize(photo("astronaut"), (160, 120), interpolation=cv2.INTER_AREA)
    rgb.setflags(write=False)
    return rgb
