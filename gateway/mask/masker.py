"""``FaceMasker``: every face of an image replaced by its digital mask.

The masker owns the per-process resources (mediapipe graphs, the OpenGL context, the template)
and runs the steps in order: landmarks -> mask shape -> render -> compose -> residual check.
``detect`` and ``render`` are public and stable for frame sequences, where the caller smooths
and interpolates the landmarks between the two (``gateway.mask.video``).
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from gateway.errors import NoFaceFound, ResidualFace, UnsupportedPixelFormat
from gateway.mask.calibration import load_calibration
from gateway.mask.compose import background, compose_face, face_outline
from gateway.mask.geometry import keyed_variation, mask_shape, mesh_blend, variation_of
from gateway.mask.interface import MaskedImage
from gateway.mask.landmarks import Box, FaceLandmarks, LandmarkDetector
from gateway.mask.mouth import mouth_state, posed_template
from gateway.mask.refine import EyeDrawing, EyeRefiner
from gateway.mask.render import REGION_MARGIN, MaskRenderer
from gateway.mask.residual import ResidualFaceCheck
from gateway.mask.settings import BackgroundPolicy, EyeRendering, MaskSettings, MouthCorners
from gateway.mask.template import load_template
from gateway.mask.topology import LEFT_EYE_OPENING, MESH_VERTEX_COUNT, RIGHT_EYE_OPENING


class FaceMasker:
    """Masks faces in RGB images; create one per worker process and reuse it.

    Parameters
    ----------
    settings
        The mask options of the profile; the defaults are the privacy-preserving choice.
    key
        The gateway's secret (its pseudonym key): the template variation of each face is drawn
        under it (``keyed_variation``), so that nobody without it can reproduce the variation
        from the original photo. None: the variation comes from the landmarks alone.

    Examples
    --------
    >>> with FaceMasker(MaskSettings()) as masker:            # doctest: +SKIP
    ...     masked = masker.mask_image(rgb)
    """

    def __init__(self, settings: MaskSettings | None = None, key: bytes | None = None) -> None:
        self.settings = settings or MaskSettings()
        self._key = key
        self.template = load_template()
        self.calibration = load_calibration()
        self._blend = mesh_blend(self.template.vertices, self.settings.preserved_regions(), self.settings.brows)
        self._detector = LandmarkDetector(self.settings)
        self._renderer = MaskRenderer(self.settings.skin_albedo)
        self._refiner = EyeRefiner(self.settings)
        self._residual = ResidualFaceCheck() if self.settings.residual_check else None
        #: The faces of the last ``render`` and their masks' vertices: the residual check and the
        #: rendered area that follow it ask for the same faces' shapes again.
        self._rendered_shapes: list[tuple[FaceLandmarks, np.ndarray]] = []

    def __enter__(self) -> FaceMasker:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the mediapipe graphs and the OpenGL context."""
        self._detector.close()
        self._refiner.close()
        self._renderer.close()

    def reset_tracking(self) -> None:
        """Start a new frame sequence: forget the faces ``detect(..., tracking=True)`` followed."""
        self._detector.reset_tracking()

    def detect(self, rgb: np.ndarray, tracking: bool = False) -> list[FaceLandmarks]:
        """Landmarks of every face in ``rgb`` (at most ``max_faces``); may be empty.

        ``tracking=True`` follows faces from the previous call's frame (frame sequences, in
        order); otherwise every call searches the whole image, also rotated, and each face gets
        its template variation (``FaceLandmarks.variation``).
        """
        faces = self._detector.detect(_checked(rgb), tracking)
        if tracking:
            return faces
        return [replace(face, variation=variation_of(face.points)) for face in faces]

    def render(self, rgb: np.ndarray, faces: list[FaceLandmarks], refine_eyes: bool = False) -> np.ndarray:
        """``rgb`` with each of ``faces`` replaced by its mask and the background policy applied.

        No detection and no residual check happen here: this is the step a frame sequence runs
        on landmarks it has smoothed itself. ``refine_eyes`` (stills) corrects the drawn eyes
        by re-detecting them (``gateway.mask.refine``). The output is a new HxWx3 uint8 array.
        """
        _checked(rgb)
        output = background(rgb, self.settings)
        self._rendered_shapes = []
        for face in faces:
            self._mask_face(output, rgb, face, refine_eyes)
        return output

    def mask_image(self, rgb: np.ndarray) -> np.ndarray:
        """Mask every face of a still image.

        Raises
        ------
        NoFaceFound
            No face was found (in any orientation).
        ResidualFace
            The independent detector finds a face outside the masks on the output.
        UnsupportedPixelFormat
            ``rgb`` is not an HxWx3 uint8 array.
        """
        return self.mask_still(rgb).rgb

    def mask_still(self, rgb: np.ndarray) -> MaskedImage:
        """As :meth:`mask_image`, with the area the mask rendered (same errors)."""
        faces = self.detect(rgb)
        if not faces:
            raise NoFaceFound("no face found in the image")
        output = self.render(rgb, faces, refine_eyes=True)
        self.check_residual(output, faces)
        return MaskedImage(output, self.rendered_area(rgb.shape, faces))

    @property
    def keeps_source_pixels(self) -> bool:
        """Whether an output can show pixels of the source (and so its burned-in text): not with
        a filled background and rendered eyes, where :meth:`rendered_area` is every pixel."""
        return self.settings.background is not BackgroundPolicy.FILL or self.settings.eyes is EyeRendering.ORIGINAL

    def rendered_area(self, shape: tuple[int, ...], faces: list[FaceLandmarks]) -> np.ndarray:
        """``H x W`` bool: the pixels :meth:`render` drew, none of which shows the source's.

        The mask is opaque over its mesh, whose outer vertices are the face's outline, so the
        convex hull of the mesh's vertices is what it drew. With ``background: fill`` everything
        outside the masks is the flat fill colour, drawn as well: then nothing of the source is
        left in the output. With ``eyes: original`` the eyelid openings show the source's pixels,
        which may carry text: they are not part of it.
        """
        area = np.full(shape[:2], self.settings.background is BackgroundPolicy.FILL, bool)
        drawn = area.view(np.uint8)  # OpenCV draws the 1s and 0s straight into the bool array
        for face in faces:
            hull = cv2.convexHull(np.round(self._shape(face)[:MESH_VERTEX_COUNT, :2]).astype(np.int32))
            cv2.fillConvexPoly(drawn, hull, (1,))
        if self.settings.eyes is EyeRendering.ORIGINAL:
            openings = [np.round(face.points[opening, :2]).astype(np.int32) for face in faces
                        for opening in (RIGHT_EYE_OPENING, LEFT_EYE_OPENING)]
            cv2.fillPoly(drawn, openings, (0,))
        return area

    def check_residual(self, output: np.ndarray, faces: list[FaceLandmarks]) -> None:
        """Raise ``ResidualFace`` if a second detector finds a face no mask of ``faces`` covers.

        With ``background: fill`` nothing of the input is left outside the masks, so there is
        nothing to scan.
        """
        if self._residual is None or self.settings.background is BackgroundPolicy.FILL:
            return
        boxes = [self._region(self._shape(face), face.points, output.shape) for face in faces]
        if self._residual.uncovered_faces(output, boxes):
            raise ResidualFace("a face outside every mask was detected on the output")

    def _shape(self, face: FaceLandmarks) -> np.ndarray:
        """The mask's vertices for ``face``: the template, its mouth posed as the patient's
        (``mouth_state``), its variation drawn under the key. Read-only; the faces of the last
        ``render`` are not shaped again."""
        for rendered, shape in self._rendered_shapes:
            if rendered is face:
                return shape
        variation = face.variation
        if variation is not None and self._key is not None:
            variation = keyed_variation(variation, self._key)
        template = self.template.vertices
        if self.settings.mouth_state:
            heights = self.settings.mouth_corners is MouthCorners.HEIGHTS
            template = posed_template(template, mouth_state(face.points, template), heights)
        shape = mask_shape(face.points, template, self._blend, variation, self.settings.template_variation)
        shape.flags.writeable = False
        return shape

    def _region(self, mask: np.ndarray, points: np.ndarray, shape: tuple[int, ...]) -> Box:
        """The pixels the ``mask`` (``_shape``) of the face at ``points`` may touch: the mask
        and (unless filled anyway) the face's outline."""
        outline = face_outline(points) if self.settings.background is not BackgroundPolicy.FILL else None
        extent = mask[:MESH_VERTEX_COUNT, :2] if outline is None else np.vstack([mask[:MESH_VERTEX_COUNT, :2], outline])
        low = np.floor(extent.min(axis=0)).astype(int) - REGION_MARGIN
        high = np.ceil(extent.max(axis=0)).astype(int) + REGION_MARGIN
        height, width = shape[:2]
        return max(low[0], 0), max(low[1], 0), min(high[0], width), min(high[1], height)

    def _mask_face(self, output: np.ndarray, rgb: np.ndarray, face: FaceLandmarks, refine_eyes: bool) -> None:
        """Draw one face's mask into ``output``; with ``refine_eyes`` (and drawn eyes) correct
        the drawn eyes by looking at them (``gateway.mask.refine``)."""
        points = face.points
        shape = self._shape(face)
        self._rendered_shapes.append((face, shape))
        region = self._region(shape, points, rgb.shape)
        rendered_eyes = self.settings.eyes is EyeRendering.RENDERED
        if rendered_eyes:
            shape = self.calibration.apply(shape, points)
        x0, y0, x1, y1 = region
        if x1 <= x0 or y1 <= y0:
            return
        rendered = self._renderer.render(shape, region)
        corrects = refine_eyes and rendered_eyes and self.settings.eye_corrections > 0
        drawing = EyeDrawing.before_composing(output, face, shape, region, rendered) if corrects else None
        compose_face(output, rgb, rendered, shape, points, region, self.settings)
        if drawing is not None:
            self._refiner.correct(output, rgb, drawing)


def _checked(rgb: np.ndarray) -> np.ndarray:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise UnsupportedPixelFormat("the mask needs an HxWx3 uint8 RGB image")
    return rgb
