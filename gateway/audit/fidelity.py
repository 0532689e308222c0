"""Diagnostic fidelity: does a transformed face still show the eyelids, gaze and mouth of the original?

A face transform is only useful clinically if an ophthalmologist can still read eyelid position,
eyelid shape and gaze from it, and a neurologist the state of the mouth (closed, parted, open)
and the height of each mouth corner (a facial palsy shows as one corner lower). We measure that
the way a downstream analysis would: re-detect the 478 Face Mesh landmarks (mediapipe, with
iris refinement) on the transformed image and compare them with the landmarks of the original.
Every distance is divided by the inter-ocular distance of the original (iris centre to iris
centre) so that figures from photos of different sizes and distances can be averaged.

Landmark indices follow mediapipe's Face Mesh topology and are named from the subject's point of
view: the *right* eye is the one on the left of a non-mirrored frontal photo. The audit keeps its
own copy rather than importing the mask's (``gateway.mask.topology``), so that a change to the
mask cannot move the yardstick it is measured with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: The 16 points of the right eyelid contour (upper and lower lid, corner to corner).
RIGHT_EYELID: tuple[int, ...] = (
    33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246,
)
#: The 16 points of the left eyelid contour (upper and lower lid, corner to corner).
LEFT_EYELID: tuple[int, ...] = (
    263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466,
)
#: Right iris: centre followed by four points on its boundary (needs ``refine_landmarks``).
RIGHT_IRIS: tuple[int, ...] = (468, 469, 470, 471, 472)
#: Left iris: centre followed by four points on its boundary (needs ``refine_landmarks``).
LEFT_IRIS: tuple[int, ...] = (473, 474, 475, 476, 477)
#: Outer and inner corner (canthus) of each eye.
RIGHT_EYE_CORNERS: tuple[int, int] = (33, 133)
LEFT_EYE_CORNERS: tuple[int, int] = (263, 362)
#: Mid upper and mid lower eyelid point of each eye (the aperture's height).
RIGHT_EYE_LID_MIDPOINTS: tuple[int, int] = (159, 145)
LEFT_EYE_LID_MIDPOINTS: tuple[int, int] = (386, 374)
#: Mid upper and mid lower inner-lip point: the mouth's opening.
INNER_LIP_MIDPOINTS: tuple[int, int] = (13, 14)
#: The subject's right and left mouth corner (outer lip contour): the mouth's width and corners.
MOUTH_CORNERS: tuple[int, int] = (61, 291)
#: Number of landmarks Face Mesh returns with iris refinement.
FACE_MESH_LANDMARKS = 478
#: Most faces the landmarker reports on one image.
MAX_FACES = 4


@dataclass(frozen=True)
class Eye:
    """The landmark indices that describe one eye."""

    eyelid: tuple[int, ...]
    iris: tuple[int, ...]
    corners: tuple[int, int]
    lid_midpoints: tuple[int, int]


RIGHT_EYE = Eye(RIGHT_EYELID, RIGHT_IRIS, RIGHT_EYE_CORNERS, RIGHT_EYE_LID_MIDPOINTS)
LEFT_EYE = Eye(LEFT_EYELID, LEFT_IRIS, LEFT_EYE_CORNERS, LEFT_EYE_LID_MIDPOINTS)
EYES: tuple[Eye, Eye] = (RIGHT_EYE, LEFT_EYE)


def iris_centre(landmarks: np.ndarray, eye: Eye) -> np.ndarray:
    """Centre of the iris: the mean of its five points, steadier than the single centre point."""
    return landmarks[list(eye.iris)].mean(axis=0)


def interocular_distance(landmarks: np.ndarray) -> float:
    """Distance between the two iris centres, the unit all fidelity errors are expressed in."""
    return float(np.linalg.norm(iris_centre(landmarks, RIGHT_EYE) - iris_centre(landmarks, LEFT_EYE)))


def aperture_ratio(landmarks: np.ndarray, eye: Eye) -> float:
    """Eyelid opening: lid-to-lid height over corner-to-corner width (ptosis shows here)."""
    upper, lower = landmarks[list(eye.lid_midpoints)]
    outer, inner = landmarks[list(eye.corners)]
    return float(np.linalg.norm(upper - lower) / np.linalg.norm(inner - outer))


def gaze_offset(landmarks: np.ndarray, eye: Eye) -> np.ndarray:
    """Iris centre relative to the eye corners, in eye widths, in the eye's own frame.

    The origin is the midpoint of the corners, the first axis runs from the outer to the inner
    corner and the second is perpendicular to it, so head roll and photo scale cancel out and
    what remains is where the eye looks (strabismus, nystagmus show here).
    """
    outer, inner = landmarks[list(eye.corners)]
    axis = inner - outer
    width = float(np.linalg.norm(axis))
    along = axis / width
    across = np.array([-along[1], along[0]])
    offset = iris_centre(landmarks, eye) - (outer + inner) / 2.0
    return np.array([offset @ along, offset @ across]) / width


def mouth_aperture(landmarks: np.ndarray) -> float:
    """Mouth opening: inner-lip gap (mid upper to mid lower inner lip) over mouth width."""
    upper, lower = landmarks[list(INNER_LIP_MIDPOINTS)]
    right, left = landmarks[list(MOUTH_CORNERS)]
    return float(np.linalg.norm(upper - lower) / np.linalg.norm(left - right))


def corner_asymmetry(landmarks: np.ndarray) -> float:
    """How much lower the subject's right mouth corner is than the left, perpendicular to the
    line through the iris centres, in inter-ocular distances (head roll cancels out)."""
    right_iris, left_iris = iris_centre(landmarks, RIGHT_EYE), iris_centre(landmarks, LEFT_EYE)
    along = (left_iris - right_iris) / np.linalg.norm(left_iris - right_iris)
    down = np.array([-along[1], along[0]])
    right, left = landmarks[list(MOUTH_CORNERS)]
    return float((right - left) @ down / interocular_distance(landmarks))


@dataclass(frozen=True)
class Fidelity:
    """How far the eyes and mouth re-detected on a transformed image are from those of the original.

    Attributes
    ----------
    eyelid_error:
        Mean distance of the 32 eyelid points (16 per eye), in inter-ocular distances.
    iris_error:
        Mean distance of the two iris centres, in inter-ocular distances.
    aperture_difference:
        Mean over both eyes of the absolute difference of the aperture ratios.
    gaze_difference:
        Mean over both eyes of the distance between the gaze offsets, in eye widths.
    mouth_aperture_difference:
        Absolute difference of the mouth apertures (inner-lip gap over mouth width).
    corner_asymmetry_difference:
        Absolute difference of the mouth corners' height asymmetry, in inter-ocular distances.
    """

    eyelid_error: float
    iris_error: float
    aperture_difference: float
    gaze_difference: float
    mouth_aperture_difference: float
    corner_asymmetry_difference: float


def compare_landmarks(original: np.ndarray, transformed: np.ndarray) -> Fidelity:
    """Compare the eye and mouth landmarks of a transformed image with those of its original.

    Parameters
    ----------
    original, transformed:
        Face Mesh landmarks in pixels, shape ``(478, 2)``, of the same image size.

    Returns
    -------
    Fidelity
        Distances normalised by the original's inter-ocular distance.
    """
    if original.shape != (FACE_MESH_LANDMARKS, 2) or transformed.shape != original.shape:
        raise ValueError(f"expected two ({FACE_MESH_LANDMARKS}, 2) landmark arrays")
    unit = interocular_distance(original)
    eyelid = list(RIGHT_EYELID + LEFT_EYELID)
    eyelid_error = np.linalg.norm(transformed[eyelid] - original[eyelid], axis=1).mean() / unit
    iris_error = np.mean(
        [np.linalg.norm(iris_centre(transformed, eye) - iris_centre(original, eye)) for eye in EYES]
    ) / unit
    aperture_difference = np.mean(
        [abs(aperture_ratio(transformed, eye) - aperture_ratio(original, eye)) for eye in EYES]
    )
    gaze_difference = np.mean(
        [np.linalg.norm(gaze_offset(transformed, eye) - gaze_offset(original, eye)) for eye in EYES]
    )
    return Fidelity(
        eyelid_error=float(eyelid_error),
        iris_error=float(iris_error),
        aperture_difference=float(aperture_difference),
        gaze_difference=float(gaze_difference),
        mouth_aperture_difference=abs(mouth_aperture(transformed) - mouth_aperture(original)),
        corner_asymmetry_difference=abs(corner_asymmetry(transformed) - corner_asymmetry(original)),
    )


def nearest_face(faces: list[np.ndarray], near: np.ndarray) -> np.ndarray:
    """Of several faces' landmarks, those whose eyelid points are closest to ``near``'s."""
    eyelid = list(RIGHT_EYELID + LEFT_EYELID)
    return min(faces, key=lambda face: float(np.linalg.norm(face[eyelid] - near[eyelid], axis=1).mean()))


class FaceMeshLandmarker:
    """Mediapipe Face Mesh with iris refinement, for the faces of still images.

    Created once per audit run: building the graph costs far more than running it. It finds up
    to ``MAX_FACES`` faces, so that on a released image that shows several (every face in a
    photo is masked, and a mask may look more like a face to the detector than another) the one
    compared is the original's.
    """

    def __init__(self, min_detection_confidence: float = 0.5) -> None:
        from mediapipe.python.solutions import face_mesh

        self._mesh = face_mesh.FaceMesh(
            static_image_mode=True,
            max_num_faces=MAX_FACES,
            refine_landmarks=True,
            min_detection_confidence=min_detection_confidence,
        )

    def landmarks(self, rgb: np.ndarray, near: np.ndarray | None = None) -> np.ndarray | None:
        """The 478 landmarks in pixels, shape ``(478, 2)``, or None when no face is found.

        The face is the first Face Mesh reports (its most confident detection) or, given the
        landmarks of a face ``near``, the one whose eyelid points are closest to them.
        """
        result = self._mesh.process(np.ascontiguousarray(rgb))
        if not result.multi_face_landmarks:
            return None
        height, width = rgb.shape[:2]

        def pixels(face: Any) -> np.ndarray:
            return np.array([(p.x * width, p.y * height) for p in face.landmark], dtype=np.float64)

        if near is None:
            return pixels(result.multi_face_landmarks[0])
        return nearest_face([pixels(face) for face in result.multi_face_landmarks], near)

    def close(self) -> None:
        """Release the mediapipe graph."""
        self._mesh.close()
