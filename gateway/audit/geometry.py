"""The geometry attacker: who is this, from the shape of the eyes, irises and brows alone?

The mask keeps the patient's eyelids, irises and brow positions on purpose, and a face recogniser
trained on textures may not use what is left; an attacker who knows that would compare the kept
landmarks themselves. This one does: Face Mesh's landmarks of a kept region, found on the released
image, are brought into a canonical pose by a similarity transform (centred on their mean, turned
so that the line through the iris centres is horizontal, scaled to unit root-mean-square size)
and compared, nearest neighbour, with the same region of the candidates. Head pose, photo size
and position cancel; what remains is the region's own shape, which is what the mask keeps.

Each region is attacked alone, so that the report shows what keeping it costs, and all of them
together. Landmark indices are the audit's own (``gateway.audit.fidelity``), not the mask's.
"""

from __future__ import annotations

import numpy as np

from gateway.audit.fidelity import LEFT_EYE, LEFT_EYELID, LEFT_IRIS, RIGHT_EYE, RIGHT_EYELID, RIGHT_IRIS, iris_centre

#: Face Mesh's brow landmarks (``FACEMESH_RIGHT_EYEBROW`` and ``FACEMESH_LEFT_EYEBROW``).
RIGHT_BROW: tuple[int, ...] = (46, 52, 53, 55, 63, 65, 66, 70, 105, 107)
LEFT_BROW: tuple[int, ...] = (276, 282, 283, 285, 293, 295, 296, 300, 334, 336)
#: The kept regions the attacker compares, each alone, and all together (``eyes-irises-brows``).
GEOMETRY_REGIONS: dict[str, tuple[int, ...]] = {
    "eyelids": RIGHT_EYELID + LEFT_EYELID,
    "irises": RIGHT_IRIS + LEFT_IRIS,
    "brows": RIGHT_BROW + LEFT_BROW,
}
GEOMETRY_REGIONS["eyes-irises-brows"] = tuple(index for region in GEOMETRY_REGIONS.values() for index in region)


def geometry_signature(landmarks: np.ndarray, region: tuple[int, ...]) -> np.ndarray:
    """The region's landmarks (of ``(478, 2)`` pixels) in the canonical pose, flattened."""
    right, left = iris_centre(landmarks, RIGHT_EYE), iris_centre(landmarks, LEFT_EYE)
    along = (left - right) / np.linalg.norm(left - right)
    turn = np.array([along, [-along[1], along[0]]])
    points = landmarks[list(region)]
    centred = (points - points.mean(axis=0)) @ turn.T
    return (centred / np.sqrt((centred**2).sum(axis=1).mean())).ravel()


def geometry_signatures(landmarks: np.ndarray | None) -> dict[str, np.ndarray | None]:
    """Every region's signature, keyed ``geometry:REGION``; None each when there are no landmarks."""
    return {
        f"geometry:{name}": None if landmarks is None else geometry_signature(landmarks, region)
        for name, region in GEOMETRY_REGIONS.items()
    }
