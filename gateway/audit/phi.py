"""``dmask audit phi``: find identifying values of an input that survive in its output.

The check is independent of how the scrubber works: it takes every value of the input's
identifying attributes (every attribute Table E.1-1 does not keep in the Basic Profile, every
person name, every private value, the identifying file meta) and looks for it everywhere in the
output: every element at every depth and the file meta, as text (case-insensitive, as a whole
token) and inside binary values (UTF-8 and UTF-16 bytes). Pixel Data is not searched: text
burned into the image is a pixel matter. Values shorter than three characters are not searched
(they would match everywhere), except the parts of person names (a family name can be two
letters long), which are matched as whole words only.

Given the profile that made the output, the audit does not report what the profile keeps on
purpose (Retain options, ``keep`` overrides, allow-listed private attributes, cleaned text),
so that an admin sees the leaks, not the choices.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from gateway.deid.plan import ScrubPlan
from gateway.deid.table import load_table
from gateway.deid.values import date_spellings

#: Shortest value searched for; parts of person names from two characters on.
MIN_LENGTH = 3
MIN_NAME_PART_LENGTH = 2
PIXEL_DATA = 0x7FE00010
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
#: File meta attributes outside Table E.1-1 that name the sender or carry private data.
_IDENTIFYING_META = frozenset({0x00020016, 0x00020017, 0x00020018, 0x00020102})
_BOUNDED = r"(?<![0-9A-Za-z.]){}(?![0-9A-Za-z.])"


@dataclass(frozen=True)
class IdentifyingValue:
    """A value of the input that must not appear in the output."""

    attribute: str  #: where it was in the input (``Keyword`` or ``Seq[0].Keyword``)
    value: str


@dataclass(frozen=True)
class Leak:
    """An identifying value of the input found in the output."""

    attribute: str  #: where the value was in the input
    found_in: str  #: where it was found in the output
    value: str  #: the value (shown only on request: it is patient data)


def _elements(ds: Dataset, path: str = "") -> Iterator[tuple[str, DataElement]]:
    """Every element of ``ds`` at every depth (file meta first), with its path."""
    meta = getattr(ds, "file_meta", None) if not path else None
    if meta is not None:
        for elem in meta:
            yield elem.keyword or str(elem.tag), elem
    for elem in ds:
        name = f"{path}{elem.keyword or elem.tag}"
        yield name, elem
        if elem.VR == "SQ":
            for index, item in enumerate(elem.value):
                yield from _elements(item, f"{name}[{index}].")


def _texts(elem: DataElement) -> list[str]:
    if elem.VR in _BINARY_VRS or elem.VR == "SQ" or elem.value is None:
        return []
    values = elem.value if isinstance(elem.value, MultiValue) else [elem.value]
    texts = []
    for value in values:
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        texts.append(str(value).strip("\x00 "))
    return [t for t in texts if t]


def _retained(plan: ScrubPlan | None) -> frozenset[int]:
    """Tags the profile keeps or cleans on purpose, or sets to a fixed value."""
    if plan is None:
        return frozenset()
    kept = (tag for tag, code in plan.codes.items() if code in ("K", "C"))
    return frozenset(kept) | frozenset(plan.replacements)


def identifying_values(original: Dataset, plan: ScrubPlan | None = None) -> list[IdentifyingValue]:
    """The values of ``original`` that must not survive de-identification.

    Parameters
    ----------
    original
        The input dataset (with its file meta).
    plan
        The profile that made the output: its deliberate keeps are then not reported.
    """
    rows = load_table().rows
    retained = _retained(plan)
    allowed_private = plan.private_allow_list if plan is not None else frozenset()
    found: list[IdentifyingValue] = []
    for name, elem in _elements(original):
        tag = elem.tag
        group = tag >> 16
        if tag in _IDENTIFYING_META or (not group & 1 and group >> 8 in (0x50, 0x60)):
            identifying = True  # sender AE titles, private meta; curves and overlays
        elif group & 1:
            identifying = (tag & 0xFF00) != 0 and not _allow_listed(original, tag, allowed_private)
        else:
            row = rows.get(tag)
            identifying = (row is not None and row.basic != "K") or elem.VR == "PN"
            # A cleaned date is shifted: the original must still not appear.
            if plan is not None and tag in retained and not (elem.VR in ("DA", "DT") and plan.codes.get(tag) == "C"):
                identifying = False
        if not identifying:
            continue
        for text in _texts(elem):
            pieces = [text] if len(text) >= MIN_LENGTH else []
            if elem.VR == "PN":
                pieces += [p for p in re.split(r"[\^=\s]+", text) if len(p) >= MIN_NAME_PART_LENGTH]
            if elem.VR in ("DA", "DT"):
                pieces += date_spellings(text)
            found += [
                IdentifyingValue(name, p) for p in dict.fromkeys(pieces) if any(c.isalnum() for c in p)
            ]
        if elem.VR in _BINARY_VRS and isinstance(elem.value, bytes) and len(elem.value) >= 4:
            found.append(IdentifyingValue(name, elem.value.decode("latin-1")))
    return found


def _allow_listed(ds: Dataset, tag: int, allowed: frozenset[tuple[int, str, int]]) -> bool:
    """Whether a top-level private element is on the profile's allow-list."""
    if not allowed:
        return False
    creator = ds.get((tag & 0xFFFF0000) | ((tag >> 8) & 0xFF))
    return creator is not None and (tag >> 16, str(creator.value).strip(), tag & 0xFF) in allowed


