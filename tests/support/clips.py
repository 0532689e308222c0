"""Eye-movement clips synthesised from a face photo, with the true iris positions of every frame.

A clip is the photo under a similarity transform that changes over time (drift, zoom, roll of
the head) with the irises moved inside the eyes by a local warp (a nystagmus-like horizontal
oscillation plus a slow vertical drift). Because every frame is made from the photo, the true
iris centre of each frame is known exactly, which is what an iris-tracking error needs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from gateway.audit.fidelity import LEFT_EYE_CORNERS, LEFT_IRIS, RIGHT_EYE_CORNERS, RIGHT_IRIS
from tests.support.photos import photo

if TYPE_CHECKING:
    from gateway.mask.masker import FaceMasker


@dataclass(frozen=True)
class EyeMotion:
    """Iris displacement over time, in iris radii: horizontal sine (nystagmus) + vertical sine."""

    horizontal: float = 0.45
    horizontal_hz: float = 2.0
    vertical: float = 0.2
    vertical_hz: float = 0.5

    def offset(self, time: float) -> np.ndarray:
        return np.array(
            [
                self.horizontal * np.sin(2 * np.pi * self.horizontal_hz * time),
                self.vertical * np.sin(2 * np.pi * self.vertical_hz * time),
            ]
        )


@dataclass(frozen=True)
class HeadMotion:
    """Similarity transform over the clip: drift in pixels, zoom factor and roll in degrees at the end."""

    drift: tuple[float, float] = (24.0, -12.0)
    zoom: float = 1.1
    roll: float = 8.0

    def matrix(self, progress: float, centre: np.ndarray) -> np.ndarray:
        scale = 1 + (self.zoom - 1) * progress
        matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), self.roll * progress, scale)
        matrix[:, 2] += np.array(self.drift) * progress
        return matrix


STILL_HEAD = HeadMotion(drift=(0.0, 0.0), zoom=1.0, roll=0.0)
STILL_EYES = EyeMotion(horizontal=0.0, vertical=0.0)


@dataclass(frozen=True)
class Frame:
    """One synthesised frame and the truth about it."""

    rgb: np.ndarray
    #: True iris centres (right, left) in frame pixels, shape (2, 2).
    iris_centres: np.ndarray
    #: True eye centres (right, left: midpoints of the eye corners) in frame pixels, shape (2, 2).
    eye_centres: np.ndarray
    #: Distance between the eye centres in frame pixels.
    inter_ocular: float


class EyeMovementClip:
    """Frames of a face photo with moving head and irises.

    Parameters
    ----------
    photo
        RGB face photo.
    landmarks
        (478, 3) Face Mesh landmarks of `photo` (irises included), found once on the still.
    size
        (width, height) of the frames; the face is centred and scaled so that the inter-ocular
        distance is about `inter_ocular` pixels.
    """

    def __init__(self, photo: np.ndarray, landmarks: np.ndarray, size: tuple[int, int], inter_ocular: float,
                 frame_rate: float = 30.0, eyes: EyeMotion = EyeMotion(), head: HeadMotion = HeadMotion()) -> None:
        self.size, self.frame_rate, self.eyes, self.head = size, frame_rate, eyes, head
        points = landmarks[:, :2]
        right_eye = points[list(RIGHT_EYE_CORNERS)].mean(axis=0)
        left_eye = points[list(LEFT_EYE_CORNERS)].mean(axis=0)
        scale = inter_ocular / np.linalg.norm(left_eye - right_eye)
        middle = (right_eye + left_eye) / 2
        # Photo -> frame: the eyes' midpoint a little above the frame centre.
        self._place = np.array([[scale, 0, size[0] / 2 - scale * middle[0]],
                                [0, scale, size[1] * 0.45 - scale * middle[1]]])
        self._photo = photo
        self._irises = points[[RIGHT_IRIS[0], LEFT_IRIS[0]]]
        radii = [np.linalg.norm(points[list(iris[1:])] - points[iris[0]], axis=1).mean()
                 for iris in (RIGHT_IRIS, LEFT_IRIS)]
        self._iris_radius = float(np.mean(radii))
        self._eye_centres = np.stack([right_eye, left_eye])
        self._grid = np.mgrid[0: photo.shape[0], 0: photo.shape[1]].astype(np.float32)

    def _warped_photo(self, offset: np.ndarray, eyes: tuple[int, ...] = (0, 1)) -> np.ndarray:
        """The photo with the irises of ``eyes`` (0 right, 1 left) moved by `offset` iris radii
        (a local, smooth warp)."""
        if not offset.any():
            return self._photo
        ys, xs = self._grid
        map_x, map_y = xs.copy(), ys.copy()
        shift = offset * self._iris_radius
        for centre in self._irises[list(eyes)]:
            distance = np.hypot(xs - centre[0], ys - centre[1]) / (1.6 * self._iris_radius)
            weight = np.exp(-distance**4)  # ~1 over the iris, ~0 beyond 2 radii
            map_x -= shift[0] * weight
            map_y -= shift[1] * weight
        return cv2.remap(self._photo, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)

    def frames(self, count: int) -> Iterator[Frame]:
        """The first `count` frames."""
        for index in range(count):
            time = index / self.frame_rate
            offset = self.eyes.offset(time)
            place = np.vstack([self._place, [0, 0, 1]])
            centre = np.array(self.size) / 2
            motion = np.vstack([self.head.matrix(index / max(count - 1, 1), centre), [0, 0, 1]])
            matrix = (motion @ place)[:2]
            rgb = cv2.warpAffine(self._warped_photo(offset), matrix, self.size, flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REPLICATE)
            irises = self._irises + offset * self._iris_radius
            iris_centres = irises @ matrix[:, :2].T + matrix[:, 2]
            eyes = self._eye_centres @ matrix[:, :2].T + matrix[:, 2]
            yield Frame(rgb, iris_centres, eyes, float(np.linalg.norm(eyes[1] - eyes[0])))


def squinting(clip: EyeMovementClip, eye: int, offset: tuple[float, float]) -> np.ndarray:
    """The clip's photo (not placed in a frame) with only the iris of ``eye`` (0 right, 1 left)
    moved by ``offset`` iris radii: one eye looking elsewhere, as in strabismus."""
    return clip._warped_photo(np.asarray(offset, dtype=np.float64), (eye,))


def astronaut_clip(masker: FaceMasker, size: tuple[int, int], inter_ocular: float,
                   **motion: Any) -> EyeMovementClip:
    """The astronaut photo as an eye-movement clip, its landmarks found on the still by `masker`
    (``motion``: frame_rate, eyes, head of :class:`EyeMovementClip`)."""
    astronaut = photo("astronaut")
    return EyeMovementClip(astronaut, masker.detect(astronaut)[0].points, size, inter_ocular, **motion)
