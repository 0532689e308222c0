"""One instance through the gateway: parse -> route -> mask -> burned-in text -> scrub -> encode.

This is the only module that knows the order of the steps, and the only one that turns errors
into quarantine reasons (:func:`quarantine_reason`). It is a pure function of the received bytes,
the configuration and the pseudonym key: no network, no spool, no clock. The same input and key
give byte-identical output, so a retried or re-sent instance is idempotent at the PACS.

:func:`process_instance` is what the gateway runs on a received instance: it picks the route,
then :func:`apply_profile` masks, redacts burned-in text (after the mask, on the whole output),
scrubs and encodes. A DICOM file masked from the command line
(``dmask mask``) has a profile but no route, and goes through :func:`apply_profile` alone.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from io import BytesIO
from typing import Protocol

import numpy as np
from pydicom import dcmread
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.valuerep import VR

from gateway.codec.pixels import decode_frames, encode_frames
from gateway.codec.video import frame_rate
from gateway.config import GatewayConfig, Profile
from gateway.deid.scrub import scrub
from gateway.errors import BurnedInText, DmaskError, InvalidDataset, PixelDataError
from gateway.mask.interface import ClipMasker, MaskedImage, StillMasker
from gateway.process.routing import select_route
from gateway.text.redactor import Redaction, TextRedactor
from gateway.text.settings import TextAction, TextSettings

#: The attributes that device rules of the text step match on.
DEVICE_KEYWORDS = ("Manufacturer", "ManufacturerModelName", "Rows", "Columns", "SOPClassUID")


class Masker(StillMasker, ClipMasker, Protocol):
    """What the pipeline needs of :class:`gateway.mask.FaceMasker`: stills are masked in one
    call, frame sequences through the tracker (:func:`gateway.mask.video.mask_frames`)."""


@dataclass(frozen=True)
class DeidentifiedInstance:
    """The result of a profile: the encoded instance, masked if the profile masks, scrubbed.

    Besides the bytes only identifiers of the output are kept, for the audit trail: the values
    the research PACS receives (pseudonyms, unless the profile keeps the originals).
    """

    encoded: bytes
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    patient_id: str
    transfer_syntax_uid: str
    masked: bool
    stage_seconds: dict[str, float] = field(default_factory=dict)
    #: What the burned-in text step did: ``kept`` (the profile keeps text), ``none found``, or
    #: ``redacted N`` (text lines), with ``, text left`` when the verification still finds text.
    burned_in_text: str = "kept"
    #: The polygons the text step filled (for previews).
    text_polygons: tuple[np.ndarray, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ProcessedInstance(DeidentifiedInstance):
    """The result of the pipeline: the de-identified instance and where its route sends it."""

    route: str
    destinations: tuple[str, ...]


def quarantine_reason(error: BaseException) -> str:
    """The quarantine reason code of an error raised while processing an instance.

    Typed errors carry their reason; anything else escaping the steps is a defect met on data
    we did not anticipate, so it is quarantined as such rather than forwarded.
    """
    if isinstance(error, DmaskError):
        return error.reason
    return "internal-error"


@contextmanager
def _timed(stages: dict[str, float], name: str) -> Iterator[None]:
    """Record the wall time of the ``with`` body as ``stages[name]`` (for the stage histogram)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        stages[name] = time.perf_counter() - start


def parse(data: bytes) -> Dataset:
    """Decode every attribute of a received instance (not the pixels), or raise InvalidDataset.

    All values are converted here, so a wrong VR or a truncated element fails now, with a
    reason, instead of half-way through scrubbing.
    """
    try:
        ds = dcmread(BytesIO(data))
        for element in ds.iterall():
            element.value  # noqa: B018 - converts the raw element, raising on bad data
            _check_vr(element)
        for element in ds.file_meta:
            element.value  # noqa: B018
    except (InvalidDicomError, EOFError, ValueError, TypeError, KeyError, OverflowError,
            IndexError, NotImplementedError, AttributeError, UnicodeError, OSError) as exc:
        raise InvalidDataset(f"the instance does not parse ({type(exc).__name__})") from None
    if "SOPClassUID" not in ds or "SOPInstanceUID" not in ds:
        raise InvalidDataset("the instance has no SOP Class UID or SOP Instance UID")
    return ds


def _check_vr(element: DataElement) -> None:
    """Refuse a standard attribute encoded with a VR the data dictionary does not allow.

    Explicit VR lets a sender write Patient's Name as US or Rows as UL; the scrubber and the
    pixel layer would then act on values of the wrong kind, so such an instance is refused.
    """
    if element.tag.is_private or element.VR == VR.UN or element.tag.element == 0:
        return
    try:
        allowed = dictionary_VR(element.tag)
    except KeyError:
        return  # not in the dictionary (retired or newer than pydicom): nothing to compare
    if element.VR not in allowed.split(" or "):
        raise InvalidDataset(f"attribute {element.tag} has VR {element.VR}, the standard says {allowed}")


def _masked_frames(ds: Dataset, masker: Masker) -> Iterator[MaskedImage]:
    """Every frame with its faces replaced, and where the masks were drawn; multi-frame
    instances go through the tracker."""
    frames = decode_frames(ds)
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        from gateway.mask.video import masked_frames  # the tracker; stills never load it

        try:
            timing = {"frame_rate": float(frame_rate(ds))}
        except PixelDataError:
            timing = {}  # a multi-frame stack with no timing: the tracker's default rate
        return masked_frames(masker, frames, **timing)
    return (masker.mask_still(frame) for frame in frames)


