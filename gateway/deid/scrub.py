"""Apply a de-identification profile to one dataset.

``scrub`` walks every element of the input once, at every depth, and builds a new dataset from
what the profile lets through: Table E.1-1 actions under the chosen options and overrides
(compound actions resolved for the IOD in hand), private attributes only when allow-listed,
overlay and curve groups never, unknown public attributes only when the profile says so. UIDs
are remapped and patients pseudonymised with the caller's key. The input is not modified.
"""

from __future__ import annotations

import copy
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from functools import cached_property
from typing import TypeVar

from pydicom.datadict import dictionary_has_tag, dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement, RawDataElement, empty_value_for_VR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag
from pydicom.uid import UID

from gateway import __version__
from gateway.deid.marking import mark
from gateway.deid.options import Option
from gateway.deid.plan import PATIENT_NAME, ScrubPlan, compile_plan
from gateway.deid.pseudonym import Pseudonymizer, pseudonymizer
from gateway.deid.settings import DeidSettings
from gateway.deid.table import Action, resolve
from gateway.deid.temporal import age_string, shift_date, shift_datetime
from gateway.deid.values import TEMPORAL_VRS, TEXT_VRS, TextCleaner, dummy_value, identifying_tokens
from gateway.errors import DeidentificationError

log = logging.getLogger(__name__)

#: Implementation Class UID of the files dmask writes: the 2.25 form of a name-based UUID.
IMPLEMENTATION_CLASS_UID = UID(f"2.25.{uuid.uuid5(uuid.NAMESPACE_URL, 'dmask').int}")
IMPLEMENTATION_VERSION_NAME = f"DMASK_{__version__}"[:16]


class _Mode(Enum):
    """How attributes without a table row are treated inside a sequence."""

    NORMAL = "normal"  #: kept as they are
    DUMMY = "dummy"  #: inside a D sequence: text replaced by dummies
    CLEAN = "clean"  #: inside a C sequence: text cleaned


def scrub(
    ds: Dataset,
    settings: DeidSettings,
    secret: bytes,
    *,
    pixels_masked: bool,
    profile_name: str | None = None,
    text_cleaned: bool | None = None,
) -> Dataset:
    """Return the de-identified copy of ``ds``.

    Parameters
    ----------
    ds
        The input dataset (with ``file_meta`` when read from a file); not modified.
    settings
        The profile's de-identification settings.
    secret
        Key of the pseudonyms (UIDs, patient name and ID, date shifts).
    pixels_masked
        Whether the pixel pipeline replaced the faces; only then does the output say
        Recognizable Visual Features NO.
    profile_name
        Name of the profile, recorded in DeidentificationMethod.
    text_cleaned
        Whether the burned-in text step ran and its verification found no text left (True), ran
        and still finds text (False), or did not run (None); see :func:`gateway.deid.marking.mark`.

    Returns
    -------
    pydicom.dataset.Dataset
        A new dataset sharing no mutable element with ``ds``, with a new file meta whose
        Media Storage SOP Instance UID follows the remapped SOP Instance UID.

    Raises
    ------
    DeidentificationError
        If the key is unusable.
    """
    plan = compile_plan(settings)
    try:
        names = pseudonymizer(secret, settings.uid_root)
    except ValueError as exc:
        raise DeidentificationError(str(exc)) from None
    walk = _Walk(plan, names, ds)
    out = walk.dataset(ds, "", _Mode.NORMAL)
    if Option.RETAIN_PATIENT_CHARACTERISTICS in plan.options and "PatientAge" not in out:
        walk.add_patient_age(out)
    mark(out, ds, plan, pixels_masked=pixels_masked, profile_name=profile_name, text_cleaned=text_cleaned)
    out.file_meta = walk.file_meta(out)
    if getattr(ds, "preamble", None) is not None:
        out.preamble = b"\x00" * 128
    return out


def _vr(elem: DataElement | RawDataElement) -> str:
    """VR of an element; a raw element of an implicit VR dataset takes it from the dictionary."""
    vr = str(elem.VR) if elem.VR else dictionary_VR(elem.tag) if dictionary_has_tag(elem.tag) else "UN"
    return vr.split(" or ")[0]  # an ambiguous VR ("US or SS") of an implicit VR dataset


_Element = TypeVar("_Element", bound=DataElement | RawDataElement)


def _unshared(elem: _Element) -> _Element:
    """An element the output may own: raw elements are immutable, decoded ones are copied
    (with their list of values, which is mutable; a bytes value is not and is shared)."""
    if isinstance(elem, RawDataElement):
        return elem
    return copy.deepcopy(elem) if isinstance(elem.value, MultiValue) else copy.copy(elem)


