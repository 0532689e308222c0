"""Face Mesh topology: a surface with three holes (the eyes and the mouth)."""

from __future__ import annotations

import collections
import itertools

import numpy as np

from gateway.mask import topology
from gateway.mask.settings import Region


def test_the_mesh_is_a_disc_with_three_holes() -> None:
    triangles = topology.TRIANGLES
    assert triangles.max() < topology.MESH_VERTEX_COUNT
    edge_use = collections.Counter(
        tuple(sorted(pair)) for triangle in triangles.tolist() for pair in itertools.combinations(triangle, 2)
    )
    assert set(edge_use.values()) == {1, 2}  # a manifold: every edge borders one or two triangles
    euler = topology.MESH_VERTEX_COUNT - len(edge_use) + len(triangles)
    assert euler == 1 - 3
    boundary = {edge for edge, count in edge_use.items() if count == 1}
    rims = [topology.RIGHT_EYE_OPENING, topology.LEFT_EYE_OPENING, topology.MOUTH_OPENING, topology.FACE_OVAL]
    rim_edges = {tuple(sorted((int(r[i]), int(r[(i + 1) % len(r)])))) for r in rims for i in range(len(r))}
    assert boundary == rim_edges


def test_openings_and_regions_have_the_expected_sizes() -> None:
    assert len(topology.RIGHT_EYE_OPENING) == len(topology.LEFT_EYE_OPENING) == 16
    assert len(topology.MOUTH_OPENING) == 20
    assert {33, 133} <= set(topology.RIGHT_EYE_OPENING.tolist())
    assert {263, 362} <= set(topology.LEFT_EYE_OPENING.tolist())
    eyes = ((topology.RIGHT_EYE_OPENING, (33, 159, 133)), (topology.LEFT_EYE_OPENING, (263, 386, 362)))
    for ring, (outer, upper, inner) in eyes:  # the corners, and the upper lid between them
        assert (ring[topology.OUTER_CORNER], ring[topology.INNER_CORNER]) == (outer, inner)
        assert upper in ring[topology.OUTER_CORNER : topology.INNER_CORNER + 1]
    regions = topology.REGION_VERTICES
    assert set(regions[Region.EYES].tolist()) < set(regions[Region.EYELIDS].tolist())
    assert np.array_equal(regions[Region.IRISES], np.arange(468, 478))
