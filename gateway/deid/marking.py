"""The attributes that record what de-identification did (PS3.15 E.1, PS3.3 C.7.1.1, C.7.6.1).

They tell the research PACS and its users what they may rely on: that identity was removed and
how (code per option, CID 7050), whether dates were shifted, and whether the pixels may still
show a face or text. Recognizable Visual Features says NO only when the pixel pipeline masked
the faces, Burned In Annotation NO only when the text step verified its output; nothing else
here may claim the pixels are clean.
"""

from __future__ import annotations

from pydicom.dataset import Dataset

from gateway import __version__
from gateway.deid.options import (
    BASIC_PROFILE,
    CLEAN_PIXEL_DATA,
    CLEAN_RECOGNIZABLE_VISUAL_FEATURES,
    MethodCode,
    Option,
)
from gateway.deid.plan import ScrubPlan


def method_codes(plan: ScrubPlan, *, pixels_masked: bool, text_step_ran: bool = False) -> list[MethodCode]:
    """CID 7050 codes of the profile and every option applied, in code order."""
    codes = [BASIC_PROFILE, *(option.code for option in plan.options)]
    if pixels_masked:
        codes.append(CLEAN_RECOGNIZABLE_VISUAL_FEATURES)
    if text_step_ran:
        codes.append(CLEAN_PIXEL_DATA)
    return sorted(set(codes))


def longitudinal_temporal_information(plan: ScrubPlan) -> str:
    """Enumerated value of Longitudinal Temporal Information Modified (0028,0303)."""
    if Option.RETAIN_LONGITUDINAL_MODIFIED_DATES in plan.options:
        return "MODIFIED"
    if Option.RETAIN_LONGITUDINAL_FULL_DATES in plan.options:
        return "UNMODIFIED"
    return "REMOVED"


def mark(
    ds: Dataset,
    source: Dataset,
    plan: ScrubPlan,
    *,
    pixels_masked: bool,
    profile_name: str | None,
    text_cleaned: bool | None = None,
) -> None:
    """Set the de-identification marking attributes of ``ds`` (the scrubbed output).

    Parameters
    ----------
    ds
        The output dataset, modified in place.
    source
        The input dataset, for the values that carry over (Burned In Annotation).
    plan
        The compiled profile that was applied.
    pixels_masked
        Whether the faces in the pixel data were replaced by the digital mask.
    profile_name
        Name of the profile in the configuration, when known.
    text_cleaned
        The burned-in text step: None when it did not run (tags only, or the profile keeps
        text), True when it ran and a verification pass on the output found no text, False
        when text is still found.
    """
    ds.PatientIdentityRemoved = "YES"
    method = [f"dmask {__version__}", f"PS3.15 Table E.1-1 {plan.table.edition}"]
    if profile_name:
        method.append(f"profile {profile_name}"[:64])
    method.append(f"settings {plan.digest}")
    method.append("faces masked" if pixels_masked else "pixels not masked")
    items = []
    if text_cleaned is not None:
        method.append("burned-in text removed" if text_cleaned else "burned-in text redacted, some still found")
    ds.DeidentificationMethod = method
    for code in method_codes(plan, pixels_masked=pixels_masked, text_step_ran=text_cleaned is not None):
        item = Dataset()
        item.CodeValue = code.value
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = code.meaning
        items.append(item)
    ds.DeidentificationMethodCodeSequence = items
    ds.LongitudinalTemporalInformationModified = longitudinal_temporal_information(plan)
    # Without the text step, masking a face adds no text and removes none: what the source said
    # about burned-in text still holds; when it said nothing, the output may not claim there is none.
    burned_in = str(source.get("BurnedInAnnotation", "") or "").strip().upper()
    if text_cleaned is not None:
        ds.BurnedInAnnotation = "NO" if text_cleaned else "YES"
    else:
        ds.BurnedInAnnotation = burned_in if burned_in in ("YES", "NO") else "YES"
    if pixels_masked:
        ds.RecognizableVisualFeatures = "NO"
    elif "RecognizableVisualFeatures" in source:
        # A modality's NO is its own claim about pixels we did not check: pass on only YES.
        ds.RecognizableVisualFeatures = "YES"
