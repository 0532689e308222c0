"""MaskSettings: usable defaults, strict keys, validated values."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.mask.settings import BackgroundPolicy, EyeRendering, MaskSettings, Region


def test_defaults_keep_the_eyes_render_them_and_fill_the_background() -> None:
    settings = MaskSettings()
    assert settings.preserved_regions() == {Region.EYES, Region.EYELIDS, Region.IRISES, Region.BROWS}
    assert settings.eyes is EyeRendering.RENDERED
    assert settings.background is BackgroundPolicy.FILL
    assert settings.residual_check


def test_yaml_style_values_are_parsed() -> None:
    settings = MaskSettings.model_validate(
        {"preserve": ["eyes", "irises", "mouth"], "eyes": "original", "background": "blur", "fill_color": [0, 0, 0]}
    )
    assert settings.preserved_regions() == {Region.EYES, Region.IRISES, Region.MOUTH}
    assert settings.background is BackgroundPolicy.BLUR
    assert MaskSettings.model_validate({"preserve": "all"}).preserved_regions() is None


@pytest.mark.parametrize(
    "values",
    [
        {"unknown": 1},
        {"preserve": ["nose"]},
        {"background": "transparent"},
        {"fill_color": [256, 0, 0]},
        {"skin_albedo": [10, 10]},
        {"max_faces": 0},
        {"detection_confidence": 1.5},
        {"max_gap_frames": -1},
    ],
)
def test_invalid_settings_are_refused(values: dict) -> None:
    with pytest.raises(ValidationError):
        MaskSettings.model_validate(values)
