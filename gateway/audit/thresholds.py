"""Pass or fail for the mouth's fidelity, against the noise floor measured in the same run.

How far Face Mesh's mouth reading may move on a release cannot be set in advance: the landmarker
reads a real mouth with some noise that depends on the photos' size and compression. The floor
is measured the same way as every transform: the ``jpeg75`` transform re-encodes each original as
JPEG at quality 75, which changes nothing a clinician reads, and the audit compares the
landmarks re-detected on it with the original's exactly as it does for a mask.

A threshold is the 95th percentile of the floor's per-photo differences: what re-encoding alone
stays within on all but one photo in twenty. A transform passes when its mean difference is at
or below it, i.e. on average it moves the reading no more than compression moves it on nearly
every photo. The mean, not the median, is held to it so that the photos a transform gets badly
wrong count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gateway.audit.fidelity import Fidelity
from gateway.audit.transforms import JpegReencode

#: The transform whose differences are the noise floor.
NOISE_FLOOR = JpegReencode.name
#: Percentile of the floor's per-photo differences that sets a threshold.
NOISE_FLOOR_PERCENTILE = 95.0
#: The fidelity figures held to a threshold: the mouth's opening and its corners' asymmetry.
THRESHOLDED: tuple[str, ...] = ("mouth_aperture_difference", "corner_asymmetry_difference")


@dataclass(frozen=True)
class Verdict:
    """One transform's figure against its threshold.

    Attributes
    ----------
    mean:
        The transform's mean difference over its re-detected photos.
    threshold:
        The noise floor's 95th percentile.
    within:
        Share of the transform's photos whose difference is at or below the threshold.
    """

    mean: float
    threshold: float
    within: float

    @property
    def passed(self) -> bool:
        return self.mean <= self.threshold


def noise_thresholds(floor: Sequence[Fidelity]) -> dict[str, float]:
    """The threshold of each figure in :data:`THRESHOLDED`, from the noise floor's photos."""
    if not floor:
        return {}
    return {
        name: float(np.percentile([getattr(f, name) for f in floor], NOISE_FLOOR_PERCENTILE)) for name in THRESHOLDED
    }


def verdicts(fidelity: Sequence[Fidelity], thresholds: dict[str, float]) -> dict[str, Verdict]:
    """Each thresholded figure of a transform against ``thresholds``; empty without re-detections."""
    if not fidelity:
        return {}
    result = {}
    for name, threshold in thresholds.items():
        values = np.array([getattr(f, name) for f in fidelity])
        result[name] = Verdict(float(values.mean()), threshold, float(np.mean(values <= threshold)))
    return result
