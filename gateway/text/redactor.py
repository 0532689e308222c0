"""Burned-in text out of stills and frame sequences: find, fill, verify.

A still is examined whole. A frame sequence is examined on sampled frames (every
``sample_every``-th, and every frame whose scene changed since the last one examined),
each line found is followed by template matching through the frames up to the neighbouring
examined ones, and the union of all regions found is filled in every frame: an overlay that a
detector misses in one frame is caught in another, and a date that moves or blinks is covered
wherever it was seen or followed. Detection costs far more than a frame is worth at video rates;
following costs a small template match per line and frame.

After filling, the same frames of the output are examined again; only when that finds nothing may
the output claim to be free of burned-in text. Only the neighbourhood of the fills is examined
again, at the scale of the first pass: everywhere else the pixels are those in which the first pass
found nothing, and with nothing found the first pass is the verification. The verification looks at
the output with its fills painted over from their surroundings: flat boxes side by side look like a
line of text to the detector, and what it must find is text left around them, not the fills.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from gateway.text.detector import DetectorSettings, TextDetector, TextRegion
from gateway.text.reader import TextReader
from gateway.text.regions import box_corners, fill_mask, grown
from gateway.text.settings import TextSettings

#: Size of the grey thumbnails compared to find scene changes.
THUMBNAIL = (32, 24)
#: The neighbourhood of a fill that is verified: its box grown by this many times its short side
#: (text cut by a fill continues beside it), plus ``CONTEXT_PIXELS``.
CONTEXT = 0.5
CONTEXT_PIXELS = 16


@dataclass(frozen=True)
class Redaction:
    """What the text step did to an image or a frame sequence.

    ``frames`` are the output; ``polygons`` what was filled (grown text lines, then device
    boxes); ``lines`` how many text lines were found (not counting allowed ones); ``allowed``
    how many the allow-list kept; ``text_left`` whether the verification pass still finds text.
    """

    frames: list[np.ndarray]
    polygons: tuple[np.ndarray, ...]
    lines: int
    allowed: int
    text_left: bool

    @property
    def filled(self) -> bool:
        """Whether any pixel was changed."""
        return bool(self.polygons)


class TextRedactor:
    """Runs one profile's text settings on images; holds the detector (one per worker)."""

    def __init__(self, settings: TextSettings, detector: TextDetector | None = None,
                 reader: TextReader | None = None) -> None:
        self.settings = settings
        self._detector = detector or TextDetector(DetectorSettings(pixel_budget=settings.detection_pixels))
        self._allow = re.compile(settings.allow) if settings.allow is not None else None
        self._reader = reader if reader is not None or self._allow is None else TextReader()

    def find(self, rgb: np.ndarray, scale: float | None = None) -> tuple[list[TextRegion], int]:
        """The text lines of ``rgb`` that must go, and how many the allow-list kept.

        ``scale``: the detector's, when ``rgb`` is a crop of a larger image.
        """
        regions = self._detector.detect(rgb, scale)
        if self._allow is None or self._reader is None or not regions:
            return regions, 0
        kept = [line.region for line in self._reader.read(rgb, regions)
                if line.confidence >= self.settings.allow_confidence and self._allow.fullmatch(line.text.strip())]
        return [region for region in regions if region not in kept], len(kept)

    def device_boxes(self, attributes: Mapping[str, object]) -> list[np.ndarray]:
        """The fixed boxes of every device rule the attributes match."""
        return [box_corners(box) for rule in self.settings.device_regions if rule.matches(attributes)
                for box in rule.boxes]

    def redact(self, frames: Sequence[np.ndarray], attributes: Mapping[str, object],
               keep_out: Sequence[np.ndarray] | None = None) -> Redaction:
        """Fill the text of a still (one frame) or a sequence, and verify the output.

        ``attributes`` are the instance's values by keyword, for the device rules. ``keep_out``
        (one ``H x W`` bool array per frame): pixels left as they are, the area the face mask
        rendered (with a filled background, the whole frame). No text of the source survives under
        the opaque render, and the detector takes rendered eyes and shaded faces for glyphs, so a
        line lying inside it is not text and one crossing its edge is filled outside it only.
        Device boxes are filled whole.
        """
        def kept(index: int) -> np.ndarray | None:
            return None if keep_out is None else keep_out[index]

        found = {index: self._find_outside(frames[index], kept(index))
                 for index in examined_frames(frames, self.settings.sample_every, self.settings.scene_change)}
        examined = sorted(found)
        lines = [line for index in examined for line in found[index][0]]
        allowed = sum(count for _, count in found.values())
        followed = [place for index in examined for line in found[index][0]
                    for place in followed_places(frames, index, line, examined)]
        polygons = tuple([grown(line, self.settings.margin) for line in lines + followed]
                         + self.device_boxes(attributes))
        if not polygons:
            return Redaction(list(frames), (), 0, allowed, text_left=False)
        shape = (frames[0].shape[0], frames[0].shape[1])
        mask = fill_mask(polygons, shape)
        if keep_out is None:
            masks = [mask] * len(frames)
        else:
            devices = fill_mask(self.device_boxes(attributes), shape)
            masks = [(mask & ~area) | devices for area in keep_out]
        output = [_filled(frame, frame_mask, self.settings.fill_color)
                  for frame, frame_mask in zip(frames, masks, strict=True)]
        left = any(self._text_left(output[index], polygons, masks[index], kept(index)) for index in examined)
        return Redaction(output, polygons, len(lines), allowed, left)

    def _find_outside(self, rgb: np.ndarray, keep_out: np.ndarray | None,
                      scale: float | None = None) -> tuple[list[TextRegion], int]:
        """:meth:`find` without the lines lying in ``keep_out`` (of ``rgb``'s size).

        Where ``keep_out`` is everything (a masked output with a filled background), no pixel
        of the source is left to hold text, and the detector is not run.
        """
        if keep_out is not None and keep_out.all():
            return [], 0
        regions, allowed = self.find(rgb, scale)
        if keep_out is None:
            return regions, allowed
        return [region for region in regions if not inside(region, keep_out)], allowed

    def _text_left(self, output: np.ndarray, polygons: Sequence[np.ndarray], mask: np.ndarray,
                   keep_out: np.ndarray | None) -> bool:
        """Whether the detector still finds text around the fills of an examined output frame."""
        scale = self._detector.scale(*mask.shape)
        for x0, y0, x1, y1 in neighbourhoods(polygons, (mask.shape[0], mask.shape[1])):
            window = without_fills(output[y0:y1, x0:x1], mask[y0:y1, x0:x1])
            if self._find_outside(window, None if keep_out is None else keep_out[y0:y1, x0:x1], scale)[0]:
                return True
        return False


