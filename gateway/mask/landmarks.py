"""Face landmarks with mediapipe Face Mesh (478 points with the irises).

Stills are searched so that a small face in a large photo is still found: the full-range face
detector runs on a reduced copy and decides which faces exist. A face that Face Mesh also finds
on the whole (reduced) image takes those landmarks, the ones an analysis of the whole image
would find; any other gets Face Mesh on a crop of the native image around the detection, so
its landmarks keep the native resolution's precision. When the upright image shows no face,
it is tried turned by 90, 180 and 270 degrees, then in ever finer tiles. Frame sequences use
Face Mesh's own tracking instead (``tracking=True``).

Each face keeps the view Face Mesh found it in (``MeshView``: the whole reduced image or a crop),
so that the mask can be looked at again exactly as the original was (``gateway.mask.refine``).

Coordinates are pixels of the image passed in: x to the right, y down, and z (depth, smaller is
nearer the camera) on the same scale as x, as Face Mesh reports it.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace

import cv2
import mediapipe as mp
import numpy as np

from gateway.mask.settings import MaskSettings
from gateway.mask.topology import LANDMARK_COUNT, LEFT_IRIS_CENTRE, RIGHT_IRIS_CENTRE

#: Longest side of the reduced copy the face detector and the tracker see.
DETECTION_SIDE = 960
#: Longest side of the crop Face Mesh sees; its own models work at 192 (face) and 64 (iris).
MESH_CROP_SIDE = 512
#: Crop side as a multiple of the detected face box side.
CROP_MARGIN = 1.8
#: Images up to this many times ``DETECTION_SIDE`` or ``MESH_CROP_SIDE`` are given to the models
#: as they are: the models scale their input themselves, and so small a reduction would only
#: add a resize to every Face Mesh pass.
REDUCTION_SLACK = 1.25
#: Tile side as a multiple of the grid step: neighbouring tiles overlap by this much.
TILE_OVERLAP = 1.3
#: Largest distance, in inter-ocular distances, between Face Mesh's irises and the detector's
#: eye keypoints for the two to describe the same face.
SAME_EYES = 0.3
#: Two detections whose landmark boxes overlap more than this are the same face.
SAME_FACE_IOU = 0.4


#: A rectangle of an image: x0, y0, x1, y1 in pixels (x1, y1 excluded).
Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class MeshView:
    """What Face Mesh was shown: ``box`` (x0, y0, x1, y1 in image pixels) reduced to at most
    ``side`` pixels and turned by ``turns`` quarter turns (``np.rot90``).

    The landmark model's answer depends on its view: the same face seen whole or in a crop, at
    another size, gets landmarks that differ by about half a percent of the inter-ocular distance.
    """

    box: Box
    side: int
    turns: int = 0

    def image(self, rgb: np.ndarray) -> np.ndarray:
        """The pixels of ``rgb`` as Face Mesh sees them in this view."""
        x0, y0, x1, y1 = self.box
        small, _ = model_input(rgb[y0:y1, x0:x1], self.side)
        return np.ascontiguousarray(np.rot90(small, self.turns))

    def faces(self, mesh: object, rgb: np.ndarray, seen: np.ndarray | None = None) -> list[np.ndarray]:
        """Face Mesh (``mesh``) on this view of ``rgb``: every face's (478, 3) landmarks in
        pixels of ``rgb``. ``seen`` is ``self.image(rgb)`` when the caller has it already."""
        seen = self.image(rgb) if seen is None else seen
        result = mesh.process(seen)  # type: ignore[attr-defined]
        return [self.points(face, seen) for face in result.multi_face_landmarks or []]

    def points(self, landmarks: object, seen: np.ndarray) -> np.ndarray:
        """One face's landmarks as Face Mesh reports them on ``seen`` (this view's image):
        (478, 3) in pixels of the image the view is of."""
        height, width = seen.shape[:2]
        upright_w, upright_h = (width, height) if self.turns % 2 == 0 else (height, width)
        x0, y0, x1, y1 = self.box
        scale = np.array([(x1 - x0) / upright_w, (y1 - y0) / upright_h, (x1 - x0) / upright_w])
        return _unrotate(_as_array(landmarks, width, height), self.turns, upright_w, upright_h) * scale + [x0, y0, 0.0]


@dataclass(frozen=True)
class FaceLandmarks:
    """One face found in an image.

    Attributes
    ----------
    points
        (478, 3) float64 landmark positions in pixels of the image the face was found in
        (x right, y down, z depth on the scale of x). Rows 468-477 are the irises.
    score
        Detector confidence in [0, 1] (1.0 for faces followed by the tracker).
    variation
        Two values in [-1, 1] that vary the size and position of the mask's template for this face
        (``gateway.mask.geometry.varied_template``); ``FaceMasker.detect`` sets them for stills,
        the video tracker once per face for a whole clip. None keeps the template as it is.
    view
        Where Face Mesh found the landmarks; None for landmarks a caller made (smoothed ones).
    """

    points: np.ndarray
    score: float = 1.0
    variation: np.ndarray | None = None
    view: MeshView | None = None

    def __post_init__(self) -> None:
        if self.points.shape != (LANDMARK_COUNT, 3):
            raise ValueError(f"expected ({LANDMARK_COUNT}, 3) landmarks, got {self.points.shape}")

    def box(self) -> tuple[float, float, float, float]:
        """Bounding box ``(x0, y0, x1, y1)`` of the landmarks in pixels."""
        x, y = self.points[:, 0], self.points[:, 1]
        return float(x.min()), float(y.min()), float(x.max()), float(y.max())


def _same_eyes(points: np.ndarray, eyes: np.ndarray) -> bool:
    """Whether the irises of ``points`` are near the detector's (right, left) eye keypoints."""
    tolerance = SAME_EYES * np.linalg.norm(eyes[1] - eyes[0])
    found = points[[RIGHT_IRIS_CENTRE, LEFT_IRIS_CENTRE], :2]
    return bool((np.linalg.norm(found - eyes, axis=1) < tolerance).all())


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def reduced(rgb: np.ndarray, side: int) -> tuple[np.ndarray, float]:
    """A copy whose longest side is at most ``side``, and the factor from it back to ``rgb``.

    An area filter over a whole 12-megapixel photo is slow; a bilinear step down to twice the
    target size first (cheap, little aliasing at that ratio) leaves the area filter a small
    image. Up to that ratio the bilinear step alone is the whole reduction: OpenCV's area filter
    at a fractional ratio costs many times as much.
    """
    height, width = rgb.shape[:2]
    factor = max(height, width) / side
    if factor <= 1.0:
        return np.ascontiguousarray(rgb), 1.0
    size = (max(1, round(width / factor)), max(1, round(height / factor)))
    if factor <= 2.0:
        return cv2.resize(rgb, size, interpolation=cv2.INTER_LINEAR), factor
    rgb = cv2.resize(rgb, (size[0] * 2, size[1] * 2), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), factor


