"""Where text is in an image: the PP-OCRv4 detection network, run offline with OpenVINO.

The network (a DB text detector) ships as an ONNX file inside the ``rapidocr-onnxruntime`` wheel,
so nothing is downloaded at run time; OpenVINO's CPU plugin runs it in about 0.6 times
onnxruntime's time on one thread, with the same output (docs/burned-in-text.md). It gives a text
probability for every pixel of a resized image; pixels above a threshold form regions, and each
region's rotated rectangle, grown by the DB "unclip" distance, is one text line. Small or thin
text survives only if the image is not shrunk too much: ``pixel_budget`` is the trade-off
between speed and the smallest text found.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import cv2
import numpy as np

MODEL_PACKAGE = "rapidocr_onnxruntime"
DETECTION_MODEL = "models/ch_PP-OCRv4_det_infer.onnx"
#: The network's input sides must be multiples of this.
STRIDE = 32
#: The network is given inputs whose sides are multiples of this, the image padded with grey (the
#: network's zero) on the right and bottom: each new input shape costs the runtime about as much
#: again as a run, once, and so a worker meets few shapes rather than one per image size.
SHAPE_STEP = 64


@dataclass(frozen=True, eq=False)
class TextRegion:
    """One text line: the four corners of its rotated rectangle (x, y) in image pixels."""

    corners: np.ndarray
    score: float

    def bounds(self) -> tuple[int, int, int, int]:
        """The axis-aligned box ``(x0, y0, x1, y1)`` around the corners (exclusive end)."""
        x0, y0 = np.floor(self.corners.min(axis=0)).astype(int)
        x1, y1 = np.ceil(self.corners.max(axis=0)).astype(int)
        return int(x0), int(y0), int(x1) + 1, int(y1) + 1


@dataclass(frozen=True)
class DetectorSettings:
    """How the detector reads the network's probability map.

    ``pixel_budget`` caps the pixels the network sees of a larger image (it is shrunk to it); a
    smaller one is enlarged by ``enlarge``, and at least until its short side is ``min_side``:
    small images (video grabs, microscope captures) carry overlays in 7-9 px fonts, which the
    network finds only once enlarged (see docs/burned-in-text.md). ``threshold`` makes a pixel text,
    ``box_threshold`` keeps a region whose mean probability reaches it, ``unclip`` grows each
    region as DB training shrank it (a little more than PaddleOCR's 1.6: a tilted line whose
    probability is weak at one end gets a rectangle whose angle is off, and the extra growth
    covers the end it would leave out). A region less than ``glyph_aspect`` times as long as high
    holds a glyph or two at most, and is kept only if at least ``glyph_sharpness`` of its edges
    are sharp: the network takes a smoothly shaded blob on a flat background (a rendered face on
    the mask's backdrop, once the image is enlarged) for one large character, whereas printed
    glyphs have sharp edges and little shading. An enlarged image is looked at a second time,
    ``second_look`` times larger again, when that is still within ``pixel_budget`` (small photos,
    about 400 px or less): 8-9 px text in them is found at about 2x and missed at 1.4x, and the
    cost stays below that of one image at the budget. The second look is for small text, and keeps
    only lines at most ``second_look_height`` image pixels high: larger text is found by the first,
    and what only the larger view makes of a rendered face on the mask's backdrop is no text. An
    image the first look already enlarges ``second_look_below`` times or more (a short side of
    160 px or less, brought to ``min_side``) shows its small text at that size already and gets no
    second look: a tags-only relay of small images would pay for it on every instance.
    """

    pixel_budget: int = 600_000
    min_side: int = 320
    enlarge: float = 1.4
    threshold: float = 0.3
    box_threshold: float = 0.5
    unclip: float = 2.0
    min_size: float = 3.0
    glyph_aspect: float = 1.5
    glyph_sharpness: float = 0.45
    second_look: float = 1.4
    second_look_height: float = 24.0
    second_look_below: float = 2.0
    threads: int = 1


class TextDetector:
    """Finds text lines in ``H x W x 3`` ``uint8`` RGB images.

    One instance holds one compiled network and its inference request; it is not thread-safe
    (make one per worker). The network takes any input size; each new size costs a little once
    (the plugin caches what it prepared per shape).
    """

    def __init__(self, settings: DetectorSettings | None = None) -> None:
        import openvino

        self.settings = settings or DetectorSettings()
        core = openvino.Core()
        with resources.as_file(resources.files(MODEL_PACKAGE).joinpath(DETECTION_MODEL)) as path:
            model = core.read_model(str(path))
        compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": self.settings.threads,
                                                     "PERFORMANCE_HINT": "LATENCY"})
        self._request = compiled.create_infer_request()

    def scale(self, height: int, width: int) -> float:
        """How much an image of this size is resized for the network (within ``pixel_budget``)."""
        if height * width > self.settings.pixel_budget:
            return float((self.settings.pixel_budget / (height * width)) ** 0.5)
        return max(self.settings.enlarge, self.settings.min_side / min(height, width))

    def network_size(self, height: int, width: int, scale: float | None = None) -> tuple[int, int]:
        """The ``(height, width)`` the network sees for an image of this size (at ``scale``)."""
        scale = self.scale(height, width) if scale is None else scale
        return (max(STRIDE, round(height * scale / STRIDE) * STRIDE),
                max(STRIDE, round(width * scale / STRIDE) * STRIDE))

    def probability(self, rgb: np.ndarray, scale: float | None = None) -> np.ndarray:
        """The network's text probability per pixel, at :meth:`network_size`."""
        height, width = self.network_size(rgb.shape[0], rgb.shape[1], scale)
        resized = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA
                             if height < rgb.shape[0] else cv2.INTER_LINEAR)
        tensor = np.zeros((1, 3, -(-height // SHAPE_STEP) * SHAPE_STEP, -(-width // SHAPE_STEP) * SHAPE_STEP),
                          np.float32)
        # The network was trained on BGR images scaled to -1..1, channels first: one pass.
        tensor[:, :, :height, :width] = cv2.dnn.blobFromImage(resized, 1 / 127.5, mean=(127.5, 127.5, 127.5),
                                                              swapRB=True)
        # A copy: the request reuses its output buffer on the next run.
        return np.array(self._request.infer({0: tensor})[0][0, 0, :height, :width])

    def second_scale(self, height: int, width: int) -> float | None:
        """The scale of the second look at an image of this size, if it gets one."""
        first = self.scale(height, width)
        second = first * self.settings.second_look
        fits = height * width * second * second <= self.settings.pixel_budget
        wanted = 1.0 <= first < self.settings.second_look_below and self.settings.second_look > 1.0
        return second if wanted and fits else None

    def detect(self, rgb: np.ndarray, scale: float | None = None) -> list[TextRegion]:
        """Every text line in ``rgb``, as rotated rectangles in its pixels.

        ``scale`` overrides :meth:`scale`, and there is no second look: a crop is examined as it
        was in its whole image. A line of the second look that lies inside one of the first adds
        nothing, and is not counted twice.
        """
        regions = self._regions(rgb, scale)
        second = None if scale is not None else self.second_scale(rgb.shape[0], rgb.shape[1])
        if second is None:
            return regions
        return regions + [region for region in self._regions(rgb, second)
                          if min(cv2.minAreaRect(region.corners)[1]) <= self.settings.second_look_height
                          and not any(_contains(other, region.corners) for other in regions)]

    def _regions(self, rgb: np.ndarray, scale: float | None) -> list[TextRegion]:
        """The text lines of one look at ``rgb`` (at ``scale``, or :meth:`scale`)."""
        probability = self.probability(rgb, scale)
        back = np.array([rgb.shape[1] / probability.shape[1], rgb.shape[0] / probability.shape[0]])
        bitmap = cv2.dilate((probability > self.settings.threshold).astype(np.uint8), np.ones((2, 2), np.uint8))
        contours, _ = cv2.findContours(bitmap, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        regions = []
        for contour in contours:
            score = _mean_inside(probability, contour)
            if score < self.settings.box_threshold:
                continue
            rect = _unclipped(cv2.minAreaRect(contour), self.settings.unclip)
            if min(rect[1]) < self.settings.min_size:
                continue
            corners = cv2.boxPoints(rect) * back
            corners[:, 0] = corners[:, 0].clip(0, rgb.shape[1] - 1)
            corners[:, 1] = corners[:, 1].clip(0, rgb.shape[0] - 1)
            region = TextRegion(corners.astype(np.float32), score)
            if max(rect[1]) < self.settings.glyph_aspect * min(rect[1]) and \
                    sharpness(rgb, region) < self.settings.glyph_sharpness:
                continue
            regions.append(region)
        return regions


#: Sobel gradient magnitudes (grey levels, 3 x 3 kernel) of an edge, and of a sharp (stroke) edge.
EDGE = 20.0
SHARP_EDGE = 100.0


def sharpness(rgb: np.ndarray, region: TextRegion) -> float:
    """The share of the edge pixels in ``region``'s bounding box that are sharp."""
    x0, y0, x1, y1 = region.bounds()
    grey = cv2.cvtColor(rgb[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY).astype(np.float32)
    magnitude = cv2.magnitude(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    return float((magnitude > SHARP_EDGE).sum() / max(int((magnitude > EDGE).sum()), 1))


def _contains(region: TextRegion, points: np.ndarray) -> bool:
    """Whether all ``points`` (x, y rows) lie in ``region``'s rectangle."""
    return all(cv2.pointPolygonTest(region.corners, (float(x), float(y)), False) >= 0 for x, y in points)


def _mean_inside(probability: np.ndarray, contour: np.ndarray) -> float:
    """Mean probability inside ``contour`` (DB's box score)."""
    x, y, w, h = cv2.boundingRect(contour)
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [contour - np.array([x, y])], (1,))
    return float(cv2.mean(probability[y:y + h, x:x + w], mask)[0])


def _unclipped(rect: tuple, ratio: float) -> tuple:
    """Grow a rotated rectangle by DB's unclip distance (area x ratio / perimeter) on every side."""
    (cx, cy), (w, h), angle = rect
    distance = w * h * ratio / max(2 * (w + h), 1e-6)
    return (cx, cy), (w + 2 * distance, h + 2 * distance), angle
