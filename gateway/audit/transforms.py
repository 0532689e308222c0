"""Face transforms compared by the privacy audit, all behind one interface.

The classic de-identification transforms (blur, pixelation, eye crop, eye bar) are the baselines
the digital mask has to beat: they either still let a face recogniser find the person or they
destroy the signs a clinician needs. Each transform gets the RGB photo and the face region found
on the original (as a defender's pipeline would have it) and returns a new RGB image of the same
size. The digital mask finds the face itself and ignores the region.

Transforms are named by a spec on the command line:

* ``none``, ``blur``, ``pixelate``, ``eyecrop``, ``eyebar``;
* ``jpeg75``: the photo re-encoded as JPEG at quality 75, nothing else changed: the noise floor
  of the fidelity figures (how far Face Mesh's reading moves when only compression changed), from
  which the report's thresholds are derived (``gateway.audit.thresholds``);
* ``mask`` (default mask settings), ``mask:KEY=VALUE[:KEY=VALUE...]`` (settings overridden,
  values read as YAML scalars, e.g. ``mask:eyes=original``), ``mask@PROFILE`` (the mask settings
  of a profile of the gateway configuration).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np
import yaml

from gateway.errors import AuditError

#: Gaussian blur sigma as a fraction of the face box width.
BLUR_SIGMA_PER_WIDTH = 1.0 / 8.0
#: Pixelation grid laid over the face box (blocks per side), whatever the photo's resolution.
PIXELATE_BLOCKS = 12
#: Grey of everything outside the eye strip of ``eyecrop``.
EYECROP_GREY = 128
#: Eye strip of ``eyecrop``, in inter-ocular distances from the midpoint of the eyes: both eyes
#: with their canthi and the lower brows, as in the "cropped" photos of the published study.
EYECROP_HALF_LENGTH = 1.0
EYECROP_HALF_HEIGHT = 0.45
#: JPEG quality of ``jpeg75``: a common archive setting, lossy enough to move a few pixels.
NOISE_FLOOR_JPEG_QUALITY = 75
#: Black bar of ``eyebar``, in inter-ocular distances: both eyes from canthus to canthus.
EYEBAR_HALF_LENGTH = 0.85
EYEBAR_HALF_HEIGHT = 0.25


@dataclass(frozen=True)
class FaceRegion:
    """Where the face of the original photo is, in pixels.

    Attributes
    ----------
    box:
        Face box ``(left, top, right, bottom)``; may reach past the image border.
    right_eye, left_eye:
        Centres of the subject's right and left eye, ``(x, y)``.
    """

    box: tuple[int, int, int, int]
    right_eye: tuple[float, float]
    left_eye: tuple[float, float]


class FaceTransform(Protocol):
    """A way of releasing a face photo; the unit the audit compares."""

    @property
    def name(self) -> str:
        """The spec this transform was made from; it names its row in the report."""

    def apply(self, rgb: np.ndarray, region: FaceRegion) -> np.ndarray:
        """Return the released image (HxWx3 uint8 RGB, same size as ``rgb``).

        Raises
        ------
        NoFaceFound, ResidualFace
            When the transform fails closed: the photo would not be released at all.
        """


def _clipped_box(rgb: np.ndarray, region: FaceRegion) -> tuple[int, int, int, int]:
    height, width = rgb.shape[:2]
    left, top, right, bottom = region.box
    return max(left, 0), max(top, 0), min(right, width), min(bottom, height)


def eye_strip(region: FaceRegion, half_length: float, half_height: float) -> np.ndarray:
    """Corners of a rectangle along the line through both eyes, as an int32 ``(4, 2)`` polygon.

    Sizes are in inter-ocular distances, so the strip follows head roll and photo scale.
    """
    right_eye = np.asarray(region.right_eye, dtype=np.float64)
    left_eye = np.asarray(region.left_eye, dtype=np.float64)
    distance = float(np.linalg.norm(left_eye - right_eye))
    along = (left_eye - right_eye) / distance
    across = np.array([-along[1], along[0]])
    centre = (left_eye + right_eye) / 2.0
    a = along * half_length * distance
    c = across * half_height * distance
    corners = [centre - a - c, centre + a - c, centre + a + c, centre - a + c]
    return np.rint(corners).astype(np.int32)


def _strip_mask(rgb: np.ndarray, strip: np.ndarray) -> np.ndarray:
    inside = np.zeros(rgb.shape[:2], dtype=np.uint8)
    cv2.fillConvexPoly(inside, strip, (1,))
    return inside.astype(bool)


class Unchanged:
    """``none``: the photo as it is, the attacker's best case and the sanity check."""

    name = "none"

    def apply(self, rgb: np.ndarray, region: FaceRegion) -> np.ndarray:
        return rgb.copy()


class FaceBlur:
    """``blur``: Gaussian blur of the face box with sigma = 1/8 of the box width."""

    name = "blur"

    def apply(self, rgb: np.ndarray, region: FaceRegion) -> np.ndarray:
        left, top, right, bottom = _clipped_box(rgb, region)
        sigma = BLUR_SIGMA_PER_WIDTH * (region.box[2] - region.box[0])
        # Blur a margin of 3 sigma around the box so the box edge sees real neighbours, not padding.
        margin = int(np.ceil(3 * sigma))
        height, width = rgb.shape[:2]
        y0, y1 = max(top - margin, 0), min(bottom + margin, height)
        x0, x1 = max(left - margin, 0), min(right + margin, width)
        blurred = cv2.GaussianBlur(rgb[y0:y1, x0:x1], (0, 0), sigmaX=sigma, sigmaY=sigma)
        released = rgb.copy()
        released[top:bottom, left:right] = blurred[top - y0 : bottom - y0, left - x0 : right - x0]
        return released


