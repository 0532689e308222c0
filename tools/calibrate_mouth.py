"""Fit the mouth's drawing on a tuning set: ``APERTURE_GAIN``, ``APERTURE_OFFSET`` and ``DRAWN_CLOSED_BELOW``.

Run as ``python tools/calibrate_mouth.py FACES_DIR [--every N] [--closed FILE --parted FILE]`` on a
tuning set of people the privacy audit does not report on (the shipped constants in
``gateway/mask/mouth.py`` come from ``faces-tune``). It masks the photos (one in ``--every``) with
the current constants and finds the landmarks of the original and of the mask as an analysis of
the whole image would.

The read-back: over the photos whose mouth is drawn open, it fits the aperture read on the mask as
a straight line of the aperture drawn, and the aperture read on the original as a straight line of
the one the masker measures (its own landmarks read a little narrower); drawing ``(measured -
OFFSET) / GAIN`` then reads back as the original on average. It prints both fits, the constants
they give, and the mean absolute difference between the apertures read on the original and on
the mask with the current ones (the audit's mouth aperture difference).

The cut: given photos labelled by eye as closed (``--closed``) and as parted (``--parted``), e.g.
``tests/data/tuning-closed-mouths.txt`` and ``tests/data/tuning-parted-mouths.txt``, it counts for
each candidate cut the labelled closed mouths the masker measures at or over it (drawn parted) and
the labelled parted ones under it (drawn closed), and how the current constants' masks of both
read.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import mediapipe as mp
import numpy as np

from gateway.audit.mouths import mouth_class, read_labels
from gateway.mask.masker import FaceMasker
from gateway.mask.mouth import measured_aperture, mouth_state
from gateway.mask.settings import MaskSettings
from tools.calibrate_eyes import downstream_landmarks

#: Candidate cuts between drawn closed and drawn parted, on the aperture the masker measures.
CUTS = np.round(np.arange(0.05, 0.1001, 0.005), 3)


def image_aperture(landmarks: np.ndarray) -> float:
    """Aperture of landmarks in image pixels: inner-lip gap over mouth width (any roll)."""
    upper, lower, right, left = landmarks[[13, 14, 61, 291], :2]
    return float(np.linalg.norm(lower - upper) / np.linalg.norm(left - right))


def measure(faces: Path, every: int) -> tuple[list[str], np.ndarray]:
    """Photo keys and rows of (aperture read on the original, aperture the masker measures,
    aperture drawn, aperture read on the mask)."""
    photos = sorted(p for p in faces.glob("*/*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})[::every]
    mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True)
    keys, rows = [], []
    with FaceMasker(MaskSettings(max_faces=1)) as masker:
        template = masker.template.vertices
        for photo in photos:
            rgb = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)
            found = masker.detect(rgb)
            original = downstream_landmarks(mesh, rgb)
            if not found or original is None:
                continue
            masked = downstream_landmarks(mesh, masker.render(rgb, found[:1]))
            if masked is not None:
                points = found[0].points
                measured, drawn = measured_aperture(points, template), mouth_state(points, template).aperture
                keys.append(f"{photo.parent.name}/{photo.name}")
                rows.append((image_aperture(original), measured, drawn, image_aperture(masked)))
    mesh.close()
    return keys, np.array(rows)


def report_read_back(rows: np.ndarray) -> None:
    """Print the read-back fits and the constants they give (see the module docstring)."""
    original, measured, drawn, read = rows.T
    drawn_open = drawn > 0
    gain, offset = np.polyfit(drawn[drawn_open], read[drawn_open], 1)
    scale, shift = np.polyfit(measured[drawn_open], original[drawn_open], 1)
    print(f"{len(rows)} photos, {int(drawn_open.sum())} drawn open")
    print(f"read on the mask = {gain:.3f} x drawn + {offset:.4f}; "
          f"read on the original = {scale:.3f} x measured + {shift:.4f}")
    print(f"APERTURE_GAIN = {gain / scale:.3f}, APERTURE_OFFSET = {(offset - shift) / scale:.4f}")
    print(f"mean |read on mask - read on original| = {np.abs(read - original).mean():.4f}")


def report_cuts(keys: list[str], rows: np.ndarray, closed: frozenset[str], parted: frozenset[str]) -> None:
    """Print, per candidate cut, the labelled mouths drawn in the wrong state, and how the masks read."""
    labelled_closed = np.array([key in closed for key in keys])
    labelled_parted = np.array([key in parted for key in keys])
    measured, read = rows[:, 1], rows[:, 3]
    print(f"labelled: {int(labelled_closed.sum())} closed, {int(labelled_parted.sum())} parted")
    for cut in CUTS:
        drawn_parted = int((labelled_closed & (measured >= cut)).sum())
        drawn_closed = int((labelled_parted & (measured < cut)).sum())
        print(f"cut {cut:.3f}: closed drawn parted {drawn_parted}, parted drawn closed {drawn_closed}")
    classes = np.array([mouth_class(value) for value in read])
    counts = " / ".join(str(int((classes[labelled_closed] == name).sum())) for name in ("closed", "parted", "open"))
    print(f"current constants: labelled closed read closed / parted / open {counts}; "
          f"labelled parted read closed {int((classes[labelled_parted] == 'closed').sum())}")


def main() -> None:
    """Command line of the measurement (see the module docstring)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("faces", type=Path, help="folder with one sub-folder of photos per person")
    parser.add_argument("--every", type=int, default=1, help="measure one photo in this many")
    parser.add_argument("--closed", type=Path, help="labels file of the photos whose mouth is closed")
    parser.add_argument("--parted", type=Path, help="labels file of the photos whose lips are apart")
    arguments = parser.parse_args()
    keys, rows = measure(arguments.faces, arguments.every)
    print(f"{arguments.faces.name}:")
    report_read_back(rows)
    if arguments.closed and arguments.parted:
        report_cuts(keys, rows, read_labels(arguments.closed), read_labels(arguments.parted))


if __name__ == "__main__":
    main()