def find_leaks(original: Dataset, deidentified: Dataset, plan: ScrubPlan | None = None) -> list[Leak]:
    """Every identifying value of ``original`` that appears in ``deidentified``.

    Parameters
    ----------
    original
        The input of de-identification.
    deidentified
        Its output.
    plan
        The profile that made the output, to leave out what it keeps on purpose.
    """
    needles = identifying_values(original, plan)
    if not needles:
        return []
    # One pass per text value: an alternation of every needle, longest first.
    by_text: dict[str, list[IdentifyingValue]] = {}
    for n in needles:
        by_text.setdefault(n.value.casefold(), []).append(n)
    alternatives = "|".join(re.escape(t) for t in sorted(by_text, key=len, reverse=True))
    pattern = re.compile(_BOUNDED.format(f"(?:{alternatives})"), re.IGNORECASE)
    byte_forms = [
        (n, [n.value.encode("latin-1", "ignore"), n.value.encode("utf-16-le")])
        for n in needles
        if len(n.value) >= 4
    ]
    leaks: list[Leak] = []
    for name, elem in _elements(deidentified):
        if elem.tag == PIXEL_DATA or elem.VR == "SQ":
            continue
        if elem.VR in _BINARY_VRS:
            data = elem.value if isinstance(elem.value, bytes) else b""
            leaks += [
                Leak(n.attribute, name, n.value)
                for n, forms in byte_forms
                if any(f and f in data for f in forms)
            ]
            continue
        for text in _texts(elem):
            for match in pattern.finditer(text):
                leaks += [Leak(n.attribute, name, n.value) for n in by_text.get(match[0].casefold(), [])]
    return list(dict.fromkeys(leaks))


def pair_files(original: Path, deidentified: Path) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """Pair inputs with outputs: two files, or two folders by relative path.

    Returns the pairs and the inputs that have no output (a failed or skipped file).
    """
    if not original.is_dir():
        return [(original, deidentified)], []
    pairs, unpaired = [], []
    for source in sorted(p for p in original.rglob("*") if p.is_file()):
        relative = source.relative_to(original)
        target = deidentified / relative
        if not target.is_file():
            target = deidentified / original.name / relative  # the layout of ``dmask deid``
        if target.is_file():
            pairs.append((source, target))
        else:
            unpaired.append(source)
    return pairs, unpaired


def audit_pairs(
    pairs: list[tuple[Path, Path]], plan: ScrubPlan | None = None
) -> list[tuple[Path, list[Leak]]]:
    """Leaks of every (original, de-identified) file pair, by original path."""
    from gateway.dicom.read import read_instance

    return [(a, find_leaks(read_instance(a), read_instance(b), plan)) for a, b in pairs]
