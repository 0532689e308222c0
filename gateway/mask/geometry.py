"""The mask's shape: the patient's geometry where it is kept, the identity-free template elsewhere.

Every parameter fitted to a patient's face is a channel through which two masks of the same
person can be linked. So the template is never fitted to the face's proportions: its scale,
position and rotation (the head pose, diagnostic and kept) all come from the eyes and the skin
around them, which are kept anyway. The mesh is then a per-vertex blend: weight 1 (the
patient's landmarks) in the preserved regions, 0 (the placed template) far from them, and a
smooth fall-off over the surface in between so that there is no seam. The brows are kept by
position only: each is the template's brow moved by the patient's mean brow displacement (or
only its height, ``BrowKeeping``), so brow height and its left/right asymmetry survive but not
the brow's identifying shape.

Coordinates follow ``gateway.mask.landmarks``: pixels, x right, y down, z depth on x's scale.
Normalised coordinates put the midpoint between the eyes at the origin with an inter-ocular
distance of 1.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
from dataclasses import dataclass

import numpy as np

from gateway.mask.settings import BrowKeeping, Region
from gateway.mask.topology import (
    EDGES,
    EYE_SURROUNDINGS,
    LANDMARK_COUNT,
    LEFT_BROW,
    LEFT_EYE_OPENING,
    MESH_VERTEX_COUNT,
    REGION_VERTICES,
    RIGHT_BROW,
    RIGHT_EYE_OPENING,
)

#: Width of the fall-off from kept to template geometry, in inter-ocular distances.
FALLOFF = 0.15
#: How many values a variation has: the template's size and its vertical position.
VARIATION_VALUES = 2
#: Distances from an eye centre (inter-ocular distances) over which the variation fades in:
#: none up to the first (the eye and its lids), all of it beyond the second.
VARIATION_FADE = (0.5, 0.8)


def eye_centres(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres (3D) of the right and left eyelid openings: gaze-independent, unlike the irises."""
    return points[RIGHT_EYE_OPENING].mean(axis=0), points[LEFT_EYE_OPENING].mean(axis=0)


