"""What a text line says: the PP-OCRv4 recognition network of the same wheel as the detector.

Used where the words matter, not only where they are: the allow-list (text a profile may leave in
place) and the audit of outputs. The network reads one line at a time from a crop straightened
along the line's rotated rectangle and reports its confidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import cv2
import numpy as np

from gateway.text.detector import MODEL_PACKAGE, TextRegion

RECOGNITION_MODEL = "models/ch_PP-OCRv4_rec_infer.onnx"
#: The recognition network's input: 3 channels, 48 pixels high, at least 320 wide.
LINE_SHAPE = (3, 48, 320)


@dataclass(frozen=True)
class ReadLine:
    """The text the recogniser read in one region, and how sure it is (0..1)."""

    region: TextRegion
    text: str
    confidence: float


class TextReader:
    """Reads the text of detected lines in ``H x W x 3`` ``uint8`` RGB images."""

    def __init__(self, threads: int = 1) -> None:
        from rapidocr_onnxruntime.ch_ppocr_rec import TextRecognizer

        model = resources.files(MODEL_PACKAGE).joinpath(RECOGNITION_MODEL)
        with resources.as_file(model) as path:
            self._recognizer = TextRecognizer({
                "model_path": str(path), "rec_img_shape": list(LINE_SHAPE), "rec_batch_num": 6,
                "intra_op_num_threads": threads, "inter_op_num_threads": 1,
                "use_cuda": False, "use_dml": False,
            })

    def read(self, rgb: np.ndarray, regions: list[TextRegion]) -> list[ReadLine]:
        """The text of every region, in the order given."""
        if not regions:
            return []
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        results, _ = self._recognizer([_straightened(bgr, region.corners) for region in regions])
        return [ReadLine(region, str(text), float(confidence))
                for region, (text, confidence) in zip(regions, results, strict=True)]


def _straightened(image: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """The crop of a rotated rectangle, turned so that its long side is horizontal."""
    ordered = _clockwise_from_top_left(corners.astype(np.float32))
    width = max(int(np.linalg.norm(ordered[0] - ordered[1])), int(np.linalg.norm(ordered[2] - ordered[3])), 1)
    height = max(int(np.linalg.norm(ordered[0] - ordered[3])), int(np.linalg.norm(ordered[1] - ordered[2])), 1)
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)
    crop = cv2.warpPerspective(image, cv2.getPerspectiveTransform(ordered, target), (width, height),
                               borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC)
    return np.rot90(crop) if height >= 1.5 * width else crop


def _clockwise_from_top_left(corners: np.ndarray) -> np.ndarray:
    """Corners ordered top-left, top-right, bottom-right, bottom-left."""
    by_x = corners[np.argsort(corners[:, 0])]
    left, right = by_x[:2], by_x[2:]
    top_left, bottom_left = left[np.argsort(left[:, 1])]
    top_right, bottom_right = right[np.argsort(right[:, 1])]
    return np.array([top_left, top_right, bottom_right, bottom_left], np.float32)
