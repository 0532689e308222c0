"""Closed-loop eye correction for stills: look at the drawn eyes the way an analysis will.

The calibration (``gateway.mask.calibration``) removes the mean displacement between the eye
landmarks of a photo and those Face Mesh finds on its mask, but for each photo the landmark model
still sees the drawn irises and lid margins a little off, by an amount that depends on the face
around them and that changes, almost at random, with every small change of the drawing. For a
still there is time to look a few times: Face Mesh runs on the mask in the same view the
photo's landmarks came from (``MeshView``), each drawn lid point and iris is moved against the
displacement found there, and the drawing that was found closest to the photo's eyes is kept
(``EyeRefiner.correct`` on one face's ``EyeDrawing``).

On faces-dev (``dmask audit privacy``) keeping the best of several looks in the photo's own view
brought the eyelid points and the irises closer than a single look with the lids moved by a
share of their displacement. Looking at a crop around the face instead of the photo's view did
worse, and so did following the corrections without keeping the best: past the second
correction Face Mesh finds the lids about as far off on average, but each drawing by a
different amount, and the best one seen is kept.

Every second look (the first included) is the whole of Face Mesh, its face detector included,
as an analysis of the output runs it; the looks between run only its landmark model, on the
region the last whole look read the face in (``gateway.mask.mesh_passes``), and skip the
detector. On one drawing both give the same landmarks, but the detector's region follows the
drawn eyes a little, so a look that keeps an earlier region sees a redrawn eye slightly
differently from an analysis. On faces-tune every look after the first on the first region left
the eyes as far off as one correction fewer; a whole look every second drawing came close to
whole looks throughout (figures in docs/results.md).

Frame sequences do not use it: their landmarks are smoothed over time, and another landmark
pass per frame would cost a large share of the frame rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from mediapipe.framework.formats.rect_pb2 import NormalizedRect

from gateway.mask.compose import RIM, compose_face
from gateway.mask.geometry import eye_frame
from gateway.mask.landmarks import Box, FaceLandmarks, MeshView, square_box
from gateway.mask.mesh_passes import FaceMeshPasses, FoundFace
from gateway.mask.render import REGION_MARGIN
from gateway.mask.settings import MaskSettings
from gateway.mask.topology import LEFT_EYE_OPENING, LEFT_IRIS, RIGHT_EYE_OPENING, RIGHT_IRIS

#: For landmarks without a view (made by a caller): the square crop Face Mesh looks at, in
#: multiples of the face region's longer side (about as much context as a portrait gives) ...
CROP_GROWTH = 2.2
#: ... and its longest side once reduced (Face Mesh works at 192 pixels anyway).
CROP_SIDE = 256
#: Largest total correction of a drawn point, in inter-ocular distances: a larger one is not
#: of the drawing (and an iris moved further overshoots where the lids clip it).
LARGEST_CORRECTION = 0.05
#: A re-detection whose eyelid points are on average further off than this (inter-ocular
#: distances) is not of the drawn eyes (another face, a failed fit) and is not followed.
MISMATCH = 0.25
LIDS = np.concatenate([RIGHT_EYE_OPENING, LEFT_EYE_OPENING])
IRISES = (RIGHT_IRIS, LEFT_IRIS)
#: The whole of Face Mesh (detector and landmark model) looks at every this many drawings, the
#: first included; the looks between run its landmark model alone on the region the last whole
#: look read the face in. 1: every look is an analysis's own, at the cost of a detector pass each.
WHOLE_LOOK_EVERY = 2


@dataclass(frozen=True)
class EyeDrawing:
    """One face's mask as first composed into an output, and what drawing its eyes again needs.

    Made by ``before_composing`` before the face is composed: ``underneath`` keeps what the
    output showed over ``band`` then, so that each corrected drawing starts from the same pixels.
    """

    #: The mask's vertices as first drawn (calibrated); no correction moves a point further
    #: than ``LARGEST_CORRECTION`` from them.
    shape: np.ndarray
    #: The photo's landmarks of the face.
    points: np.ndarray
    #: How Face Mesh looks at the output: the view the photo's landmarks came from.
    view: MeshView
    #: The part of the face's region that drawing the eyes again can change (``eye_band``).
    band: Box
    #: The mesh rendered over ``band`` (RGBA).
    rendered: np.ndarray
    #: The output's pixels over ``band`` before the face was composed.
    underneath: np.ndarray

    @classmethod
    def before_composing(
        cls, output: np.ndarray, face: FaceLandmarks, shape: np.ndarray, region: Box, rendered: np.ndarray
    ) -> EyeDrawing:
        """The drawing of ``face`` as ``shape``, rendered over ``region`` (``rendered``), into
        ``output``, which must not show the face yet. Landmarks without a view (made by a
        caller) are looked at in ``crop_view``."""
        _, scale = eye_frame(face.points)
        band = eye_band(shape, region, LARGEST_CORRECTION * scale)
        x0, y0 = region[:2]
        bx0, by0, bx1, by1 = band
        return cls(
            shape=shape,
            points=face.points,
            view=face.view or crop_view(region, output.shape),
            band=band,
            rendered=rendered[by0 - y0 : by1 - y0, bx0 - x0 : bx1 - x0],
            underneath=output[by0:by1, bx0:bx1].copy(),
        )

    def pixels(self, output: np.ndarray) -> np.ndarray:
        """The pixels of ``output`` over ``band`` (a view: writing to it changes ``output``)."""
        x0, y0, x1, y1 = self.band
        return output[y0:y1, x0:x1]


@dataclass(frozen=True)
class Look:
    """Where Face Mesh found the eyes of a drawing."""

    #: Every landmark as found minus the photo's: (478, 2) pixels.
    displacement: np.ndarray
    #: The region Face Mesh's landmark model read the face in; None when it cannot be told.
    region: NormalizedRect | None


class EyeRefiner:
    """Re-detects the eyes of a drawn mask and draws them corrected; holds its own Face Mesh
    graphs (one per process)."""

    def __init__(self, settings: MaskSettings) -> None:
        self._settings = settings
        self._passes = FaceMeshPasses(settings.max_faces, settings.detection_confidence)

    def close(self) -> None:
        """Release the Face Mesh graphs."""
        self._passes.close()

    def look(
        self, image: np.ndarray, view: MeshView, points: np.ndarray, region: NormalizedRect | None = None
    ) -> Look | None:
        """Where Face Mesh finds the landmarks of the face at ``points`` on ``view`` of ``image``
        (the masked output).

        Without ``region`` the whole of Face Mesh looks, as an analysis of the image would, and
        of the faces it finds the one whose eyelid points are nearest ``points`` is taken; with
        the region an earlier look read the face in, the landmark model alone looks there again.
        None when the face taken has its eyelid points further than ``MISMATCH`` from ``points``,
        or there is none.
        """
        seen = view.image(image)
        if region is None:
            found = self._passes.find(seen)
        else:
            again = self._passes.again(seen, region)
            found = [] if again is None else [FoundFace(again, region)]
        if not found:
            return None
        offsets = [view.points(face.landmarks, seen)[:, :2] - points[:, :2] for face in found]
        lid_distances = [np.linalg.norm(offset[LIDS], axis=1).mean() for offset in offsets]
        nearest = int(np.argmin(lid_distances))
        _, scale = eye_frame(points)
        if lid_distances[nearest] > MISMATCH * scale:
            return None
        return Look(offsets[nearest], found[nearest].region)

    def correct(self, output: np.ndarray, original: np.ndarray, drawing: EyeDrawing) -> None:
        """Look at the eyes of ``drawing`` in ``output``, draw them corrected, up to
        ``eye_corrections`` times, and leave in ``output`` the drawing whose eyes Face Mesh
        found closest to the photo's (``original``: the input image).

        Every ``WHOLE_LOOK_EVERY``-th look, the first included, is the whole of Face Mesh; the
        others run its landmark model alone on the region the last whole look read the face in.
        A drawing whose face Face Mesh does not find ends the corrections; when not even the
        first drawing's is found, the first drawing stays.
        """
        corrections = self._settings.eye_corrections
        drawn, best, best_error = drawing.shape, None, np.inf
        region = None
        for look in range(corrections + 1):
            seen = self.look(output, drawing.view, drawing.points, None if look % WHOLE_LOOK_EVERY == 0 else region)
            if seen is None:
                break
            region = seen.region
            error = eye_error(seen.displacement, drawing.points)
            if error < best_error:
                best, best_error = drawing.pixels(output).copy(), error
            if look == corrections:
                break
            drawn = corrected(drawn, seen.displacement, drawing.shape, drawing.points)
            drawing.pixels(output)[...] = drawing.underneath
            compose_face(output, original, drawing.rendered, drawn, drawing.points, drawing.band, self._settings)
        if best is not None:  # without a first look nothing was drawn again
            drawing.pixels(output)[...] = best


def crop_view(region: Box, shape: tuple[int, ...]) -> MeshView:
    """A view for landmarks that have none: a square around the face's ``region``."""
    x0, y0, x1, y1 = region
    side = max(x1 - x0, y1 - y0) * CROP_GROWTH
    return MeshView(square_box((x0 + x1) / 2.0, (y0 + y1) / 2.0, side, shape), CROP_SIDE)