class FacePixelate:
    """``pixelate``: the face box reduced to a 12 x 12 grid of flat blocks."""

    name = "pixelate"

    def apply(self, rgb: np.ndarray, region: FaceRegion) -> np.ndarray:
        left, top, right, bottom = _clipped_box(rgb, region)
        face = rgb[top:bottom, left:right]
        blocks = cv2.resize(face, (PIXELATE_BLOCKS, PIXELATE_BLOCKS), interpolation=cv2.INTER_AREA)
        released = rgb.copy()
        released[top:bottom, left:right] = cv2.resize(
            blocks, (right - left, bottom - top), interpolation=cv2.INTER_NEAREST
        )
        return released


class EyeCrop:
    """``eyecrop``: only a strip around both eyes is kept, everything else is grey."""

    name = "eyecrop"

    def apply(self, rgb: np.ndarray, region: FaceRegion) -> np.ndarray:
        keep = _strip_mask(rgb, eye_strip(region, EYECROP_HALF_LENGTH, EYECROP_HALF_HEIGHT))
        released = np.full_like(rgb, EYECROP_GREY)
        released[keep] = rgb[keep]
        return released


class EyeBar:
    """``eyebar``: a black bar over both eyes, the newspaper convention."""

    name = "eyebar"

    def apply(self, rgb: np.ndarray, region: FaceRegion) -> np.ndarray:
        bar = _strip_mask(rgb, eye_strip(region, EYEBAR_HALF_LENGTH, EYEBAR_HALF_HEIGHT))
        released = rgb.copy()
        released[bar] = 0
        return released


class JpegReencode:
    """``jpeg75``: the photo encoded as JPEG at quality 75 and decoded again.

    Nothing a clinician reads changes, so whatever the landmarker reads differently on it is
    measurement noise: the floor below which no transform's fidelity error means anything.
    """

    name = f"jpeg{NOISE_FLOOR_JPEG_QUALITY}"

    def apply(self, rgb: np.ndarray, region: FaceRegion) -> np.ndarray:
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        encoded, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, NOISE_FLOOR_JPEG_QUALITY])
        if not encoded:
            raise AuditError("OpenCV cannot encode JPEG")
        return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


class DigitalMask:
    """``mask``: the gateway's digital mask (``gateway.mask.FaceMasker``) with given settings.

    The masker is built on first use, once per audit run, because it loads models and opens a
    render context. It finds the face itself and fails closed like the gateway does.
    """

    def __init__(self, name: str, settings: Any) -> None:
        self.name = name
        self.settings = settings
        self._masker: Any = None

    def apply(self, rgb: np.ndarray, region: FaceRegion) -> np.ndarray:
        if self._masker is None:
            from gateway.mask import FaceMasker

            self._masker = FaceMasker(self.settings)
        return self._masker.mask_image(rgb)

    def close(self) -> None:
        """Release the masker's models and render context, if it was built."""
        if self._masker is not None:
            self._masker.close()
            self._masker = None


#: The transforms that need no settings, by name.
TRANSFORMS: dict[str, Callable[[], FaceTransform]] = {
    "none": Unchanged,
    "blur": FaceBlur,
    "pixelate": FacePixelate,
    "eyecrop": EyeCrop,
    "eyebar": EyeBar,
    JpegReencode.name: JpegReencode,
}
MASK = "mask"


def _mask_settings(spec: str, mask_profiles: Mapping[str, Any | None]) -> Any:
    try:
        from gateway.mask.settings import MaskSettings
    except ImportError as exc:
        raise AuditError("the digital mask is not part of this installation") from exc
    from pydantic import ValidationError

    if spec.startswith(MASK + "@"):
        profile = spec[len(MASK) + 1 :]
        if profile not in mask_profiles:
            raise AuditError(f"transform {spec!r}: no profile {profile!r} in the configuration")
        settings = mask_profiles[profile]
        if settings is None:
            raise AuditError(f"transform {spec!r}: profile {profile!r} does not mask pixels")
        return settings
    options: dict[str, Any] = {}
    for option in spec.split(":")[1:]:
        key, sep, value = option.partition("=")
        if not sep or not key:
            raise AuditError(f"transform {spec!r}: expected KEY=VALUE, got {option!r}")
        try:
            options[key] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise AuditError(f"transform {spec!r}: {key} has a value that is not YAML") from None
    try:
        return MaskSettings(**options)
    except ValidationError as exc:
        raise AuditError(f"transform {spec!r}: invalid mask settings: {exc}") from exc


def transform_from_spec(spec: str, mask_profiles: Mapping[str, Any | None] | None = None) -> FaceTransform:
    """Build the transform a spec names (see the module docstring for the syntax).

    Parameters
    ----------
    spec:
        ``none``, ``blur``, ``pixelate``, ``eyecrop``, ``eyebar``, ``jpeg75``, ``mask``,
        ``mask:KEY=VALUE...`` or ``mask@PROFILE``.
    mask_profiles:
        Mask settings by profile name (None for a tags-only profile), for ``mask@PROFILE``.

    Raises
    ------
    AuditError
        Unknown name, unknown profile or invalid mask settings.
    """
    if spec in TRANSFORMS:
        return TRANSFORMS[spec]()
    if spec == MASK or spec.startswith((MASK + ":", MASK + "@")):
        return DigitalMask(spec, _mask_settings(spec, mask_profiles or {}))
    known = ", ".join([*TRANSFORMS, MASK])
    raise AuditError(f"unknown transform {spec!r} (known: {known})")