@dataclass
class _Walk:
    """State of one scrub: the plan, the key, and facts derived once from the input."""

    plan: ScrubPlan
    names: Pseudonymizer
    source: Dataset

    def __post_init__(self) -> None:
        sop_class = str(self.source.get("SOPClassUID", "") or "")
        if not sop_class:
            sop_class = str(self.meta.get("MediaStorageSOPClassUID", "") or "")
        self.types = self.plan.table.attribute_types(sop_class)
        self.retain_uids = Option.RETAIN_UIDS in self.plan.options
        self.shift_dates = Option.RETAIN_LONGITUDINAL_MODIFIED_DATES in self.plan.options

    @cached_property
    def meta(self) -> FileMetaDataset:
        """The input's file meta (empty when it was received without one)."""
        return getattr(self.source, "file_meta", None) or FileMetaDataset()

    @cached_property
    def patient(self) -> str:
        """Key of the patient: the original Patient ID, else the name ('' when neither)."""
        for keyword in ("PatientID", "PatientName"):
            value = str(self.source.get(keyword, "") or "").strip()
            if value:
                return value
        return ""

    @cached_property
    def shift_days(self) -> int:
        return self.names.date_shift_days(self.patient, self.plan.settings.max_date_shift_days)

    @cached_property
    def cleaner(self) -> TextCleaner:
        """Built on first use: only profiles with a Clean option or D sequences need it."""
        tokens: list[str] = []
        for raw in self.source.elements():
            code = self.plan.codes.get(raw.tag)
            if code is None or code in ("K", "C") or _vr(raw) in ("SQ", "CS"):
                continue
            elem = self.source[raw.tag]
            if not elem.value:
                continue
            values = elem.value if isinstance(elem.value, MultiValue) else [elem.value]
            for value in values:
                if isinstance(value, (str, bytes)) or elem.VR == "PN":
                    text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
                    tokens += identifying_tokens(elem.VR, text)
        return TextCleaner(tokens)

    # -- datasets -------------------------------------------------------------------------

    def dataset(self, source: Dataset, path: str, mode: _Mode) -> Dataset:
        """Scrub one dataset (the top level or a sequence item) at ``path``.

        Elements are looked at unconverted (``Dataset.elements``) and only decoded when their
        value matters; kept values stay raw, so that writing in the input's encoding copies
        their bytes instead of decoding and re-encoding them.
        """
        out = Dataset()
        implicit, little = source.original_encoding
        if implicit is not None and little is not None:
            out.set_original_encoding(implicit, little, source.original_character_set)
        private_blocks: set[int] = set()
        for raw in source.elements():
            tag = raw.tag
            group = tag >> 16
            if tag & 0xFFFF == 0 or (not group & 1 and group >> 8 in (0x50, 0x60)):
                continue  # group lengths; curves (50xx) and overlays (60xx): bitmaps nobody can clean
            kept: DataElement | RawDataElement | None
            if group & 1:
                kept = self.private(tag, source, path)
                if kept is not None:
                    out[tag] = kept
                    private_blocks.add((group << 16) | ((tag >> 8) & 0xFF))
                continue
            kept = self.public(raw, source, path, mode)
            if kept is not None:
                out[tag] = kept
        for creator_tag in private_blocks:
            out[creator_tag] = source.get_item(creator_tag)
        return out

    def sequence(self, elem: DataElement, path: str, mode: _Mode) -> DataElement:
        """A new sequence element whose items are scrubbed at ``path/Keyword``."""
        inner = f"{path}{elem.keyword or elem.tag}/"
        return DataElement(elem.tag, "SQ", [self.dataset(item, inner, mode) for item in elem.value])

    # -- public attributes ----------------------------------------------------------------

    def public(
        self, raw: DataElement | RawDataElement, source: Dataset, path: str, mode: _Mode
    ) -> DataElement | RawDataElement | None:
        """The output form of a public element, or None when it is removed."""
        tag = raw.tag
        vr = _vr(raw)
        replacement = self.plan.replacements.get(tag)
        if replacement is not None:
            return DataElement(tag, vr, replacement)
        code = self.plan.codes.get(tag)
        if code is None:
            if tag not in self.plan.table.standard_attributes:
                if self.plan.settings.unknown_public == "remove":
                    return None
                log.warning("kept unknown public attribute %s (profile says keep)", tag)
            if mode is _Mode.DUMMY and vr in TEXT_VRS | TEMPORAL_VRS:
                return self.apply(raw, source, vr, Action.DUMMY, path, mode)
            if mode is _Mode.CLEAN and vr in TEXT_VRS:
                return self.apply(raw, source, vr, Action.CLEAN, path, mode)
            return self.apply(raw, source, vr, Action.KEEP, path, mode)
        if tag in self.plan.pseudonymised:
            return self.pseudonym(source[tag], path)
        if "/" in code:
            action = resolve(code, self.types.get(path + keyword_for_tag(tag), "3"))
        else:
            action = Action(code)
        return self.apply(raw, source, vr, action, path, mode)

    def apply(
        self,
        raw: DataElement | RawDataElement,
        source: Dataset,
        vr: str,
        action: Action,
        path: str,
        mode: _Mode,
    ) -> DataElement | RawDataElement | None:
        """Carry out one simple action; the value is decoded only when the action needs it."""
        tag = raw.tag
        if action is Action.REMOVE:
            return None
        if action is Action.EMPTY:
            return DataElement(tag, vr, empty_value_for_VR(vr))
        if vr == "SQ":
            if action is Action.DUMMY:
                mode = _Mode.DUMMY
            elif action is Action.CLEAN:
                mode = _Mode.CLEAN
            return self.sequence(source[tag], path, mode)  # K, U: scrubbed inside
        if action is Action.REMAP_UID or (vr == "UI" and action is Action.DUMMY):
            return self.uids(source[tag])
        if action is Action.DUMMY:
            return DataElement(tag, vr, dummy_value(vr))
        if action is Action.CLEAN:
            return self.clean(source[tag])
        return _unshared(raw)

    def clean(self, elem: DataElement) -> DataElement:
        """Action C: shift dates, clean text, keep the rest."""
        vr = elem.VR
        if vr in ("DA", "DT"):
            shift = shift_date if vr == "DA" else shift_datetime
            days = self.shift_days if self.shift_dates else 0
            return DataElement(elem.tag, vr, self._map(elem.value, lambda v: shift(str(v), days)))
        if vr in TEXT_VRS:
            return DataElement(elem.tag, vr, self._map(elem.value, lambda v: self.cleaner.clean(str(v))))
        return _unshared(elem)

    def uids(self, elem: DataElement) -> DataElement:
        """Action U: every UID of the element remapped under the profile's root."""
        return DataElement(elem.tag, "UI", self._map(elem.value, lambda v: self.names.uid(str(v))))

    def pseudonym(self, elem: DataElement, path: str) -> DataElement:
        """Patient name / ID replaced by the keyed pseudonym of the patient.

        At the top level both derive from the instance's patient key, so they stay a pair; in
        a sequence item (another patient of a group) each derives from its own value.
        """
        patient = self.patient if not path else str(elem.value or "").strip()
        if not patient:
            return DataElement(elem.tag, elem.VR, empty_value_for_VR(elem.VR))
        if elem.tag == PATIENT_NAME:
            return DataElement(elem.tag, "PN", self.names.patient_name(patient))
        return DataElement(elem.tag, "LO", self.names.patient_id(patient))

    @staticmethod
    def _map(value: object, function: Callable[[object], str]) -> object:
        if value is None or value == "":
            return value
        if isinstance(value, MultiValue):
            return [function(v) for v in value]
        return function(value)

    # -- private attributes ---------------------------------------------------------------

    def private(self, tag: BaseTag, source: Dataset, path: str) -> DataElement | RawDataElement | None:
        """An allow-listed private element (scrubbed like a public one), else None."""
        block = (tag >> 8) & 0xFF
        if block < 0x10 or not self.plan.private_allow_list:
            return None  # private creators are added back for the blocks that keep data
        creator = source.get((tag & 0xFFFF0000) | block)
        if creator is None:
            return None
        key = (tag >> 16, str(creator.value).strip(), tag & 0xFF)
        if key not in self.plan.private_allow_list:
            return None
        elem = source[tag]
        if elem.VR == "SQ":
            return self.sequence(elem, path, _Mode.NORMAL)
        if elem.VR == "UI" and not self.retain_uids:
            return self.uids(elem)
        return _unshared(elem)

    # -- derived attributes ---------------------------------------------------------------

    def add_patient_age(self, out: Dataset) -> None:
        """Patient's Age computed from the (removed) birth date, under Retain Patient Characteristics."""
        birth = str(self.source.get("PatientBirthDate", "") or "")
        for keyword in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"):
            on = str(self.source.get(keyword, "") or "")
            if birth and on:
                age = age_string(birth, on)
                if age:
                    out.PatientAge = age
                return

    def file_meta(self, out: Dataset) -> FileMetaDataset:
        """A new file meta: the input's transfer syntax, the output's SOP identity, our name."""
        source_meta = self.meta
        meta = FileMetaDataset()
        meta.FileMetaInformationVersion = b"\x00\x01"
        sop_class = out.get("SOPClassUID") or source_meta.get("MediaStorageSOPClassUID")
        if sop_class:
            meta.MediaStorageSOPClassUID = sop_class
        if "SOPInstanceUID" in out:
            meta.MediaStorageSOPInstanceUID = out.SOPInstanceUID
        elif "MediaStorageSOPInstanceUID" in source_meta:
            element = source_meta["MediaStorageSOPInstanceUID"]
            meta.MediaStorageSOPInstanceUID = (
                element.value if self.plan.codes.get(element.tag) == "K" else self.uids(element).value
            )
        if "TransferSyntaxUID" in source_meta:
            meta.TransferSyntaxUID = source_meta.TransferSyntaxUID
        meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
        meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
        return meta
