"""``dmask audit text``: find burned-in text of an input that is still legible in its output.

Two engines look at every output: the text detector of the pipeline (``gateway.text``) and an
independent one, Tesseract (Debian ``tesseract-ocr``, run as a program), so that a blind spot of
the detector is not also the audit's. The input says what there was to remove: a text line the
detector finds in the output where it found one in the input is a finding, and so is a word of
three or more letters or digits that Tesseract reads in both the input and the output. Text the
mask or the redaction drew (flat fills, a rendered face) is therefore never reported, and the
detector looks at the output with its flat areas painted over from their surroundings (filled
boxes side by side look like a line of text to it).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from gateway.errors import AuditError
from gateway.text.detector import TextDetector, TextRegion
from gateway.text.redactor import without_fills
from gateway.text.regions import fill_mask

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
#: Words shorter than this are not compared (Tesseract reads short junk in textures).
MIN_WORD = 3
#: Frames of a sequence that are compared: first, middle, last.
SEQUENCE_SAMPLES = 3


@dataclass(frozen=True)
class TextFinding:
    """Text still legible in an output: which engine, which frame, what (a word or a box)."""

    engine: str
    frame: int
    what: str


def read_frames(path: Path) -> list[np.ndarray]:
    """A photo, or up to three frames (first, middle, last) of a DICOM instance, as RGB."""
    if path.suffix.lower() in IMAGE_SUFFIXES:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise AuditError(f"{path.name} is not a readable image")
        return [cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)]
    from gateway.codec.pixels import decode_frames
    from gateway.dicom.read import read_instance

    frames = list(decode_frames(read_instance(path)))
    chosen = sorted({0, len(frames) // 2, len(frames) - 1})[:SEQUENCE_SAMPLES]
    return [frames[index] for index in chosen]


def flat_areas(rgb: np.ndarray) -> np.ndarray:
    """Pixels within 3 of one whose 5 x 5 neighbourhood has one colour (fills, edges included)."""
    kernel = np.ones((5, 5), np.uint8)
    spread = cv2.dilate(rgb, kernel).astype(int) - cv2.erode(rgb, kernel).astype(int)
    return cv2.dilate((spread.max(axis=2) == 0).astype(np.uint8), np.ones((7, 7), np.uint8)) > 0


def tesseract_words(rgb: np.ndarray) -> set[str]:
    """The words (letters and digits, upper case) Tesseract reads anywhere in ``rgb``."""
    program = shutil.which("tesseract")
    if program is None:
        raise AuditError("tesseract is not installed (Debian package tesseract-ocr)")
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise AuditError("the image cannot be encoded for tesseract")
    # Sparse text (psm 11): overlays are scattered lines, not a page.
    result = subprocess.run([program, "stdin", "stdout", "--psm", "11"], input=png.tobytes(),
                            capture_output=True, check=False, timeout=120,
                            env={"OMP_THREAD_LIMIT": "1", "PATH": "/usr/bin:/bin"})
    if result.returncode != 0:
        raise AuditError(f"tesseract failed ({result.returncode})")
    text = result.stdout.decode("utf-8", "replace").upper()
    return {word for word in re.findall(r"[A-Z0-9]+", text) if len(word) >= MIN_WORD}


def _overlapping(found: list[TextRegion], reference: list[TextRegion], shape: tuple[int, int]) -> list[TextRegion]:
    """The regions of ``found`` that overlap any region of ``reference``."""
    if not found or not reference:
        return []
    before = fill_mask([region.corners for region in reference], shape)
    return [region for region in found if fill_mask([region.corners], shape)[before].any()]


def audit_text(source: Path, output: Path, detector: TextDetector) -> list[TextFinding]:
    """Text of ``source`` still legible in ``output`` (same frame sizes)."""
    findings = []
    for index, (before, after) in enumerate(zip(read_frames(source), read_frames(output), strict=False)):
        if before.shape != after.shape:
            raise AuditError(f"{output.name}: frame {index} does not have the input's size")
        height, width = after.shape[:2]
        found = detector.detect(without_fills(after, flat_areas(after)))
        for region in _overlapping(found, detector.detect(before), (height, width)):
            x0, y0, x1, y1 = region.bounds()
            findings.append(TextFinding("detector", index, f"text line at x={x0}..{x1}, y={y0}..{y1}"))
        for word in sorted(tesseract_words(after) & tesseract_words(before)):
            findings.append(TextFinding("tesseract", index, word))
    return findings