#: A text line with at least this share of its box in the kept-out area lies inside it (and is
#: not counted); any other is filled where it is outside the area, so that the end of a line
#: running into the face is not left because most of its box is on the face.
INSIDE = 0.9


def inside(region: TextRegion, keep_out: np.ndarray) -> bool:
    """Whether (nearly) all of ``region``'s box lies in ``keep_out``."""
    x0, y0, x1, y1 = region.bounds()
    box = keep_out[max(y0, 0):y1, max(x0, 0):x1]
    return box.size > 0 and float(box.mean()) >= INSIDE


def examined_frames(frames: Sequence[np.ndarray], every: int, scene_change: float) -> list[int]:
    """Indices of the frames to examine: every ``every``-th and each scene change.

    Text on screen for ``every`` frames in a row is so examined at least once, the last frames of
    a sequence included; a line found is followed into the frames after it.
    """
    chosen: list[int] = []
    reference: np.ndarray | None = None
    for index, frame in enumerate(frames):
        thumbnail = cv2.resize(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), THUMBNAIL,
                               interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        changed = reference is not None and float(np.abs(thumbnail - reference).mean()) >= scene_change
        if index % every == 0 or changed:
            chosen.append(index)
            reference = thumbnail
    return chosen


#: How far (pixels) a followed line may move from one frame to the next, and how closely
#: (normalised correlation of grey levels) its pixels must match where it is found again.
FOLLOW_STEP = 24
FOLLOW_MATCH = 0.7


