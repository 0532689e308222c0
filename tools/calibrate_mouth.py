"""Measure how Face Mesh reads back a drawn mouth's aperture: ``APERTURE_GAIN`` and ``APERTURE_OFFSET``.

Run as ``python tools/calibrate_mouth.py FACES_DIR [--every N]`` on a tuning set of people the
privacy audit does not report on (the shipped constants in ``gateway/mask/mouth.py`` come from
``faces-tune``). It masks the photos (one in ``--every``) with the current constants, finds the
landmarks of the original and of the mask as an analysis of the whole image would, and fits the
aperture read on the mask as a straight line of the aperture drawn. Photos whose mouth is drawn
closed are left out of the fit: their drawn aperture is clipped at zero. It prints the fit and the
mean absolute difference between the apertures read on the original and on the mask.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import mediapipe as mp
import numpy as np

from gateway.mask.masker import FaceMasker
from gateway.mask.mouth import mouth_state
from gateway.mask.settings import MaskSettings
from tools.calibrate_eyes import downstream_landmarks


def image_aperture(landmarks: np.ndarray) -> float:
    """Aperture of landmarks in image pixels: inner-lip gap over mouth width (any roll)."""
    upper, lower, right, left = landmarks[[13, 14, 61, 291], :2]
    return float(np.linalg.norm(lower - upper) / np.linalg.norm(left - right))


def measure(faces: Path, every: int) -> np.ndarray:
    """Rows of (aperture read on the original, aperture drawn, aperture read on the mask)."""
    photos = sorted(p for p in faces.glob("*/*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})[::every]
    mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True)
    rows = []
    with FaceMasker(MaskSettings(max_faces=1)) as masker:
        for photo in photos:
            rgb = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)
            found = masker.detect(rgb)
            original = downstream_landmarks(mesh, rgb)
            if not found or original is None:
                continue
            masked = downstream_landmarks(mesh, masker.render(rgb, found[:1]))
            if masked is not None:
                drawn = mouth_state(found[0].points, masker.template.vertices).aperture
                rows.append((image_aperture(original), drawn, image_aperture(masked)))
    mesh.close()
    return np.array(rows)


def main() -> None:
    """Command line of the measurement (see the module docstring)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("faces", type=Path, help="folder with one sub-folder of photos per person")
    parser.add_argument("--every", type=int, default=1, help="measure one photo in this many")
    arguments = parser.parse_args()
    rows = measure(arguments.faces, arguments.every)
    drawn_open = rows[:, 1] > 0
    gain, offset = np.polyfit(rows[drawn_open, 1], rows[drawn_open, 2], 1)
    error = np.abs(rows[:, 2] - rows[:, 0]).mean()
    print(f"{arguments.faces.name}: {len(rows)} photos, {int(drawn_open.sum())} drawn open")
    print(f"read back = {gain:.3f} x drawn + {offset:.3f}; mean |read on mask - read on original| = {error:.4f}")


if __name__ == "__main__":
    main()