def square_box(cx: float, cy: float, side: float, shape: tuple[int, ...]) -> Box:
    """The square of ``side`` pixels centred on (``cx``, ``cy``), clipped to an image of ``shape``."""
    height, width = shape[:2]
    x0, y0 = int(np.floor(cx - side / 2)), int(np.floor(cy - side / 2))
    x1, y1 = int(np.ceil(cx + side / 2)), int(np.ceil(cy + side / 2))
    return max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)


def model_input(rgb: np.ndarray, side: int) -> tuple[np.ndarray, float]:
    """``rgb`` as the face detector and Face Mesh are given it: ``reduced`` to ``side`` unless it
    is at most ``REDUCTION_SLACK`` times larger; and the factor back to ``rgb``."""
    if max(rgb.shape[:2]) <= side * REDUCTION_SLACK:
        return np.ascontiguousarray(rgb), 1.0
    return reduced(rgb, side)


def _unrotate(points: np.ndarray, turns: int, width: int, height: int) -> np.ndarray:
    """Map points found in ``np.rot90(image, turns)`` back to ``image`` (``width`` x ``height``)."""
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    if turns == 1:
        x, y = width - y, x
    elif turns == 2:
        x, y = width - x, height - y
    elif turns == 3:
        x, y = y, height - x
    return np.stack([x, y, z], axis=1)