def _check_pixels(ds: Dataset) -> None:
    """Tags-only profiles still refuse pixel data that does not decode (its first frame)."""
    next(iter(decode_frames(ds)))


@lru_cache(maxsize=8)
def text_redactor(settings: TextSettings) -> TextRedactor:
    """The redactor of a profile's text settings, made once per process (it holds the models)."""
    return TextRedactor(settings)


def redact_text(frames: list[np.ndarray], settings: TextSettings, attributes: Mapping[str, object],
                keep_out: list[np.ndarray] | None = None) -> Redaction:
    """Run the text step on output frames; a refusing profile stops when text was found.

    ``attributes`` are the instance's values by keyword for the device rules (none for photos);
    ``keep_out`` the area each frame's mask rendered, left as it is.
    """
    redaction = text_redactor(settings).redact(frames, attributes, keep_out)
    if settings.action == TextAction.REFUSE and redaction.lines:
        raise BurnedInText(f"{redaction.lines} text line(s) found in the pixels")
    return redaction


def _text_summary(redaction: Redaction | None) -> str:
    if redaction is None:
        return "kept"
    if not redaction.filled:
        return "none found"
    return f"redacted {len(redaction.polygons)}" + (", text left" if redaction.text_left else "")


def process_instance(data: bytes, config: GatewayConfig, secret: bytes, *, calling_ae: str,
                     called_ae: str, maskers: Mapping[str, Masker]) -> ProcessedInstance:
    """Run one received instance through route, mask, scrub and encode.

    Parameters
    ----------
    data
        The instance as received (a DICOM file: preamble, file meta, data set).
    config
        The gateway configuration (routes, profiles).
    secret
        The pseudonym key.
    calling_ae, called_ae
        The association's AE titles, for routing.
    maskers
        One masker per profile name that asks for a mask (created once per worker).

    Raises
    ------
    DmaskError
        Any typed failure; :func:`quarantine_reason` names it.
    """
    stages: dict[str, float] = {}
    with _timed(stages, "parse"):
        ds = parse(data)
    route = select_route(config.routes, ds, calling_ae=calling_ae, called_ae=called_ae)
    assert route.profile is not None
    profile = config.profiles[route.profile]
    masker = maskers[route.profile] if profile.mask is not None else None
    result = apply_profile(ds, profile, secret, profile_name=route.profile, masker=masker)
    stages.update(result.stage_seconds)
    return ProcessedInstance(**{**vars(result), "stage_seconds": stages}, route=route.name,
                             destinations=tuple(route.destinations))


def apply_profile(ds: Dataset, profile: Profile, secret: bytes, *, profile_name: str,
                  masker: Masker | None) -> DeidentifiedInstance:
    """Mask (or check) the pixels, redact burned-in text, scrub the attributes and encode.

    Parameters
    ----------
    ds
        The instance as :func:`parse` returned it; changed in place.
    profile
        The profile to apply.
    secret
        The pseudonym key.
    profile_name
        The profile's name in the configuration (recorded in the de-identification method).
    masker
        The masker made with ``profile.mask``; None when the profile does not mask.

    Raises
    ------
    DmaskError
        Any typed failure; :func:`quarantine_reason` names it.
    """
    stages: dict[str, float] = {}
    masked = profile.mask is not None
    text = profile.burned_in_text
    redaction: Redaction | None = None
    rendered: list[np.ndarray] | None = None
    with _timed(stages, "mask" if masked else "check"):
        if masked:
            if masker is None:
                raise ValueError(f"profile {profile_name!r} masks pixels and no masker was given")
            if text.action == TextAction.KEEP:
                encode_frames(ds, (image.rgb for image in _masked_frames(ds, masker)))
            else:  # held for the text step, which leaves the masks' areas as they are
                images = list(_masked_frames(ds, masker))
                output, rendered = [image.rgb for image in images], [image.rendered for image in images]
        elif text.action == TextAction.KEEP:
            _check_pixels(ds)
        else:
            output = list(decode_frames(ds))
    if text.action != TextAction.KEEP:
        # After the mask, on the whole output: a sequence is held decoded here, since the union
        # of its text regions over time is known only once every sampled frame was seen.
        with _timed(stages, "text"):
            redaction = redact_text(output, text, {k: ds.get(k) for k in DEVICE_KEYWORDS}, rendered)
        if masked or redaction.filled:  # untouched pixels of a tags-only profile keep their encoding
            encode_frames(ds, redaction.frames)
    text_cleaned = None if redaction is None else not redaction.text_left
    with _timed(stages, "scrub"):
        ds = scrub(ds, profile.deid, secret, pixels_masked=masked, profile_name=profile_name,
                   text_cleaned=text_cleaned)
    with _timed(stages, "encode"):  # scrub wrote the file meta of the remapped SOP instance
        buffer = BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
    return DeidentifiedInstance(
        encoded=buffer.getvalue(), sop_class_uid=str(ds.SOPClassUID),
        sop_instance_uid=str(ds.SOPInstanceUID),
        study_instance_uid=str(ds.get("StudyInstanceUID", "")),
        patient_id=str(ds.get("PatientID", "")),
        transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID), masked=masked,
        stage_seconds=stages, burned_in_text=_text_summary(redaction),
        text_polygons=redaction.polygons if redaction is not None else ())
