"""The mouth's state from the patient, its shape from the template.

Whether a mouth is closed, parted or open, and how high each corner sits (a facial palsy drops
one), are signs a clinician reads; the lips' shape, thickness and width identify a person. So the
template's mouth is posed, not replaced: its opening is scaled to the patient's aperture (inner-lip
gap over mouth width) and each corner is lifted or dropped by the patient's corner height above
the lips' midline, everything measured and moved in the template's normalised frame (inter-ocular
distance 1, y down). Two numbers and a ratio reach the mask, nothing of the lips' outline. By
default (``MouthCorners.ASYMMETRY``) only the corners' difference reaches it: a smile both corners
share is a trait a person shows in photo after photo, and linked masks of one person.

The opening closes or widens along its whole length in proportion to the template's own gap, so
a closed mouth's lips meet from corner to corner; the lower lip carries the skin below it along,
fading out towards the chin. A corner's shift fades out over the lips and cheek around it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gateway.mask.geometry import normalise
from gateway.mask.topology import INNER_LIP_MIDPOINTS, LOWER_INNER_LIP, MOUTH_CORNERS, UPPER_INNER_LIP

#: Widest aperture taken from the patient: beyond it the skin between lower lip and chin would
#: fold over itself (a yawn is drawn as a wide open mouth all the same).
LARGEST_APERTURE = 0.5
#: A mouth drawn with aperture ``(measured - APERTURE_OFFSET) / APERTURE_GAIN`` reads back on the
#: mask, on average, as the patient's did on the original (a rendered mouth's rim is not a real
#: one's, and the masker's own landmarks read a mouth a little narrower than Face Mesh on the whole
#: image). Fitted on faces-tune, never on the audit's set, by ``tools/calibrate_mouth.py``
#: (docs/results.md).
APERTURE_GAIN = 1.19
APERTURE_OFFSET = 0.002
#: Largest lift or drop of a corner taken from the patient, in inter-ocular distances: more is
#: a failed fit, not a face.
LARGEST_CORNER_SHIFT = 0.15
#: Distance over which a corner's shift fades out, in inter-ocular distances.
CORNER_REACH = 0.3
#: Below this aperture the lips touch: the opening is drawn as the seam between them, without
#: the dark interior of an open mouth.
CLOSED_APERTURE = 0.05
#: A mouth the masker measures under this aperture is drawn with its lips touching. It is above
#: ``CLOSED_APERTURE`` because landmarks put the inner lips of many closed mouths a little apart
#: (their rims in shadow); chosen on faces-tune mouths labelled closed or parted by eye so that
#: the fewest of either are drawn in the other state, the closed ones favoured on a tie
#: (``tools/calibrate_mouth.py``, docs/results.md).
DRAWN_CLOSED_BELOW = 0.08
#: Landmark of the chin, where the lower lip's movement has faded out.
CHIN = 152
#: Lowest point of the lower lip (outer contour), below which that movement starts to fade.
LOWER_LIP_BOTTOM = 17


@dataclass(frozen=True)
class MouthState:
    """What the mask keeps of a patient's mouth.

    Attributes
    ----------
    aperture
        Inner-lip gap over mouth width (corner to corner) to draw, 0 when the lips touch.
    corner_lift
        Height of the subject's right and left corner above the midline between the inner
        lips, in inter-ocular distances (negative: below it).
    """

    aperture: float
    corner_lift: tuple[float, float]


def aperture(points: np.ndarray) -> float:
    """Inner-lip gap over mouth width of upright landmarks (x right, y down)."""
    upper, lower = points[list(INNER_LIP_MIDPOINTS)]
    right, left = points[list(MOUTH_CORNERS)]
    return float(max(lower[1] - upper[1], 0.0) / max(left[0] - right[0], 1e-9))


def corner_lift(points: np.ndarray) -> tuple[float, float]:
    """Height of each mouth corner above the inner lips' midline, in units of ``points``."""
    midline = points[list(INNER_LIP_MIDPOINTS), 1].mean()
    right, left = points[list(MOUTH_CORNERS), 1]
    return float(midline - right), float(midline - left)


def measured_aperture(points: np.ndarray, template: np.ndarray) -> float:
    """Aperture of the face at ``points`` (pixels), measured in ``template``'s frame."""
    return aperture(normalise(points, template))


def mouth_state(points: np.ndarray, template: np.ndarray) -> MouthState:
    """The state of the mouth of the face at ``points`` (pixels), measured in ``template``'s frame,
    with the aperture to draw so that it reads back as the patient's."""
    upright = normalise(points, template)
    lift = corner_lift(upright)
    measured = aperture(upright)
    # Lips that touch are drawn touching: the read-back line is fitted on open mouths, and a
    # closed mouth drawn slightly apart reads as parted.
    drawn = 0.0 if measured < DRAWN_CLOSED_BELOW else (measured - APERTURE_OFFSET) / APERTURE_GAIN
    return MouthState(float(np.clip(drawn, 0.0, LARGEST_APERTURE)), (lift[0], lift[1]))


def _smoothstep(value: np.ndarray) -> np.ndarray:
    t = np.clip(value, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def posed_template(template: np.ndarray, state: MouthState, heights: bool = True) -> np.ndarray:
    """``template`` (normalised) with its mouth opened or closed and its corners lifted as ``state`` says.

    ``heights=False`` takes only the corners' asymmetry from ``state``: both are shifted by the
    same amount less, so that their mean height stays the template's (a smile both corners
    share is not drawn, one corner lower than the other is).
    """
    posed = template.copy()
    x, y = template[:, 0], template[:, 1]
    upper, lower = template[UPPER_INNER_LIP], template[LOWER_INNER_LIP]
    order = np.argsort(upper[:, 0])
    upper_at = np.interp(x, upper[order, 0], upper[order, 1])
    gaps = lower[:, 1] - np.interp(lower[:, 0], upper[order, 0], upper[order, 1])
    order = np.argsort(lower[:, 0])
    gap_at = np.interp(x, lower[order, 0], np.maximum(gaps[order], 0.0), left=0.0, right=0.0)
    width = template[MOUTH_CORNERS[1], 0] - template[MOUTH_CORNERS[0], 0]
    middle_gap = max(aperture(template) * width, 1e-9)
    bottom, chin = template[LOWER_LIP_BOTTOM, 1], template[CHIN, 1]
    # What lies below the upper lip's inner rim moves with the lower lip, fading out to the chin.
    below = np.where(y > upper_at, 1.0 - _smoothstep((y - bottom) / (chin - bottom)), 0.0)
    posed[:, 1] += (state.aperture * width / middle_gap - 1.0) * gap_at * below
    shifts = np.subtract(state.corner_lift, corner_lift(posed))
    if not heights:
        shifts -= shifts.mean()
    for corner, wanted in zip(MOUTH_CORNERS, shifts, strict=True):
        shift = float(np.clip(wanted, -LARGEST_CORNER_SHIFT, LARGEST_CORNER_SHIFT))
        reach = np.linalg.norm(template[:, :2] - template[corner, :2], axis=1) / CORNER_REACH
        posed[:, 1] -= shift * (1.0 - _smoothstep(reach))
    return posed


def is_closed(shape: np.ndarray) -> bool:
    """Whether the lips of a mask's vertices (pixels, any roll) touch."""
    upper, lower = shape[list(INNER_LIP_MIDPOINTS), :2]
    right, left = shape[list(MOUTH_CORNERS), :2]
    return bool(np.linalg.norm(lower - upper) < CLOSED_APERTURE * np.linalg.norm(left - right))
