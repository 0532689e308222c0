"""Putting a rendered mask into the image: background policy, eyes, mouth, blending.

The render covers the face surface; the eyelid and mouth openings are holes in it. Through the
mouth opening shows an open mouth's dark interior or, where the lips touch, only the seam between
them. Through the eye openings shows either a drawn eye (sclera, an iris ellipse fitted to the 5
iris landmarks, a pupil, and over the lids a lash line and a lower lid margin), so that gaze and
eyelid position survive without the patient's own eye, or the original pixels of the openings
only. Everything that is not the mask becomes the background: a flat colour by default,
because hair, ears, neck, clothes and the room identify too. With ``blur`` and ``keep`` the
patient's own face outline is still filled, so that no part of the real face is left beside a
mask shaped like the template.
"""

from __future__ import annotations

import cv2
import numpy as np

from gateway.mask.landmarks import Box, reduced
from gateway.mask.mouth import is_closed
from gateway.mask.settings import BackgroundPolicy, EyeRendering, MaskSettings
from gateway.mask.topology import (
    FACE_OVAL,
    INNER_CORNER,
    LEFT_EYE_OPENING,
    LEFT_IRIS,
    MOUTH_CORNERS,
    MOUTH_OPENING,
    OUTER_CORNER,
    RIGHT_EYE_OPENING,
    RIGHT_IRIS,
    UPPER_INNER_LIP,
)

#: Fixed-point bits for sub-pixel drawing with OpenCV.
SHIFT = 4
SCLERA = (226, 222, 216)
LIMBUS = (52, 44, 40)
IRIS = (104, 86, 72)
PUPIL = (18, 16, 16)
IRIS_INNER = 0.82
PUPIL_SIZE = 0.42
MOUTH = (72, 36, 36)
#: Where closed lips meet: a line a little darker than the lips, not an open mouth's interior.
LIP_SEAM = (132, 74, 74)
#: Thickness of that line, drawn over the rendered lips, in mouth widths (at least a pixel).
#: Under the mesh alone the seam hardly shows, and Face Mesh put the inner lips of a closed
#: mouth apart, as if parted (docs/results.md).
LIP_SEAM_WIDTH = 0.02
#: The patient's face outline is filled this much beyond its landmarks (blur and keep).
OUTLINE_GROWTH = 1.15
#: Longest side of the image a ``blur`` background is computed at, before it is scaled back.
BLUR_SIDE = 48
#: Pixels by which drawn openings extend under the mesh's antialiased rim.
RIM = 2
#: Upper lash line: colour, and thickness in the middle of the lid in eye widths (corner to
#: corner). Face Mesh reads a lid from its margin, which a shaded mesh edge hardly has. Darker
#: lines, (40, 32, 30) and, with the eye corrections of ``gateway.mask.refine``, (70, 56, 51),
#: put the eyelid points a little closer still but made masks of one person easier to link to
#: each other (docs/results.md), so the line keeps this lighter colour.
LASH = (80, 64, 58)
LASH_WIDTH = 0.03
#: Lash line thickness at the corners, as a share of its thickness in the middle.
LASH_TAPER = 0.3
#: Share of a lid line drawn inside the opening (over the sclera); the rest lies on the lid.
LID_LINE_INSIDE = 0.3
#: Lower lid margin: lighter than the lash line, partly transparent and fading out towards the
#: corners (a lower lid shows mostly its wet rim).
LOWER_LID = (128, 92, 86)
LOWER_LID_WIDTH = 0.035
LOWER_LID_OPACITY = 0.6


def _fixed(points: np.ndarray) -> np.ndarray:
    """Fixed-point OpenCV coordinates of landmark positions.

    Landmarks (like the renderer) put pixel ``i``'s centre at ``i + 0.5``; OpenCV puts it at ``i``.
    """
    return np.round((points[:, :2] - 0.5) * (1 << SHIFT)).astype(np.int32)


