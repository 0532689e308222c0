"""Thresholds from the noise floor, and a transform's figures against them."""

from __future__ import annotations

import pytest

from gateway.audit.fidelity import Fidelity
from gateway.audit.thresholds import THRESHOLDED, noise_thresholds, verdicts


def fidelity(mouth: float, corners: float) -> Fidelity:
    return Fidelity(0.0, 0.0, 0.0, 0.0, mouth_aperture_difference=mouth, corner_asymmetry_difference=corners)


def test_a_threshold_is_the_95th_percentile_of_the_floor() -> None:
    floor = [fidelity(i / 1000, i / 2000) for i in range(101)]  # 0 .. 0.1 and 0 .. 0.05
    thresholds = noise_thresholds(floor)
    assert set(thresholds) == set(THRESHOLDED)
    assert thresholds["mouth_aperture_difference"] == pytest.approx(0.095)
    assert thresholds["corner_asymmetry_difference"] == pytest.approx(0.0475)
    assert noise_thresholds([]) == {}


def test_a_transform_passes_on_its_mean_and_the_share_within_is_shown() -> None:
    thresholds = {"mouth_aperture_difference": 0.01, "corner_asymmetry_difference": 0.01}
    # One photo badly wrong: the median would pass, the mean does not.
    found = verdicts([fidelity(0.002, 0.0), fidelity(0.004, 0.0), fidelity(0.05, 0.03)], thresholds)
    mouth, corners = found["mouth_aperture_difference"], found["corner_asymmetry_difference"]
    assert mouth.mean == pytest.approx(0.056 / 3) and not mouth.passed and mouth.within == pytest.approx(2 / 3)
    assert corners.passed and corners.mean == pytest.approx(0.01)  # at the threshold passes
    assert verdicts([], thresholds) == {}
