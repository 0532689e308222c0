"""``DeidSettings``: what one profile of the gateway does to attributes.

The YAML ``profiles.<name>.deid`` block is validated into this model. The defaults are the Basic
Application Level Confidentiality Profile of PS3.15 Annex E with no option, pseudonymous
patient name and ID, and UIDs remapped under the 2.25 root: usable as-is and the safest choice.
The secret key for pseudonyms is not a setting: the caller passes it as ``bytes`` so that it
never sits in the YAML.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydicom.datadict import dictionary_has_tag, dictionary_VR, tag_for_keyword
from pydicom.tag import BaseTag, Tag

from gateway.deid.options import Option

_TAG_TEXT = re.compile(r"^\(?\s*([0-9A-Fa-f]{4})\s*,?\s*([0-9A-Fa-f]{4})\s*\)?$")
_UID_ROOT = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
#: VRs whose values are written as text, so that a ``replace`` override can set them.
_TEXT_VALUE_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
)
#: A root longer than this leaves fewer than 23 digits (~76 bits) of hash in a 64-character UID.
MAX_UID_ROOT_LENGTH = 40


def parse_tag(value: object) -> BaseTag:
    """Read a public attribute from a keyword (``StudyDescription``) or a tag (``0008,1030``).

    Raises
    ------
    ValueError
        If the text is neither a keyword of the data dictionary nor a tag, or names a private
        or file meta attribute (those have their own rules: the private allow-list and the
        file meta rebuilt by the scrubber).
    """
    if isinstance(value, int) and not isinstance(value, bool):
        tag = Tag(value)
    elif isinstance(value, str):
        match = _TAG_TEXT.match(value.strip())
        if match:
            tag = Tag(int(match[1] + match[2], 16))
        else:
            number = tag_for_keyword(value.strip())
            if number is None:
                raise ValueError(f"{value!r} is neither a DICOM keyword nor a tag (gggg,eeee)")
            tag = Tag(number)
    else:
        raise ValueError(f"expected a keyword or a tag, got {type(value).__name__}")
    if tag.is_private:
        raise ValueError(f"{tag} is private: use private_allow_list")
    if tag.group == 0x0002:
        raise ValueError(f"{tag} is file meta, which the scrubber rebuilds")
    return tag


def _hex_or_int(value: object) -> object:
    if isinstance(value, str):
        return int(value, 16)
    return value


AttributeTag = Annotated[int, BeforeValidator(parse_tag), Field(title="keyword or tag")]


class PrivateAttribute(BaseModel):
    """A private attribute known to be safe: its group, private creator and element byte.

    Private tags move between blocks from one file to the next, so they are named by the
    private creator that reserved the block, not by the block number: ``group: "0009",
    creator: "ACME 1.1", element: "10"`` matches (0009,xx10) in the block ACME 1.1 reserved.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    group: Annotated[
        int, BeforeValidator(_hex_or_int),
        Field(ge=0x0009, le=0xFFFF, title="hex text", description="odd group number, e.g. \"0019\""),
    ]
    creator: Annotated[
        str, Field(min_length=1, max_length=64, description="Private Creator that reserved the block")
    ]
    element: Annotated[
        int, BeforeValidator(_hex_or_int),
        Field(ge=0x00, le=0xFF, title="hex text", description="element byte within the block, e.g. \"10\""),
    ]

    @model_validator(mode="after")
    def _odd_group(self) -> PrivateAttribute:
        if self.group % 2 == 0:
            raise ValueError(f"group {self.group:04X} is not private (private groups are odd)")
        return self


class DeidSettings(BaseModel):
    """Attribute de-identification of one profile: Annex E Basic Profile + options + overrides.

    The overrides (``keep``, ``remove``, ``empty``, ``replace``) apply after the table and the
    options; an attribute may be named in only one of them.
    """

    model_config = ConfigDict(extra="forbid")

    options: tuple[Option, ...] = Field(
        default=(),
        description="Annex E options applied on top of the Basic Profile; the two Retain "
        "Longitudinal Temporal Information options exclude each other",
    )
    keep: tuple[AttributeTag, ...] = Field(
        default=(),
        description="attributes whose value is kept as received (a sequence is still scrubbed "
        "inside; a kept PatientName or PatientID is not pseudonymised)",
    )
    remove: tuple[AttributeTag, ...] = Field(
        default=(), description="attributes removed from the output whatever the table says"
    )
    empty: tuple[AttributeTag, ...] = Field(
        default=(), description="attributes kept in the output with an empty (zero-length) value"
    )
    replace: dict[AttributeTag, str] = Field(
        default_factory=dict,
        description="attributes set to a fixed value (keyword or tag -> value as text); only "
        "attributes whose VR is written as text",
    )
    private_allow_list: tuple[PrivateAttribute, ...] = Field(
        default=(),
        description="private attributes kept under the Retain Safe Private option; every other "
        "private attribute is removed",
    )
    unknown_public: Literal["remove", "keep"] = Field(
        default="remove",
        description="a public attribute that is neither in Table E.1-1 nor used by any standard "
        "IOD (retired or non-composite attributes) is removed, or kept and logged by tag for "
        "every instance",
    )
    uid_root: str = Field(
        default="2.25",
        max_length=MAX_UID_ROOT_LENGTH,
        description="root of remapped UIDs; `2.25` gives the UUID-derived form of PS3.5 B.2",
    )
    patient_pseudonyms: bool = Field(
        default=True,
        description="replace PatientName and PatientID with keyed pseudonyms instead of emptying "
        "them, so that one patient's instances stay linkable without being identifiable",
    )
    max_date_shift_days: int = Field(
        default=730,
        ge=1,
        le=36500,
        description="largest shift of the Modified Dates option; each patient gets a shift of 1 "
        "to this many days into the past, derived from the key",
    )

    @model_validator(mode="after")
    def _consistent(self) -> DeidSettings:
        if not _UID_ROOT.match(self.uid_root):
            raise ValueError(f"uid_root {self.uid_root!r} is not a UID root (digits and dots)")
        dates = {Option.RETAIN_LONGITUDINAL_FULL_DATES, Option.RETAIN_LONGITUDINAL_MODIFIED_DATES}
        if dates <= set(self.options):
            raise ValueError("the full dates and modified dates options exclude each other")
        if self.private_allow_list and Option.RETAIN_SAFE_PRIVATE not in self.options:
            raise ValueError("private_allow_list needs the retain_safe_private option")
        seen: dict[int, str] = {}
        for name, tags in (
            ("keep", self.keep),
            ("remove", self.remove),
            ("empty", self.empty),
            ("replace", tuple(self.replace)),
        ):
            for tag in tags:
                if tag in seen:
                    raise ValueError(f"{Tag(tag)} is in both {seen[tag]} and {name}")
                seen[tag] = name
        for tag in self.replace:
            vr = dictionary_VR(tag) if dictionary_has_tag(tag) else "UN"
            if vr not in _TEXT_VALUE_VRS:
                raise ValueError(f"{Tag(tag)} cannot be replaced by text (VR {vr})")
        return self
