"""The options of the PS3.15 Annex E Basic Application Level Confidentiality Profile.

Each option has three names that must never drift apart: the key used in the YAML profile, the
column of Table E.1-1 that holds its actions, and its code in PS3.16 CID 7050 (coding scheme
DCM) that goes into the De-identification Method Code Sequence when it has been applied. They
are kept together here so that the table generator, the settings and the scrubber share them.
"""

from __future__ import annotations

from enum import Enum
from typing import NamedTuple


class MethodCode(NamedTuple):
    """A CID 7050 "De-identification Method" code (coding scheme designator DCM)."""

    value: str
    meaning: str


BASIC_PROFILE = MethodCode("113100", "Basic Application Confidentiality Profile")
CLEAN_PIXEL_DATA = MethodCode("113101", "Clean Pixel Data Option")
CLEAN_RECOGNIZABLE_VISUAL_FEATURES = MethodCode(
    "113102", "Clean Recognizable Visual Features Option"
)


class Option(str, Enum):
    """An Annex E option a profile can choose, by its YAML name."""

    RETAIN_SAFE_PRIVATE = "retain_safe_private"
    RETAIN_UIDS = "retain_uids"
    RETAIN_DEVICE_IDENTITY = "retain_device_identity"
    RETAIN_INSTITUTION_IDENTITY = "retain_institution_identity"
    RETAIN_PATIENT_CHARACTERISTICS = "retain_patient_characteristics"
    RETAIN_LONGITUDINAL_FULL_DATES = "retain_longitudinal_full_dates"
    RETAIN_LONGITUDINAL_MODIFIED_DATES = "retain_longitudinal_modified_dates"
    CLEAN_DESCRIPTORS = "clean_descriptors"
    CLEAN_STRUCTURED_CONTENT = "clean_structured_content"
    CLEAN_GRAPHICS = "clean_graphics"

    @property
    def column(self) -> str:
        """Key of this option's column in the innolitics extraction of Table E.1-1."""
        return _COLUMNS[self]

    @property
    def code(self) -> MethodCode:
        """The CID 7050 code recorded when this option has been applied."""
        return _CODES[self]


_COLUMNS = {
    Option.RETAIN_SAFE_PRIVATE: "rtnSafePrivOpt",
    Option.RETAIN_UIDS: "rtnUIDsOpt",
    Option.RETAIN_DEVICE_IDENTITY: "rtnDevIdOpt",
    Option.RETAIN_INSTITUTION_IDENTITY: "rtnInstIdOpt",
    Option.RETAIN_PATIENT_CHARACTERISTICS: "rtnPatCharsOpt",
    Option.RETAIN_LONGITUDINAL_FULL_DATES: "rtnLongFullDatesOpt",
    Option.RETAIN_LONGITUDINAL_MODIFIED_DATES: "rtnLongModifDatesOpt",
    Option.CLEAN_DESCRIPTORS: "cleanDescOpt",
    Option.CLEAN_STRUCTURED_CONTENT: "cleanStructContOpt",
    Option.CLEAN_GRAPHICS: "cleanGraphOpt",
}

_CODES = {
    Option.RETAIN_SAFE_PRIVATE: MethodCode("113111", "Retain Safe Private Option"),
    Option.RETAIN_UIDS: MethodCode("113110", "Retain UIDs Option"),
    Option.RETAIN_DEVICE_IDENTITY: MethodCode("113109", "Retain Device Identity Option"),
    Option.RETAIN_INSTITUTION_IDENTITY: MethodCode("113112", "Retain Institution Identity Option"),
    Option.RETAIN_PATIENT_CHARACTERISTICS: MethodCode(
        "113108", "Retain Patient Characteristics Option"
    ),
    Option.RETAIN_LONGITUDINAL_FULL_DATES: MethodCode(
        "113106", "Retain Longitudinal Temporal Information Full Dates Option"
    ),
    Option.RETAIN_LONGITUDINAL_MODIFIED_DATES: MethodCode(
        "113107", "Retain Longitudinal Temporal Information Modified Dates Option"
    ),
    Option.CLEAN_DESCRIPTORS: MethodCode("113105", "Clean Descriptors Option"),
    Option.CLEAN_STRUCTURED_CONTENT: MethodCode("113104", "Clean Structured Content Option"),
    Option.CLEAN_GRAPHICS: MethodCode("113103", "Clean Graphics Option"),
}
