"""What a profile may choose about text burned into the pixels (``Profile.burned_in_text``).

The default redacts: every text line the detector finds, grown by a margin, is filled with a
flat colour after the mask, and fixed regions known to hold a device's overlay are filled
whatever the detector says. ``refuse`` sends instances with text to quarantine instead, and
``keep`` forwards the text as it is: the administrator's explicit choice, recorded per instance.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

Channel = Annotated[int, Field(ge=0, le=255)]
RGB = tuple[Channel, Channel, Channel]
#: ``(x, y, width, height)`` in pixels of the image.
Box = tuple[Annotated[int, Field(ge=0)], Annotated[int, Field(ge=0)], Annotated[int, Field(gt=0)],
            Annotated[int, Field(gt=0)]]


def _compiles(pattern: str | None) -> str | None:
    if pattern is not None:
        re.compile(pattern)
    return pattern


Pattern = Annotated[str, AfterValidator(_compiles)]


class TextAction(StrEnum):
    """What becomes of an instance whose pixels hold text."""

    #: Fill every text region (plus a margin) with ``fill_color``.
    REDACT = "redact"
    #: Quarantine the instance with reason ``burned-in-text``.
    REFUSE = "refuse"
    #: Forward the text as it is (the audit log says so for every instance).
    KEEP = "keep"


class DeviceRegions(BaseModel):
    """Boxes filled on every image of one kind of device, whether text is found there or not.

    Each condition that is set must hold: the text ones are regular expressions matched against
    the whole attribute value, the numbers must be equal.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    manufacturer: Pattern | None = Field(default=None, description="regular expression on Manufacturer (0008,0070)")
    model: Pattern | None = Field(
        default=None, description="regular expression on Manufacturer's Model Name (0008,1090)")
    rows: int | None = Field(default=None, gt=0, description="Rows (0028,0010) must equal this")
    columns: int | None = Field(default=None, gt=0, description="Columns (0028,0011) must equal this")
    sop_class_uid: str | None = Field(default=None, description="SOP Class UID (0008,0016) must equal this")
    boxes: tuple[Box, ...] = Field(min_length=1, description="`[x, y, width, height]` boxes always filled")

    def matches(self, attributes: Mapping[str, object]) -> bool:
        """Whether an instance with these attribute values (by keyword) is of this device."""
        texts = {"Manufacturer": self.manufacturer, "ManufacturerModelName": self.model}
        for keyword, pattern in texts.items():
            if pattern is not None and not re.fullmatch(pattern, str(attributes.get(keyword, "") or "")):
                return False
        numbers = {"Rows": self.rows, "Columns": self.columns, "SOPClassUID": self.sop_class_uid}
        return all(str(attributes.get(keyword, "")) == str(value)
                   for keyword, value in numbers.items() if value is not None)


class TextSettings(BaseModel):
    """Options of the burned-in text step."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: TextAction = Field(
        default=TextAction.REDACT,
        description="text found in the pixels: `redact` fills it, `refuse` quarantines the instance "
        "(reason `burned-in-text`), `keep` forwards it (logged per instance)",
    )
    margin: float = Field(
        default=0.5, ge=0.0, le=2.0,
        description="grow each text line on every side by this fraction of its height (plus 2 pixels) "
        "before filling it",
    )
    fill_color: RGB = Field(default=(0, 0, 0), description="RGB colour the text regions are filled with")
    detection_pixels: int = Field(
        default=600_000, ge=100_000, le=8_000_000,
        description="the most pixels the text detector looks at; larger images are shrunk to it. "
        "More finds smaller text and costs time in proportion",
    )
    device_regions: tuple[DeviceRegions, ...] = Field(
        default=(), description="fixed boxes per device (matched on attributes), filled on every image",
    )
    allow: Pattern | None = Field(
        default=None,
        description="regular expression: a text line the recogniser reads, whole, as matching it with at "
        "least `allow_confidence` is left in place. Off (null) by default",
    )
    allow_confidence: float = Field(
        default=0.98, gt=0.0, le=1.0, description="how sure the recogniser must be for `allow` to apply",
    )
    sample_every: int = Field(
        default=30, ge=1,
        description="frame sequences: look for text in every n-th frame and in every frame where the scene "
        "changes, follow each line found through the frames between (a moving caption); the union of "
        "what was found is filled in all frames",
    )
    scene_change: float = Field(
        default=0.12, gt=0.0, le=1.0,
        description="frame sequences: mean absolute difference (0..1) of a small grey thumbnail from the "
        "last examined frame that makes a frame examined as well",
    )
