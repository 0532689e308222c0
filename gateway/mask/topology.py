"""Face Mesh topology: triangles, openings and the named regions of the 478 landmarks.

Everything here depends only on mediapipe's fixed landmark numbering, never on a face, so it is
computed once at import. The mesh is triangulated from ``FACEMESH_TESSELATION`` (an edge list):
its triangles are the 3-cliques of the edge graph that are real faces of the surface. The eye
and mouth openings are holes in that surface; their rims are ordered into closed polygons so
that the eyes and the mouth can be drawn (or kept) inside them.

Left and right are the subject's: the subject's left eye appears on the right of the image.
"""

from __future__ import annotations

import collections
import itertools

import numpy as np
from mediapipe.python.solutions import face_mesh_connections as connections

from gateway.mask.settings import Region

#: Landmarks of the surface mesh; the 10 iris landmarks follow them.
MESH_VERTEX_COUNT = 468
#: All landmarks of Face Mesh with ``refine_landmarks=True``.
LANDMARK_COUNT = 478

RIGHT_IRIS_CENTRE = 468
LEFT_IRIS_CENTRE = 473
#: Iris landmarks per eye: centre, then the four points on the limbus.
RIGHT_IRIS = np.arange(468, 473)
LEFT_IRIS = np.arange(473, 478)


def _edges(pairs: frozenset[tuple[int, int]]) -> set[tuple[int, int]]:
    return {(min(a, b), max(a, b)) for a, b in pairs}


def _vertices(pairs: frozenset[tuple[int, int]]) -> np.ndarray:
    return np.array(sorted({v for pair in pairs for v in pair}), dtype=np.int32)


def _ring(pairs: frozenset[tuple[int, int]]) -> np.ndarray:
    """Order the edges of a closed contour into a polygon (a cycle of vertex indices)."""
    neighbours: dict[int, list[int]] = collections.defaultdict(list)
    for a, b in _edges(pairs):
        neighbours[a].append(b)
        neighbours[b].append(a)
    start = min(neighbours)
    ring, previous = [start], None
    while True:
        current = ring[-1]
        following = next(v for v in sorted(neighbours[current]) if v != previous)
        if following == start:
            break
        ring.append(following)
        previous = current
    return np.array(ring, dtype=np.int32)


def _triangles() -> np.ndarray:
    """Triangles of the tessellation (winding is not consistent; the renderer does not need it).

    A 3-clique of the edge graph is a face of the surface unless all three of its edges are
    already shared by two other faces (the few spurious cliques that close over a fold).
    """
    edges = _edges(connections.FACEMESH_TESSELATION)
    adjacency: dict[int, set[int]] = collections.defaultdict(set)
    for a, b in edges:
        adjacency[a].add(b)
        adjacency[b].add(a)
    cliques = sorted({tuple(sorted((a, b, c))) for a, b in edges for c in adjacency[a] & adjacency[b]})
    use = collections.Counter(e for t in cliques for e in itertools.combinations(t, 2))
    faces = [t for t in cliques if not all(use[e] > 2 for e in itertools.combinations(t, 2))]
    return np.array(faces, dtype=np.int32)


def _adjacency() -> dict[int, set[int]]:
    """Neighbours of each mesh vertex along the tessellation's edges."""
    adjacency: dict[int, set[int]] = collections.defaultdict(set)
    for a, b in _edges(connections.FACEMESH_TESSELATION):
        adjacency[a].add(b)
        adjacency[b].add(a)
    return adjacency


def within_hops(seed: np.ndarray, count: int) -> np.ndarray:
    """Vertices within ``count`` edges of ``seed`` on the mesh."""
    adjacency = _adjacency()
    reached = set(int(v) for v in seed)
    frontier = set(reached)
    for _ in range(count):
        frontier = {n for v in frontier for n in adjacency[v]} - reached
        reached |= frontier
    return np.array(sorted(reached), dtype=np.int32)


def enclosed(seed: np.ndarray, border: np.ndarray) -> np.ndarray:
    """Vertices reachable from ``seed`` along mesh edges without passing ``border`` (which is
    reached, and included, but not crossed)."""
    adjacency = _adjacency()
    stop = set(int(v) for v in border)
    reached = set(int(v) for v in seed) | stop
    frontier = set(int(v) for v in seed) - stop
    while frontier:
        frontier = {n for v in frontier for n in adjacency[v]} - reached
        reached |= frontier
        frontier -= stop
    return np.array(sorted(reached), dtype=np.int32)


#: (852, 3) vertex indices of the surface triangles (eyes and mouth are holes).
TRIANGLES = _triangles()
#: Unique mesh edges as (E, 2) index pairs, for distances over the surface.
EDGES = np.array(sorted(_edges(connections.FACEMESH_TESSELATION)), dtype=np.int32)

#: Eyelid margins as closed polygons: the openings through which the eyes are seen.
RIGHT_EYE_OPENING = _ring(connections.FACEMESH_RIGHT_EYE)
LEFT_EYE_OPENING = _ring(connections.FACEMESH_LEFT_EYE)
#: Positions of the outer and inner corner in either eye opening: each ring runs from just below
#: the outer corner along the upper lid to the inner corner, then back along the lower lid.
OUTER_CORNER, INNER_CORNER = 1, 9
_INNER_LIP = frozenset({78, 95, 88, 178, 87, 14, 317, 402, 318, 324,
                        308, 415, 310, 311, 312, 13, 82, 81, 80, 191})
#: Inner lip contour: the mouth opening.
MOUTH_OPENING = _ring(frozenset(p for p in connections.FACEMESH_LIPS if set(p) <= _INNER_LIP))
#: The opening's upper and lower rim, each from the subject's right inner corner to the left.
UPPER_INNER_LIP = np.array([78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308], dtype=np.int32)
LOWER_INNER_LIP = np.array([78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308], dtype=np.int32)
#: Mid upper and mid lower inner-lip point: how far the mouth is open.
INNER_LIP_MIDPOINTS = (13, 14)
#: The subject's right and left mouth corner (outer lip contour).
MOUTH_CORNERS = (61, 291)
#: Outline of the face mesh.
FACE_OVAL = _ring(connections.FACEMESH_FACE_OVAL)

RIGHT_BROW = _vertices(connections.FACEMESH_RIGHT_EYEBROW)
LEFT_BROW = _vertices(connections.FACEMESH_LEFT_EYEBROW)
LIPS = _vertices(connections.FACEMESH_LIPS)
#: The lips' whole surface: the inner and outer lip contours (``LIPS``) and the two rings of
#: vertices between them.
LIP_SURFACE = enclosed(MOUTH_OPENING, np.setdiff1d(LIPS, MOUTH_OPENING))

_EYE_RIMS = np.concatenate([RIGHT_EYE_OPENING, LEFT_EYE_OPENING])
#: Rings of mesh vertices around the lid margins that make up the eyelids (margin to crease).
EYELID_RINGS = 2
#: The eyes and two rings of skin around them (not reaching the brows): the head pose is
#: derived from these.
EYE_SURROUNDINGS = within_hops(_EYE_RIMS, 2)

#: Landmarks of each region (mesh vertices and, for irises, the refined iris points).
REGION_VERTICES: dict[Region, np.ndarray] = {
    Region.EYES: _EYE_RIMS,
    Region.EYELIDS: within_hops(_EYE_RIMS, EYELID_RINGS),
    Region.IRISES: np.concatenate([RIGHT_IRIS, LEFT_IRIS]),
    Region.BROWS: np.concatenate([RIGHT_BROW, LEFT_BROW]),
    Region.MOUTH: within_hops(LIPS, 1),
}
