"""Measure the eye calibration, ``gateway/mask/eye_calibration.npz``.

Run as ``python tools/calibrate_eyes.py FACES_DIR [--rounds 2] [-o gateway/mask/eye_calibration.npz]``
on a tuning set of people the privacy audit does not report on: the shipped file comes from
``faces-tune`` and records the set's name and counts (``source``). It renders
masks of the photos in FACES_DIR with the current offsets, measures the landmarks found on them,
and updates the offsets, a few rounds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import mediapipe as mp
import numpy as np

from gateway.mask.calibration import CALIBRATED, PACKAGED, EyeCalibration, displacement
from gateway.mask.masker import FaceMasker
from gateway.mask.settings import MaskSettings

PACKAGE_DATA = Path(__file__).resolve().parents[1] / "gateway" / "mask" / PACKAGED


def downstream_landmarks(mesh: object, rgb: np.ndarray) -> np.ndarray | None:
    """Landmarks as an analysis of the released image would find them: Face Mesh on the whole image."""
    result = mesh.process(np.ascontiguousarray(rgb))  # type: ignore[attr-defined]
    if not result.multi_face_landmarks:
        return None
    height, width = rgb.shape[:2]
    found = result.multi_face_landmarks[0].landmark
    return np.array([(p.x * width, p.y * height, p.z * width) for p in found], dtype=np.float64)


def calibrate(faces: Path, rounds: int) -> EyeCalibration:
    """Measure the calibration on the photos in ``faces`` (one folder per person).

    The displacement is measured between the landmarks of the original and of the mask as
    Face Mesh finds them on each whole image, which is what a downstream analysis does.
    """
    photos = sorted(p for p in faces.glob("*/*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    calibration = EyeCalibration(np.zeros((len(CALIBRATED), 2)), 0, faces.name)
    mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True)
    with FaceMasker(MaskSettings(max_faces=1)) as masker:
        found = []
        for photo in photos:
            rgb = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)
            faces_found = masker.detect(rgb)
            original = downstream_landmarks(mesh, rgb)
            if faces_found and original is not None:
                found.append((rgb, faces_found[:1], original))
        for _ in range(rounds):
            masker.calibration = calibration
            measured = []
            for rgb, face, original in found:
                again = downstream_landmarks(mesh, masker.render(rgb, face))
                if again is not None:
                    measured.append(displacement(original, again))
            people = len({photo.parent.name for photo in photos})
            source = f"{faces.name}: {len(measured)} photos of {people} people"
            calibration = EyeCalibration(calibration.offsets + np.mean(measured, axis=0), len(measured), source)
    mesh.close()
    return calibration


def main() -> None:
    """Command line of the calibration (see the module docstring)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("faces", type=Path, help="folder with one sub-folder of photos per person")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("-o", "--output", type=Path, default=PACKAGE_DATA)
    arguments = parser.parse_args()
    calibration = calibrate(arguments.faces, arguments.rounds)
    np.savez_compressed(
        arguments.output,
        offsets=calibration.offsets.astype(np.float32),
        photos=calibration.photos,
        source=calibration.source,
    )
    print(f"{arguments.output}: measured on {calibration.source}")


if __name__ == "__main__":
    main()
