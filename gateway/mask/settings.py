"""What a profile may choose about the mask (``Profile.mask`` in the gateway configuration).

The defaults are the privacy-preserving choice and usable as they are: keep the eyes, eyelids,
irises and brows of the patient (what ophthalmology needs), render the eyes, replace everything
around the face with a flat colour, and refuse the output if a second detector still sees a face
that no mask covers.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Channel = Annotated[int, Field(ge=0, le=255)]
RGB = tuple[Channel, Channel, Channel]


class EyeRendering(StrEnum):
    """How the eyes inside the eyelid openings are shown."""

    #: Sclera, iris and pupil drawn from the landmarks: gaze and lid position survive, nothing else.
    RENDERED = "rendered"
    #: The original pixels inside each eyelid opening (redness, lesions); costs privacy.
    ORIGINAL = "original"


class BackgroundPolicy(StrEnum):
    """What becomes of the pixels that are not the rendered face (hair, ears, neck, room)."""

    FILL = "fill"
    BLUR = "blur"
    KEEP = "keep"


class Region(StrEnum):
    """Parts of the face whose own geometry a mask can keep (``preserve``).

    Their landmarks are listed in ``gateway.mask.topology.REGION_VERTICES``.
    """

    EYES = "eyes"
    EYELIDS = "eyelids"
    IRISES = "irises"
    BROWS = "brows"
    MOUTH = "mouth"


DEFAULT_PRESERVE = (Region.EYES, Region.EYELIDS, Region.IRISES, Region.BROWS)


class MaskSettings(BaseModel):
    """Options of the digital mask.

    Parameters
    ----------
    preserve
        Regions where the patient's own geometry is kept; the identity-free template shapes the
        rest. Brows are kept by position (height, left/right asymmetry), not by shape.
        ``"all"`` keeps the whole face shape (like the published mask, and linkable).
    eyes
        ``rendered`` or ``original`` pixels inside the eyelid openings.
    background
        ``fill`` (flat ``fill_color``), ``blur`` or ``keep`` for everything outside the mask.
        With ``blur`` and ``keep`` the patient's own face outline is still filled.
    fill_color, skin_albedo
        RGB colours of the background fill and of the rendered skin; never the patient's.
    max_faces
        The most faces masked in one image or frame.
    detection_confidence, tracking_confidence
        Minimum confidences of the face detector and of frame-to-frame landmark tracking.
    max_gap_frames
        In a frame sequence, how many consecutive frames without a face are interpolated before
        the sequence fails closed.
    residual_check
        Run an independent face detector on the output and refuse it if it finds an unmasked face.
    eye_corrections
        Stills with rendered eyes: how many times the drawn eyes are corrected after Face Mesh has
        looked at them (``gateway.mask.refine``); of all the drawings it looked at, the one whose
        eyes it found closest to the photo's is kept. Each costs one more Face Mesh pass.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    preserve: tuple[Region, ...] | Literal["all"] = DEFAULT_PRESERVE
    eyes: EyeRendering = EyeRendering.RENDERED
    background: BackgroundPolicy = BackgroundPolicy.FILL
    fill_color: RGB = (128, 128, 128)
    skin_albedo: RGB = (196, 172, 156)
    max_faces: int = Field(default=4, ge=1, le=16)
    detection_confidence: float = Field(default=0.5, gt=0.0, lt=1.0)
    tracking_confidence: float = Field(default=0.5, gt=0.0, lt=1.0)
    max_gap_frames: int = Field(default=5, ge=0)
    residual_check: bool = True
    eye_corrections: int = Field(default=3, ge=0, le=8)

    def preserved_regions(self) -> frozenset[Region] | None:
        """The preserved regions, or ``None`` when the whole face shape is kept."""
        return None if self.preserve == "all" else frozenset(self.preserve)
