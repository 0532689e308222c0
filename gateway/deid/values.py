"""Values the scrubber puts in place of identifying ones: dummies (D) and cleaned text (C).

A dummy is a fixed, obviously synthetic value valid for its VR: it keeps a Type 1 attribute
present without carrying anything from the input. Cleaning free text (Clean Descriptors,
Clean Structured Content, Clean Graphics) keeps what the text says about the image and blanks
out what would identify: every identifying value of the same instance (names and their parts,
IDs, dates in the usual written forms, UIDs, institution words) and every run of six or more
digits (phone numbers, record numbers). Text written by hand can name people the instance does
not otherwise mention; that is the known limit of automatic cleaning.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: Value Representations whose values are text a person may have typed.
TEXT_VRS = frozenset({"AE", "LO", "LT", "PN", "SH", "ST", "UC", "UT", "UR"})
#: Value Representations of dates and times.
TEMPORAL_VRS = frozenset({"DA", "DT", "TM"})

_DUMMIES: dict[str, object] = {
    "AE": "ANONYMIZED",
    "AS": "000D",
    "CS": "ANONYMIZED",
    "DA": "19000101",
    "DT": "19000101000000",
    "TM": "000000",
    "LO": "ANONYMIZED",
    "LT": "ANONYMIZED",
    "PN": "ANONYMIZED",
    "SH": "ANONYMIZED",
    "ST": "ANONYMIZED",
    "UC": "ANONYMIZED",
    "UT": "ANONYMIZED",
    "UR": "urn:dmask:anonymized",
    "DS": "0",
    "IS": "0",
    "FL": 0.0,
    "FD": 0.0,
    "SL": 0,
    "SS": 0,
    "SV": 0,
    "UL": 0,
    "US": 0,
    "UV": 0,
}
#: Binary VRs get eight zero bytes (a whole number of words of every binary VR).
_BINARY_DUMMY = b"\x00" * 8


def dummy_value(vr: str) -> object:
    """A non-empty dummy value for ``vr`` (PS3.15 action D). UI is remapped, not dummied."""
    return _DUMMIES.get(vr, _BINARY_DUMMY)


_DIGIT_RUN = r"\d{6,}"
_BOUNDARY_BEFORE = r"(?<![0-9A-Za-z])"
_BOUNDARY_AFTER = r"(?![0-9A-Za-z])"


def date_spellings(value: str) -> list[str]:
    """The usual written forms of a DA (or the date part of a DT) value."""
    digits = value.strip()[:8]
    if len(digits) != 8 or not digits.isdigit():
        return []
    y, m, d = digits[:4], digits[4:6], digits[6:]
    return [digits, f"{y}-{m}-{d}", f"{y}/{m}/{d}", f"{d}.{m}.{y}", f"{d}/{m}/{y}", f"{m}/{d}/{y}"]


def identifying_tokens(vr: str, value: str) -> list[str]:
    """The pieces of an identifying value that cleaned text must not contain.

    Whole values always; for person names also their parts of two or more characters (a
    family name alone is identifying, and many are two letters long); for dates their written
    forms. Other values are not split: the words of an institution's name ("Eye", "Hospital") say nothing alone.
    """
    value = value.strip()
    if not value:
        return []
    if vr in ("DA", "DT"):
        return date_spellings(value)
    tokens = [value]
    if vr == "PN":
        tokens += [w for w in re.split(r"[\s^=,.]+", value) if len(w) >= 2]
    return tokens


class TextCleaner:
    """Blanks identifying tokens out of free text (action C on text VRs).

    Parameters
    ----------
    tokens
        Identifying strings of the instance (see ``identifying_tokens``).
    """

    def __init__(self, tokens: Iterable[str]) -> None:
        unique = sorted({t for t in tokens if len(t) >= 2}, key=len, reverse=True)
        alternatives = [re.escape(t) for t in unique] + [_DIGIT_RUN]
        self._pattern = re.compile(
            _BOUNDARY_BEFORE + "(?:" + "|".join(alternatives) + ")" + _BOUNDARY_AFTER,
            re.IGNORECASE,
        )

    def clean(self, text: str) -> str:
        """``text`` with every identifying token replaced by asterisks of the same length."""
        return self._pattern.sub(lambda m: "*" * len(m[0]), text)