def background(rgb: np.ndarray, settings: MaskSettings) -> np.ndarray:
    """The image with every pixel replaced as the background policy says (a new array)."""
    if settings.background is BackgroundPolicy.FILL:
        return flat(rgb.shape, settings.fill_color)
    if settings.background is BackgroundPolicy.KEEP:
        return rgb.copy()
    small, _ = reduced(rgb, BLUR_SIDE)
    height, width = rgb.shape[:2]
    return cv2.resize(cv2.GaussianBlur(small, (0, 0), 1.0), (width, height), interpolation=cv2.INTER_LINEAR)


def flat(shape: tuple[int, ...], colour: tuple[int, int, int]) -> np.ndarray:
    """A new uint8 image of ``shape`` in one colour (one row broadcast: ``np.full`` with an RGB
    value is much slower on a large photo)."""
    row = np.tile(np.array(colour, dtype=np.uint8), (shape[1], 1))
    return np.ascontiguousarray(np.broadcast_to(row, (shape[0], shape[1], 3)))


def face_outline(points: np.ndarray) -> np.ndarray:
    """The patient's face outline grown by ``OUTLINE_GROWTH`` about its centre (N x 2 pixels)."""
    outline = points[FACE_OVAL, :2]
    centre = outline.mean(axis=0)
    return centre + (outline - centre) * OUTLINE_GROWTH


def _opening_mask(shape: tuple[int, ...], polygon: np.ndarray) -> np.ndarray:
    """Coverage (0-255) of an opening, grown by ``RIM`` pixels to sit under the mesh's edge."""
    mask = np.zeros(shape, dtype=np.uint8)
    fixed = _fixed(polygon)
    cv2.fillPoly(mask, [fixed], (255,), cv2.LINE_AA, SHIFT)
    cv2.polylines(mask, [fixed], True, (255,), 2 * RIM, cv2.LINE_AA, SHIFT)
    return mask


def _window(canvas: np.ndarray, polygon: np.ndarray) -> tuple[slice, slice, np.ndarray]:
    """Row and column slices of ``canvas`` around ``polygon``, and the window's origin (x, y).

    The window is empty when the polygon lies outside ``canvas`` (a canvas that is only part of
    the face, as when the eyes alone are drawn again).
    """
    height, width = canvas.shape[:2]
    low = np.floor(polygon[:, :2].min(axis=0)).astype(int) - RIM - 2
    high = np.ceil(polygon[:, :2].max(axis=0)).astype(int) + RIM + 2
    x0, y0 = max(low[0], 0), max(low[1], 0)
    x1, y1 = min(high[0], width), min(high[1], height)
    return slice(y0, max(y0, y1)), slice(x0, max(x0, x1)), np.array([x0, y0, 0.0])


def _iris_ellipse(iris: np.ndarray) -> tuple[tuple[int, int], tuple[float, float], float]:
    """``cv2.ellipse`` centre (fixed point), half axes (pixels) and angle of an iris."""
    centre, ring = _fixed(iris[:1])[0], iris[1:, :2]
    horizontal, vertical = ring[0] - ring[2], ring[1] - ring[3]
    axes = (float(np.linalg.norm(horizontal)) / 2, float(np.linalg.norm(vertical)) / 2)
    angle = float(np.degrees(np.arctan2(horizontal[1], horizontal[0])))
    return (int(centre[0]), int(centre[1])), axes, angle


def _fixed_axes(axes: tuple[float, float], size: float) -> tuple[int, int]:
    """Fixed-point ``cv2.ellipse`` axes of half ``axes`` scaled by ``size`` (at least 1)."""
    scale = 1 << SHIFT
    return max(1, int(round(axes[0] * size * scale))), max(1, int(round(axes[1] * size * scale)))


