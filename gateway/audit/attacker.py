"""The re-identification attacker: dlib's ResNet face embeddings, used offline.

dlib's 128-d ResNet embedding (99.38% on LFW) stands in for a face-recognition system an
attacker could run on released photos. Its model files ship in the ``face_recognition_models``
package, which we never import (its ``__init__`` needs ``pkg_resources``, gone from recent
setuptools): the files are found through the package's import spec and loaded by path.

Two attacker strengths are modelled:

* detector-based: the attacker finds the face on the released image itself (HOG detector and
  5-point shape predictor); an image on which no face is found cannot be matched;
* strong: the attacker knows where the face is, i.e. reuses the box and the 5 landmarks found
  on the original photo to align the released image before embedding it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gateway.errors import AuditError

MODELS_PACKAGE = "face_recognition_models"
SHAPE_PREDICTOR_FILE = "shape_predictor_5_face_landmarks.dat"
EMBEDDING_FILE = "dlib_face_recognition_resnet_model_v1.dat"
#: Upsampling passes of the HOG detector: one finds faces down to about 40 px wide.
DETECTOR_UPSAMPLE = 1


def model_directory() -> Path:
    """Folder holding the dlib ``.dat`` model files of the installed ``face_recognition_models``."""
    spec = importlib.util.find_spec(MODELS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise AuditError(
            f"{MODELS_PACKAGE} is not installed: install the audit extra (pip install 'dmask-gateway[audit]')"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def import_dlib() -> Any:
    """The ``dlib`` module, or an AuditError that says which extra to install."""
    try:
        import dlib
    except ImportError as exc:
        raise AuditError(
            "dlib is not installed: install the audit extra (pip install 'dmask-gateway[audit]')"
        ) from exc
    return dlib


@dataclass(frozen=True)
class FaceObservation:
    """Where a face is and what the attacker learns from it.

    Attributes
    ----------
    box:
        Face box ``(left, top, right, bottom)`` in pixels, as the detector returned it.
    points:
        The 5 landmarks in pixels, shape ``(5, 2)``: outer and inner corner of the left eye,
        outer and inner corner of the right eye, base of the nose (subject's left/right).
    shape:
        The same landmarks as dlib's ``full_object_detection``, the input of alignment.
    embedding:
        The 128-d ResNet embedding of the aligned face.
    """

    box: tuple[int, int, int, int]
    points: np.ndarray
    shape: Any
    embedding: np.ndarray

    @property
    def right_eye(self) -> np.ndarray:
        """Centre of the subject's right eye (the one on the left of the photo)."""
        return self.points[2:4].mean(axis=0)

    @property
    def left_eye(self) -> np.ndarray:
        """Centre of the subject's left eye (the one on the right of the photo)."""
        return self.points[0:2].mean(axis=0)


class Attacker:
    """dlib HOG detector, 5-point shape predictor and ResNet embedding, loaded once.

    Parameters
    ----------
    models:
        Folder with the ``.dat`` files; defaults to the installed ``face_recognition_models``.
    """

    def __init__(self, models: Path | None = None) -> None:
        dlib = import_dlib()
        folder = models or model_directory()
        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._shape_predictor = dlib.shape_predictor(str(folder / SHAPE_PREDICTOR_FILE))
        self._embedder = dlib.face_recognition_model_v1(str(folder / EMBEDDING_FILE))

    def observe(self, rgb: np.ndarray) -> FaceObservation | None:
        """Detect the largest face, locate its 5 landmarks and embed it; None when no face is found."""
        image = np.ascontiguousarray(rgb)
        boxes = self._detector(image, DETECTOR_UPSAMPLE)
        if len(boxes) == 0:
            return None
        box = max(boxes, key=lambda b: b.area())
        shape = self._shape_predictor(image, box)
        return FaceObservation(
            box=(box.left(), box.top(), box.right(), box.bottom()),
            points=np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64),
            shape=shape,
            embedding=self._embed(image, shape),
        )

    def embed_at(self, rgb: np.ndarray, known: FaceObservation) -> np.ndarray:
        """Embed ``rgb`` aligned with landmarks found elsewhere (the strong attacker)."""
        return self._embed(np.ascontiguousarray(rgb), known.shape)

    def _embed(self, image: np.ndarray, shape: Any) -> np.ndarray:
        return np.array(self._embedder.compute_face_descriptor(image, shape), dtype=np.float64)
