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


class BrowKeeping(StrEnum):
    """What a kept brow takes from the patient's; its shape is always the template's."""

    #: Its mean position: height, left/right asymmetry and how far apart the brows are.
    POSITION = "position"
    #: Its height only (brow ptosis, asymmetry), and none of the brow's landmarks is the patient's.
    HEIGHT = "height"


class MouthCorners(StrEnum):
    """What the mask takes of the height of the mouth corners (with ``mouth_state``)."""

    #: How much lower one corner is than the other (a facial palsy); their mean is the template's.
    ASYMMETRY = "asymmetry"
    #: Each corner's own height: also a smile both corners share.
    HEIGHTS = "heights"


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
    """Options of the digital mask."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    preserve: tuple[Region, ...] | Literal["all"] = Field(
        default=DEFAULT_PRESERVE,
        description="regions where the patient's own geometry is kept; the identity-free template "
        "shapes the rest. Brows are kept by position (see `brows`), not by shape. "
        "`all` keeps the whole face shape (like the published mask, and linkable)",
    )
    brows: BrowKeeping = Field(
        default=BrowKeeping.POSITION,
        description="what a preserved brow takes from the patient's, its shape being the "
        "template's: `position` (its mean position: height, left/right asymmetry, spacing) or "
        "`height` (only its height; no brow landmark keeps the patient's position; on faces-tune "
        "no less linkable and the eyelids read a little less truly, see docs/results.md)",
    )
    template_variation: float = Field(
        default=0.12, ge=0.0, le=0.3,
        description="how much the template's size (a fraction) and its vertical position "
        "(inter-ocular distances) change from one photo to the next, away from the eyes, so that "
        "masks of one person cannot be linked by where the template sits on the face. 0: never",
    )
    eyes: EyeRendering = Field(
        default=EyeRendering.RENDERED,
        description="inside the eyelid openings: `rendered` draws sclera, iris and pupil from the "
        "landmarks (gaze and lid position survive), `original` keeps the patient's pixels",
    )
    background: BackgroundPolicy = Field(
        default=BackgroundPolicy.FILL,
        description="everything outside the mask: `fill` (flat `fill_color`), `blur` or `keep`; "
        "with `blur` and `keep` the patient's own face outline is still filled with `fill_color`",
    )
    fill_color: RGB = Field(
        default=(128, 128, 128),
        description="RGB colour of the `fill` background and of the patient's face outline under "
        "the mask; never taken from the patient",
    )
    skin_albedo: RGB = Field(
        default=(196, 172, 156),
        description="RGB albedo of the rendered mask's skin (shaded by the light, darker brows and "
        "lid margins, tinted lips); the same for every patient",
    )
    max_faces: int = Field(default=4, ge=1, le=16, description="the most faces masked in one image or frame")
    detection_confidence: float = Field(
        default=0.5, gt=0.0, lt=1.0,
        description="minimum confidence for the face detector and Face Mesh to report a face "
        "(stills, the eye corrections, and the frames where a sequence looks for faces anew)",
    )
    tracking_confidence: float = Field(
        default=0.5, gt=0.0, lt=1.0,
        description="frame sequences: minimum confidence for Face Mesh to keep following a face "
        "into the next frame; below it the next frame looks for faces anew",
    )
    max_gap_frames: int = Field(
        default=5, ge=0,
        description="frame sequences: consecutive frames without a face that are interpolated "
        "before the sequence fails closed",
    )
    residual_check: bool = Field(
        default=True,
        description="run an independent face detector on the output and refuse it if it finds "
        "an unmasked face",
    )
    mouth_state: bool = Field(
        default=True,
        description="take the mouth's opening (closed, parted, open) and its corners' height from "
        "the patient (a closed mouth stays closed, a palsy's dropped corner stays dropped; see "
        "`mouth_corners`); the lips' shape, thickness and width stay the template's. `false`: the "
        "template's mouth",
    )
    mouth_corners: MouthCorners = Field(
        default=MouthCorners.ASYMMETRY,
        description="with `mouth_state`: what the corners take from the patient's, `asymmetry` "
        "(one corner lower than the other, as with a facial palsy; a smile both share stays the "
        "template's) or `heights` (each corner's own height, the smile too)",
    )
    eye_corrections: int = Field(
        default=3, ge=0, le=8,
        description="stills with rendered eyes: how many times the drawn eyes are corrected after "
        "Face Mesh has looked at them; of all the drawings it looked at, the one whose eyes it "
        "found closest to the photo's is kept. Each costs one Face Mesh pass",
    )

    def preserved_regions(self) -> frozenset[Region] | None:
        """The preserved regions, or ``None`` when the whole face shape is kept."""
        return None if self.preserve == "all" else frozenset(self.preserve)