def followed_places(frames: Sequence[np.ndarray], index: int, line: TextRegion,
                    examined: Sequence[int]) -> list[TextRegion]:
    """Where ``line``, found in frame ``index``, moved to in the frames up to the examined ones
    before and after it (the line itself not included).

    Frame by frame, its pixels are looked for within ``FOLLOW_STEP`` of where they were last;
    the search ends where they no longer match (the text went, or the scene changed). A caption
    that moves between two examined frames is so filled along its way, at the cost of a
    template match per frame rather than a detection; a line that stays put adds nothing.
    """
    position = examined.index(index)
    before = examined[position - 1] if position > 0 else -1
    after = examined[position + 1] if position + 1 < len(examined) else len(frames)
    places: list[TextRegion] = []
    for stop, step in ((before, -1), (after, 1)):
        x0, y0, x1, y1 = line.bounds()
        template = _grey(frames[index])[y0:y1, x0:x1]
        shift = np.zeros(2, np.float32)
        last = shift.copy()
        if template.size == 0 or float(template.std()) < 1.0:
            continue
        height, width = frames[index].shape[:2]
        for other in range(index + step, stop, step):
            wx0, wy0 = max(0, x0 - FOLLOW_STEP), max(0, y0 - FOLLOW_STEP)
            wx1, wy1 = min(width, x1 + FOLLOW_STEP), min(height, y1 + FOLLOW_STEP)
            window = _grey(frames[other][wy0:wy1, wx0:wx1])
            if window.shape[0] < template.shape[0] or window.shape[1] < template.shape[1]:
                break
            _, score, _, (mx, my) = cv2.minMaxLoc(cv2.matchTemplate(window, template, cv2.TM_CCOEFF_NORMED))
            if not score >= FOLLOW_MATCH:
                break
            template = window[my:my + template.shape[0], mx:mx + template.shape[1]]
            dx, dy = wx0 + mx - x0, wy0 + my - y0
            x0, y0, x1, y1 = x0 + dx, y0 + dy, x1 + dx, y1 + dy
            shift += (dx, dy)
            if np.abs(shift - last).max() >= max(2.0, 0.25 * (y1 - y0)):
                places.append(TextRegion(line.corners + shift, line.score))
                last = shift.copy()
    return places


def _grey(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def neighbourhoods(polygons: Sequence[np.ndarray], shape: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """Boxes ``(x0, y0, x1, y1)`` around the polygons with their context; overlapping ones merged."""
    height, width = shape
    boxes = []
    for polygon in polygons:
        (_, _), (w, h), _ = cv2.minAreaRect(polygon.astype(np.float32))
        grow = int(np.ceil(CONTEXT * min(w, h))) + CONTEXT_PIXELS
        x, y, bw, bh = cv2.boundingRect(np.round(polygon).astype(np.int32))
        boxes.append((max(0, x - grow), max(0, y - grow), min(width, x + bw + grow), min(height, y + bh + grow)))
    merged: list[tuple[int, int, int, int]] = []
    while boxes:
        box = boxes.pop()
        overlapping = [other for other in boxes + merged if _overlap(box, other)]
        if not overlapping:
            merged.append(box)
            continue
        boxes = [other for other in boxes if other not in overlapping]
        merged = [other for other in merged if other not in overlapping]
        boxes.append((min(b[0] for b in [box, *overlapping]), min(b[1] for b in [box, *overlapping]),
                      max(b[2] for b in [box, *overlapping]), max(b[3] for b in [box, *overlapping])))
    return sorted(merged)


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def without_fills(frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``frame`` with the ``mask`` pixels painted from their surroundings (for verification only)."""
    return cv2.inpaint(frame, mask.astype(np.uint8), 3, cv2.INPAINT_TELEA)


def _filled(frame: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    out = frame.copy()
    out[mask] = colour
    return out


def outlined(rgb: np.ndarray, polygons: Sequence[np.ndarray],
             colour: tuple[int, int, int] = (255, 0, 255)) -> np.ndarray:
    """``rgb`` with the outline of every filled polygon drawn on it (for previews)."""
    out = np.ascontiguousarray(rgb.copy())
    cv2.polylines(out, [np.round(p).astype(np.int32) for p in polygons], True, colour, 2)
    return out