def _search_passes(width: int, height: int) -> list[list[tuple[int, Box]]]:
    """The order in which a still is searched: each pass is a list of (quarter turns, tile).

    First the whole image upright, then turned by 90, 180 and 270 degrees; then, upright, ever
    finer grids of overlapping tiles until a tile is seen at about native resolution, so that a
    small face in a large photo still reaches the detector at a size it can find. The search
    stops at the first pass that finds a face.
    """
    whole = (0, 0, width, height)
    passes: list[list[tuple[int, Box]]] = [[(turns, whole)] for turns in range(4)]
    count = 2
    while max(width, height) / count * TILE_OVERLAP > DETECTION_SIDE * 0.75:
        step_x, step_y = width / count, height / count
        tile_w, tile_h = step_x * TILE_OVERLAP, step_y * TILE_OVERLAP
        tiles = []
        for row in range(count):
            for column in range(count):
                x0 = int(min(column * step_x, width - tile_w))
                y0 = int(min(row * step_y, height - tile_h))
                tiles.append((0, (x0, y0, int(x0 + tile_w), int(y0 + tile_h))))
        passes.append(tiles)
        count *= 2
    return passes


#: A ``NormalizedLandmark`` with only x, y and z set, as protobuf encodes it inside a
#: ``NormalizedLandmarkList``: field 1, 15 bytes long, then the three float fields 1, 2 and 3.
_ENCODED_LANDMARK = np.dtype([
    ("key", "u1"), ("length", "u1"), ("x_key", "u1"), ("x", "<f4"), ("y_key", "u1"), ("y", "<f4"),
    ("z_key", "u1"), ("z", "<f4"),
])
_LANDMARK_KEYS = {"key": 0x0A, "length": 15, "x_key": 0x0D, "y_key": 0x15, "z_key": 0x1D}


def _as_array(landmarks: object, width: int, height: int) -> np.ndarray:
    """Face Mesh's normalised landmarks as pixel coordinates (z scaled like x).

    Read from the encoded message when every landmark has exactly x, y and z (what Face Mesh
    returns): much faster than reading 478 landmarks one attribute at a time, and this runs on
    every Face Mesh pass.
    """
    encoded = landmarks.SerializeToString()  # type: ignore[attr-defined]
    if len(encoded) % _ENCODED_LANDMARK.itemsize == 0:
        fields = np.frombuffer(encoded, dtype=_ENCODED_LANDMARK)
        if all((fields[name] == value).all() for name, value in _LANDMARK_KEYS.items()):
            values = np.stack([fields["x"], fields["y"], fields["z"]], axis=1).astype(np.float64)
            return values * np.array([width, height, width], dtype=np.float64)
    values = np.array([(p.x, p.y, p.z) for p in landmarks.landmark], dtype=np.float64)  # type: ignore[attr-defined]
    return values * np.array([width, height, width], dtype=np.float64)


