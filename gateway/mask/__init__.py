"""The digital mask: faces replaced by a rendered, identity-free face that keeps the eyes.

``FaceMasker`` is the entry point; ``MaskSettings`` its options (``Profile.mask``);
``FaceLandmarks`` what ``FaceMasker.detect`` returns for frame sequences.

The masker and the landmarks are imported on first use: they load mediapipe and OpenGL, which
reading a configuration (``MaskSettings``) does not need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.mask.settings import BackgroundPolicy, EyeRendering, MaskSettings, Region

if TYPE_CHECKING:
    from gateway.mask.landmarks import FaceLandmarks
    from gateway.mask.masker import FaceMasker

__all__ = ["BackgroundPolicy", "EyeRendering", "FaceLandmarks", "FaceMasker", "MaskSettings", "Region"]


def __getattr__(name: str) -> Any:
    if name == "FaceMasker":
        from gateway.mask.masker import FaceMasker

        return FaceMasker
    if name == "FaceLandmarks":
        from gateway.mask.landmarks import FaceLandmarks

        return FaceLandmarks
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
