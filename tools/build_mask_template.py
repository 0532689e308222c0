"""Build the identity-free template face, ``gateway/mask/template.npz``.

Run as ``python tools/build_mask_template.py FACES_DIR [-o gateway/mask/template.npz]`` where
FACES_DIR has one folder of photos per person. Build it from a tuning set of people the privacy
audit does not report on, so that the audit's figures speak for unseen faces: the shipped file
comes from ``faces-tune`` (300 people, none of them in the audit's ``faces-dev``) and records
the set's name with its photo and people counts (``source``). Each photo is normalised, the
photos are aligned to their running mean (generalised Procrustes, rotation only: scale is the
eyes'), averaged per person so that every person weighs the same, then averaged over people and
mirrored to make the template left-right symmetric.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from gateway.mask.geometry import eye_centres, eye_frame, normalise
from gateway.mask.landmarks import LandmarkDetector
from gateway.mask.settings import MaskSettings
from gateway.mask.template import PACKAGED, Template

PROCRUSTES_ROUNDS = 4
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png"}
PACKAGE_DATA = Path(__file__).resolve().parents[1] / "gateway" / "mask" / PACKAGED


def upright(shape: np.ndarray) -> np.ndarray:
    """``shape`` rotated so that the eyes lie on +x (subject's right to left) and the chin on +y."""
    right, left = eye_centres(shape)
    origin, _ = eye_frame(shape)
    x = (left - right) / np.linalg.norm(left - right)
    down = shape[152] - origin  # 152: the chin
    y = down - x * (down @ x)
    y /= np.linalg.norm(y)
    frame = np.stack([x, y, np.cross(x, y)])
    return (shape - origin) @ frame.T


def mirror_map(shape: np.ndarray) -> np.ndarray:
    """For each landmark, the index of its left-right counterpart on an upright, near-symmetric face.

    Pairs are matched greedily, closest first, so that the map is its own inverse even where
    two landmarks lie close together (the mouth corners).
    """
    flipped = shape * np.array([-1.0, 1.0, 1.0])
    distances = np.linalg.norm(shape[:, None, :] - flipped[None, :, :], axis=2)
    counterpart = np.full(len(shape), -1)
    for flat in np.argsort(distances, axis=None, kind="stable"):
        i, j = divmod(int(flat), len(shape))
        if counterpart[i] < 0 and counterpart[j] < 0:
            counterpart[i], counterpart[j] = j, i
            if (counterpart >= 0).all():
                break
    return counterpart


def symmetric(shape: np.ndarray) -> np.ndarray:
    """The mean of ``shape`` and its mirror image (``shape`` upright)."""
    counterpart = mirror_map(shape)
    return (shape + shape[counterpart] * np.array([-1.0, 1.0, 1.0])) / 2.0


def build_template(faces: Path) -> Template:
    """Compute the template from ``faces`` (one folder of photos per person)."""
    detector = LandmarkDetector(MaskSettings(max_faces=1))
    shapes: dict[str, list[np.ndarray]] = {}
    for person in sorted(p for p in faces.iterdir() if p.is_dir()):
        for photo in sorted(person.iterdir()):
            if photo.suffix.lower() not in PHOTO_SUFFIXES:
                continue
            rgb = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)
            found = detector.detect(rgb)
            if found:
                origin, scale = eye_frame(found[0].points)
                shapes.setdefault(person.name, []).append((found[0].points - origin) / scale)
    detector.close()
    every = [shape for person in shapes.values() for shape in person]
    mean = upright(every[0])
    for _ in range(PROCRUSTES_ROUNDS):
        aligned = {name: [normalise(s, mean) for s in group] for name, group in shapes.items()}
        per_person = [np.mean(group, axis=0) for group in aligned.values()]
        mean = upright(np.mean(per_person, axis=0))
    source = f"{faces.name}: {len(every)} photos of {len(shapes)} people"
    return Template(symmetric(mean), photos=len(every), people=len(shapes), source=source)


def main() -> None:
    """Command line of the template build (see the module docstring)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("faces", type=Path, help="folder with one sub-folder of photos per person")
    parser.add_argument("-o", "--output", type=Path, default=PACKAGE_DATA)
    arguments = parser.parse_args()
    template = build_template(arguments.faces)
    np.savez_compressed(
        arguments.output,
        vertices=template.vertices.astype(np.float32),
        photos=template.photos,
        people=template.people,
        source=template.source,
    )
    print(f"{arguments.output}: {template.source}")


if __name__ == "__main__":
    main()
