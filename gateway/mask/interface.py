"""What callers of the mask library may rely on a masker for, importable without mediapipe.

:class:`~gateway.mask.masker.FaceMasker` satisfies these protocols; code that only passes a
masker around (the gateway's pipeline, a test double of the tracker's input) types against them
and does not load mediapipe or OpenGL to do so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from gateway.mask.landmarks import FaceLandmarks
    from gateway.mask.settings import MaskSettings


class ClipMasker(Protocol):
    """What :func:`gateway.mask.video.mask_frames` needs: detection and rendering as two steps,
    so that the landmarks can be tracked and smoothed between them."""

    @property
    def settings(self) -> MaskSettings:
        """The mask options (the tracker reads ``max_gap_frames``)."""

    def reset_tracking(self) -> None:
        """Start a new frame sequence."""

    def detect(self, rgb: np.ndarray, tracking: bool = False) -> list[FaceLandmarks]:
        """Landmarks of every face in ``rgb``; ``tracking`` follows the previous frame's faces."""

    def render(self, rgb: np.ndarray, faces: list[FaceLandmarks], refine_eyes: bool = False) -> np.ndarray:
        """``rgb`` with each of ``faces`` replaced by its mask."""

    def check_residual(self, output: np.ndarray, faces: list[FaceLandmarks]) -> None:
        """Raise ``ResidualFace`` if a face that no mask of ``faces`` covers is left."""

    def rendered_area(self, shape: tuple[int, ...], faces: list[FaceLandmarks]) -> np.ndarray:
        """``H x W`` bool: where :meth:`render` drew (synthetic pixels: the masks of ``faces``, and
        a filled background)."""


@dataclass(frozen=True)
class MaskedImage:
    """A masked still and where the mask drew.

    ``rendered`` (``H x W`` bool) is the area the masker drew, the rendered faces and a filled
    background: synthetic pixels only, in which no burned-in text of the source can survive, so
    later steps (the text step) leave it.
    """

    rgb: np.ndarray
    rendered: np.ndarray


class StillMasker(Protocol):
    """What masking a still image needs: one call, detection to residual check."""

    def mask_image(self, rgb: np.ndarray) -> np.ndarray:
        """The image with every face replaced by the digital mask."""

    def mask_still(self, rgb: np.ndarray) -> MaskedImage:
        """As :meth:`mask_image`, with the area the mask rendered."""