def draw_eye(canvas: np.ndarray, opening: np.ndarray, iris: np.ndarray) -> None:
    """Draw sclera, iris and pupil into ``canvas`` (in place), clipped by the eyelid ``opening``."""
    rows, columns, origin = _window(canvas, opening)
    window = canvas[rows, columns]
    if not window.size:
        return
    eye = flat(window.shape, SCLERA)
    centre, axes, angle = _iris_ellipse(iris - origin)
    for colour, size in ((LIMBUS, 1.0), (IRIS, IRIS_INNER), (PUPIL, PUPIL_SIZE)):
        cv2.ellipse(eye, centre, _fixed_axes(axes, size), angle, 0, 360, colour, -1, cv2.LINE_AA, SHIFT)
    _blend(window, eye, _opening_mask(window.shape[:2], opening - origin))


def _lid_band(lid: np.ndarray, centre: np.ndarray, width: float, taper: float) -> np.ndarray:
    """Polygon of a band along ``lid`` (corner to corner, N x 2), ``width`` pixels thick in the
    middle and ``taper`` of that at the corners, ``LID_LINE_INSIDE`` of it on the side of
    ``centre`` (the opening's centre)."""
    normal = _outward(lid, centre)
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(lid, axis=0), axis=1))])
    thickness = width * (taper + (1.0 - taper) * np.sin(np.pi * arc / max(arc[-1], 1e-9)))[:, None]
    inner = lid - normal * thickness * LID_LINE_INSIDE
    outer = lid + normal * thickness * (1.0 - LID_LINE_INSIDE)
    return np.vstack([outer, inner[::-1]])