def rotation_onto(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The proper rotation ``R`` minimising ``sum |R @ s_i - t_i|^2`` for centred point sets."""
    u, _, vt = np.linalg.svd(target.T @ source)
    sign = np.sign(np.linalg.det(u @ vt))
    return u @ np.diag([1.0, 1.0, sign]) @ vt


def eye_frame(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Origin (midpoint of the eyes) and scale (3D inter-ocular distance) of a face."""
    right, left = eye_centres(points)
    return (right + left) / 2.0, float(np.linalg.norm(left - right))


def normalise(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``points`` moved to the eye frame and rotated onto ``reference`` (normalised, 478x3)."""
    origin, scale = eye_frame(points)
    centred = (points - origin) / scale
    rotation = rotation_onto(centred[:MESH_VERTEX_COUNT], reference[:MESH_VERTEX_COUNT])
    return centred @ rotation.T


def place_template(template: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The normalised ``template`` placed on a face by its eyes, and the rotation that did it.

    Scale and translation come from the eye centres, the rotation (head pose) from the eyes and
    the skin around them, so the rendered face has the template's proportions whatever the
    patient's. The rotation takes the template's axes to the face's (``rotation @ [0, 1, 0]``
    is the face's downward direction in the image).
    """
    origin, scale = eye_frame(points)
    centred = (points - origin) / scale
    rotation = rotation_onto(template[EYE_SURROUNDINGS], centred[EYE_SURROUNDINGS])
    return (template @ rotation.T) * scale + origin, rotation


def surface_distance(template: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Shortest distance along mesh edges from any of ``seeds`` to every mesh vertex."""
    lengths = np.linalg.norm(template[EDGES[:, 0]] - template[EDGES[:, 1]], axis=1)
    neighbours: list[list[tuple[int, float]]] = [[] for _ in range(MESH_VERTEX_COUNT)]
    for (a, b), length in zip(EDGES.tolist(), lengths.tolist(), strict=True):
        neighbours[a].append((b, length))
        neighbours[b].append((a, length))
    distance = np.full(MESH_VERTEX_COUNT, np.inf)
    queue = [(0.0, int(v)) for v in seeds if v < MESH_VERTEX_COUNT]
    for _, v in queue:
        distance[v] = 0.0
    heapq.heapify(queue)
    while queue:
        d, v = heapq.heappop(queue)
        if d > distance[v]:
            continue
        for n, length in neighbours[v]:
            if d + length < distance[n]:
                distance[n] = d + length
                heapq.heappush(queue, (d + length, n))
    return distance


def falloff_weights(template: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Per-landmark weights: 1 on ``seeds``, falling smoothly to 0 at ``FALLOFF`` over the surface.

    Seeds that are not mesh vertices (the iris landmarks) get weight 1 and spread nowhere.
    """
    weights = np.zeros(LANDMARK_COUNT)
    mesh_seeds = seeds[seeds < MESH_VERTEX_COUNT]
    if mesh_seeds.size:
        t = np.clip(surface_distance(template, mesh_seeds) / FALLOFF, 0.0, 1.0)
        weights[:MESH_VERTEX_COUNT] = 1.0 - t * t * (3.0 - 2.0 * t)
    weights[seeds[seeds >= MESH_VERTEX_COUNT]] = 1.0
    return weights


@dataclass(frozen=True)
class MeshBlend:
    """How much of the patient's geometry each landmark of the mask takes.

    Attributes
    ----------
    shape
        (478,) weight of the patient's own position (1 in the regions kept exactly).
    groups
        For each region kept by position only (a brow): its landmark indices and the (478,)
        weights with which the group's mean displacement moves the surface.
    brows
        Which part of a group's mean displacement moves it: its height, or all of it.
    """

    shape: np.ndarray
    groups: tuple[tuple[np.ndarray, np.ndarray], ...] = ()
    brows: BrowKeeping = BrowKeeping.POSITION


def mesh_blend(
    template: np.ndarray, regions: frozenset[Region] | None, brows: BrowKeeping = BrowKeeping.POSITION
) -> MeshBlend:
    """The blend for the preserved ``regions`` (``None``: the whole face shape is kept).

    The fall-off around the eyelids reaches the lower edge of the brows; with ``brows`` kept by
    height it is faded out towards them (by their own fall-off) so that no brow landmark takes
    any of the patient's position.
    """
    if regions is None:
        return MeshBlend(np.ones(LANDMARK_COUNT))
    exact = [REGION_VERTICES[r] for r in regions if r is not Region.BROWS]
    seeds = np.concatenate(exact) if exact else np.empty(0, dtype=np.int32)
    groups: tuple[tuple[np.ndarray, np.ndarray], ...] = ()
    if Region.BROWS in regions:
        groups = tuple((brow, falloff_weights(template, brow)) for brow in (RIGHT_BROW, LEFT_BROW))
    shape = falloff_weights(template, seeds)
    if brows is BrowKeeping.POSITION:
        return MeshBlend(shape, groups, brows)
    faded = shape < 1.0
    shape[faded] *= 1.0 - falloff_weights(template, np.concatenate([RIGHT_BROW, LEFT_BROW]))[faded]
    return MeshBlend(shape, groups, brows)


def _smoothstep(low: float, high: float, value: np.ndarray) -> np.ndarray:
    """0 below ``low``, 1 above ``high``, a smooth cubic between."""
    t = np.clip((value - low) / (high - low), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def varied_template(template: np.ndarray, variation: np.ndarray, amount: float) -> np.ndarray:
    """The template resized and moved by ``variation`` everywhere but around the eyes.

    A face-recognition model aligns a face on its eye corners and nose; with one template for
    every patient, the template's nose, mouth and outline then sit wherever the patient's own
    proportions put the alignment, the same way in every photo of that patient, and masks of
    the same person can be linked. Changing the template's size and vertical position from photo
    to photo (``variation``: ``VARIATION_VALUES`` values in [-1, 1], scaled by
    ``amount``: a fraction of its size, inter-ocular distances of its position)
    drowns that offset. The change fades out towards the eyes so that the kept eyes and lids
    are not distorted.
    """
    right, left = np.array([-0.5, 0.0]), np.array([0.5, 0.0])
    xy = template[:, :2]
    distance = np.minimum(np.linalg.norm(xy - right, axis=1), np.linalg.norm(xy - left, axis=1))
    fade = _smoothstep(*VARIATION_FADE, distance)
    size, drop = amount * variation[:VARIATION_VALUES]
    return template + fade[:, None] * (size * template + np.array([0.0, drop, 0.0]))


def variation_of(points: np.ndarray) -> np.ndarray:
    """``VARIATION_VALUES`` values in [-1, 1] drawn from the landmarks themselves: the same input
    photo always gets the same variation (deterministic output), another photo of the same
    person another."""
    return _unit_values(hashlib.sha256(np.round(points, 1).astype("<f8").tobytes()).digest())


def keyed_variation(variation: np.ndarray, key: bytes) -> np.ndarray:
    """``variation`` drawn again under a secret ``key`` (HMAC-SHA256, domain ``mask-variation``).

    ``variation_of`` alone can be recomputed by anyone with the code and the original photo,
    who could then undo the variation's offset; under the gateway's key it stays deterministic
    for the gateway and unpredictable for everyone else.
    """
    message = b"mask-variation\x00" + np.asarray(variation, dtype="<f8").tobytes()
    return _unit_values(hmac.new(key, message, hashlib.sha256).digest())


def _unit_values(digest: bytes) -> np.ndarray:
    """``VARIATION_VALUES`` values in [-1, 1] from the first 4 bytes each of a digest."""
    return np.frombuffer(digest[: 4 * VARIATION_VALUES], dtype="<u4") / float(2**32 - 1) * 2.0 - 1.0


def mask_shape(
    points: np.ndarray,
    template: np.ndarray,
    blend: MeshBlend,
    variation: np.ndarray | None = None,
    amount: float = 0.0,
) -> np.ndarray:
    """Vertices (478x3, pixels) of the mask of one face: kept geometry blended into the template.

    ``variation`` scaled by ``amount`` (see :func:`varied_template`) varies the template's
    proportions; None keeps them as they are.
    """
    if variation is not None:
        template = varied_template(template, variation, amount)
    shape, rotation = place_template(template, points)
    displacement = points - shape
    down = rotation @ np.array([0.0, 1.0, 0.0])
    for members, weights in blend.groups:
        offset = displacement[members].mean(axis=0)
        if blend.brows is BrowKeeping.HEIGHT:
            offset = (offset @ down) * down
        shape = shape + weights[:, None] * offset
    return shape + blend.shape[:, None] * (points - shape)