class LandmarkDetector:
    """Finds faces and their landmarks; holds its mediapipe graphs (one per worker process).

    Parameters
    ----------
    settings
        ``max_faces``, ``detection_confidence`` and ``tracking_confidence`` are used.
    """

    def __init__(self, settings: MaskSettings) -> None:
        self._max_faces = settings.max_faces
        self._detector = mp.solutions.face_detection.FaceDetection(
            model_selection=1, min_detection_confidence=settings.detection_confidence
        )
        self._image_mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True,
            max_num_faces=settings.max_faces,
            refine_landmarks=True,
            min_detection_confidence=settings.detection_confidence,
        )
        self._crop_mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True,
            max_num_faces=1,
            refine_landmarks=True,
            min_detection_confidence=settings.detection_confidence,
        )
        self._tracking_mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=False,
            max_num_faces=settings.max_faces,
            refine_landmarks=True,
            min_detection_confidence=settings.detection_confidence,
            min_tracking_confidence=settings.tracking_confidence,
        )
        #: Runs Face Mesh on the whole image while the face detector looks at it: the two are
        #: independent, and mediapipe releases the GIL while its graphs run.
        self._meshing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="face-mesh")

    def close(self) -> None:
        """Release the mediapipe graphs and the thread that runs one of them."""
        self._meshing.shutdown()
        for graph in (self._detector, self._image_mesh, self._crop_mesh, self._tracking_mesh):
            graph.close()

    def reset_tracking(self) -> None:
        """Forget the faces followed so far: the next tracking call starts a new sequence."""
        self._tracking_mesh.reset()

    def detect(self, rgb: np.ndarray, tracking: bool = False) -> list[FaceLandmarks]:
        """Every face in ``rgb`` (HxWx3 uint8), at most ``max_faces``, largest first.

        With ``tracking`` the frames are expected in order (one sequence per detector) and Face
        Mesh follows the faces from one frame to the next; otherwise each call is independent
        and rotated orientations are tried when the upright search finds nothing.
        """
        whole = model_input(rgb, DETECTION_SIDE)
        if tracking:
            faces = self._whole_image(rgb, whole, self._tracking_mesh)
        else:
            meshed: Future[list[FaceLandmarks]] | None = self._meshing.submit(
                self._whole_image, rgb, whole, self._image_mesh
            )
            faces = []
            for search in _search_passes(rgb.shape[1], rgb.shape[0]):
                for turns, tile in search:
                    faces = self._find_in_tile(rgb, tile, turns, faces, meshed, whole)
                    meshed = None  # only the first, whole and upright, pass sees the same image
                if faces:
                    break
        faces.sort(key=lambda f: -(f.box()[2] - f.box()[0]) * (f.box()[3] - f.box()[1]))
        return faces[: self._max_faces]

    @staticmethod
    def _whole_image(rgb: np.ndarray, whole: tuple[np.ndarray, float], mesh: object) -> list[FaceLandmarks]:
        """Face Mesh (``mesh``: still or tracking graph) on the whole reduced image.

        ``whole`` is ``model_input(rgb, DETECTION_SIDE)``, made once per image: the detector's
        first tiles are the whole image too.
        """
        view = MeshView((0, 0, rgb.shape[1], rgb.shape[0]), DETECTION_SIDE)
        return [FaceLandmarks(points, view=view) for points in view.faces(mesh, rgb, whole[0])]

    def _find_in_tile(
        self,
        rgb: np.ndarray,
        tile: Box,
        turns: int,
        faces: list[FaceLandmarks],
        meshed: Future[list[FaceLandmarks]] | None,
        whole: tuple[np.ndarray, float],
    ) -> list[FaceLandmarks]:
        """``faces`` plus the new faces the detector finds in ``tile`` turned by ``turns``.

        A detection whose eyes are where those of a face in ``meshed`` (Face Mesh on the whole
        image, running meanwhile in another thread) are takes that face's landmarks, which are
        what an analysis of the whole image finds; any other detection gets Face Mesh on a
        native-resolution crop. The detector decides which faces exist either way: its eye
        keypoints also catch a whole-image mesh fitted the wrong way round on an upside-down
        face. ``whole`` (the reduced whole image) is reused for a tile that is the whole image.
        """
        x0, y0, x1, y1 = tile
        height, width = rgb.shape[:2]
        upright, factor = whole if tile == (0, 0, width, height) else model_input(rgb[y0:y1, x0:x1], DETECTION_SIDE)
        small = np.ascontiguousarray(np.rot90(upright, turns))
        sh, sw = small.shape[:2]
        faces = list(faces)
        detections = self._detector.process(small).detections or []
        whole_image_faces = meshed.result() if meshed is not None else []
        for detection in detections:
            box = detection.location_data.relative_bounding_box
            centre = np.array([[(box.xmin + box.width / 2) * sw, (box.ymin + box.height / 2) * sh, 0.0]])
            cx, cy, _ = _unrotate(centre, turns, upright.shape[1], upright.shape[0])[0] * factor
            eyes = np.array([[k.x * sw, k.y * sh, 0.0] for k in detection.location_data.relative_keypoints[:2]])
            eyes = _unrotate(eyes, turns, upright.shape[1], upright.shape[0])[:, :2] * factor + [x0, y0]
            face = next((f for f in whole_image_faces if _same_eyes(f.points, eyes)), None)
            if face is None:
                side = max(box.width * sw, box.height * sh) * factor * CROP_MARGIN
                face = self._mesh_in_crop(rgb, cx + x0, cy + y0, side, turns)
            if face is None:
                continue
            face = replace(face, score=float(detection.score[0]))
            if all(_iou(face.box(), other.box()) < SAME_FACE_IOU for other in faces):
                faces.append(face)
        return faces

    def _mesh_in_crop(
        self, rgb: np.ndarray, cx: float, cy: float, side: float, turns: int
    ) -> FaceLandmarks | None:
        """Face Mesh on a native-resolution square crop, mapped back to ``rgb`` pixels."""
        box = square_box(cx, cy, side, rgb.shape)
        if box[2] - box[0] < 8 or box[3] - box[1] < 8:
            return None
        view = MeshView(box, MESH_CROP_SIDE, turns)
        found = view.faces(self._crop_mesh, rgb)
        return FaceLandmarks(found[0], view=view) if found else None