def _outward(lid: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Unit normals of ``lid`` (N x 2) pointing away from ``centre``."""
    # Central differences inside, one-sided at the ends (as ``np.gradient``, without its
    # overhead: this runs for every lid of every drawing the eye corrections look at).
    tangent = np.empty_like(lid)
    tangent[1:-1] = (lid[2:] - lid[:-2]) / 2.0
    tangent[0], tangent[-1] = lid[1] - lid[0], lid[-1] - lid[-2]
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
    normal /= np.maximum(np.sqrt((normal * normal).sum(axis=1, keepdims=True)), 1e-9)
    return normal * np.where(((lid - centre) * normal).sum(axis=1, keepdims=True) < 0, -1.0, 1.0)


def draw_lid_margins(canvas: np.ndarray, opening: np.ndarray) -> None:
    """Draw the upper lash line and the lower lid margin of an eye ``opening`` (in place).

    Drawn over the rendered lids, from the opening alone (fixed colours, widths in proportion to
    the eye): the landmark model finds a lid by its margin, which a shaded mesh edge hardly has.
    """
    points = opening[:, :2]
    eye_width = float(np.linalg.norm(points[INNER_CORNER] - points[OUTER_CORNER]))
    centre = points.mean(axis=0)
    upper = points[OUTER_CORNER : INNER_CORNER + 1]
    lower = np.vstack([points[INNER_CORNER:], points[: OUTER_CORNER + 1]])
    for lid, colour, width, taper, opacity in (
        (lower, LOWER_LID, LOWER_LID_WIDTH, 0.0, LOWER_LID_OPACITY),
        (upper, LASH, LASH_WIDTH, LASH_TAPER, 1.0),
    ):
        band = _lid_band(lid, centre, width * eye_width, taper)
        rows, columns, origin = _window(canvas, band)
        window = canvas[rows, columns]
        if not window.size:
            continue
        coverage = np.zeros(window.shape[:2], dtype=np.uint8)
        cv2.fillPoly(coverage, [_fixed(band - origin[:2])], (int(round(255 * opacity)),), cv2.LINE_AA, SHIFT)
        _blend(window, colour, coverage)


def draw_lip_seam(canvas: np.ndarray, shape: np.ndarray) -> None:
    """Draw the line where closed lips meet over the rendered lips (in place), along the inner
    upper lip (the lower one lies on it), ``LIP_SEAM_WIDTH`` of the mouth's width thick."""
    width = float(np.linalg.norm(shape[MOUTH_CORNERS[1], :2] - shape[MOUTH_CORNERS[0], :2]))
    thickness = max(1, int(round(LIP_SEAM_WIDTH * width)))
    cv2.polylines(canvas, [_fixed(shape[UPPER_INNER_LIP])], False, LIP_SEAM, thickness, cv2.LINE_AA, SHIFT)


def fill_opening(canvas: np.ndarray, layer: np.ndarray | tuple[int, int, int], opening: np.ndarray) -> None:
    """Show ``layer`` (an image like ``canvas``, or a colour) through ``opening``, in place."""
    rows, columns, origin = _window(canvas, opening)
    window = canvas[rows, columns]
    if not window.size:
        return
    source = layer[rows, columns] if isinstance(layer, np.ndarray) else layer
    _blend(window, source, _opening_mask(window.shape[:2], opening - origin))


def _blend(canvas: np.ndarray, layer: np.ndarray | tuple[int, int, int], coverage: np.ndarray) -> None:
    """``layer`` (an image like ``canvas``, or a colour) over ``canvas`` (in place) with
    ``coverage`` (HxW, 0-255) as alpha.

    Fully covered pixels are copied (by OpenCV, faster than ``np.copyto`` with ``where``); only
    the antialiased rim is mixed, which keeps a face that fills a 12-megapixel photo cheap. An
    image layer must have its pixels contiguous (OpenCV copies a strided one first, which cost
    more than the rest of the blend); a colour needs no layer image at all.
    """
    if isinstance(layer, np.ndarray):
        cv2.copyTo(layer, (coverage == 255).view(np.uint8), canvas)
    else:
        canvas[coverage == 255] = layer
    # 1-254 wrap around to 0-253 (uint8), 0 and 255 to 255 and 254: the rim in one comparison.
    rows, columns = np.nonzero(coverage - np.uint8(1) < np.uint8(254))
    alpha = coverage[rows, columns].astype(np.float32)[:, None] / 255.0
    source = layer[rows, columns] if isinstance(layer, np.ndarray) else np.array(layer, dtype=np.uint8)
    canvas[rows, columns] = (canvas[rows, columns] * (1.0 - alpha) + source * alpha + 0.5).astype(np.uint8)


def compose_face(
    output: np.ndarray,
    original: np.ndarray,
    rendered: np.ndarray,
    shape: np.ndarray,
    points: np.ndarray,
    box: Box,
    settings: MaskSettings,
) -> None:
    """Compose one face into ``output`` over ``box`` (changed in place; nothing outside it is).

    Parameters
    ----------
    output
        The output image, already showing the background over ``box``.
    original
        The input image.
    rendered
        The mesh rendered over ``box`` (RGBA, alpha = coverage).
    shape, points
        The mask's vertices and the patient's landmarks, in image pixels.
    box
        The part of the image to compose: the face's region, or the part of it around the eyes
        when they are drawn again (``gateway.mask.refine``).
    settings
        Background and eye choices.
    """
    x0, y0, x1, y1 = box
    offset = np.array([x0, y0, 0.0])
    # From here on everything is in pixels of the box.
    canvas, original = output[y0:y1, x0:x1], original[y0:y1, x0:x1]
    shape, points = shape - offset, points - offset
    if settings.background is not BackgroundPolicy.FILL:
        cv2.fillPoly(canvas, [_fixed(face_outline(points))], settings.fill_color, cv2.LINE_AA, SHIFT)
    for opening, iris in ((RIGHT_EYE_OPENING, RIGHT_IRIS), (LEFT_EYE_OPENING, LEFT_IRIS)):
        if settings.eyes is EyeRendering.RENDERED:
            draw_eye(canvas, shape[opening], shape[iris])
        else:
            fill_opening(canvas, original, points[opening])
    closed = is_closed(shape)
    fill_opening(canvas, LIP_SEAM if closed else MOUTH, shape[MOUTH_OPENING])
    _blend(canvas, cv2.cvtColor(rendered, cv2.COLOR_RGBA2RGB), rendered[..., 3])
    if closed:
        draw_lip_seam(canvas, shape)
    if settings.eyes is EyeRendering.RENDERED:
        for opening in (RIGHT_EYE_OPENING, LEFT_EYE_OPENING):
            draw_lid_margins(canvas, shape[opening])