def eye_band(shape: np.ndarray, region: Box, reach: float) -> Box:
    """The part of ``region`` that drawing the eyes of ``shape`` again, each point moved by up to
    ``reach`` pixels, can change: the eyelid openings, the lid lines over them and the rim by
    which a drawn opening reaches under the mesh's edge."""
    extent = shape[LIDS, :2]
    margin = REGION_MARGIN + RIM + int(np.ceil(reach))
    low = np.floor(extent.min(axis=0)).astype(int) - margin
    high = np.ceil(extent.max(axis=0)).astype(int) + margin
    x0, y0, x1, y1 = region
    return max(low[0], x0), max(low[1], y0), min(high[0], x1), min(high[1], y1)


def eye_error(displacement: np.ndarray, points: np.ndarray) -> float:
    """How far the eyes were found: mean eyelid point distance plus mean iris centre distance,
    in inter-ocular distances (what the privacy audit's fidelity measures)."""
    _, scale = eye_frame(points)
    lids = np.linalg.norm(displacement[LIDS], axis=1).mean()
    irises = np.mean([np.linalg.norm(displacement[iris].mean(axis=0)) for iris in IRISES])
    return float((lids + irises) / scale)


def corrected(drawn: np.ndarray, displacement: np.ndarray, first: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``drawn`` with each lid point moved against its ``displacement`` and each iris, as a
    whole, against the mean of its own; no point ends further than ``LARGEST_CORRECTION`` from
    where the ``first`` drawing had it."""
    moved = drawn.copy()
    moved[LIDS, :2] -= displacement[LIDS]
    for iris in IRISES:
        moved[iris, :2] -= displacement[iris].mean(axis=0)
    _, scale = eye_frame(points)
    largest = LARGEST_CORRECTION * scale
    moved[:, :2] = first[:, :2] + np.clip(moved[:, :2] - first[:, :2], -largest, largest)
    return moved
