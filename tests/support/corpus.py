"""The planted-value corpus for de-identification tests.

``planted_instance`` puts a distinct, recognisable value into every attribute of Table E.1-1
(at the top level, and again inside a nested sequence), into private blocks (top level and
nested), overlay and curve groups, and the file meta, so that any value that survives
de-identification can be traced to the attribute it came from.
"""

from __future__ import annotations

from datetime import date, timedelta

from pydicom.datadict import dictionary_has_tag, dictionary_is_retired, dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.uid import VLPhotographicImageStorage

from gateway.deid.table import load_table
from tests.support.instances import UID_ROOT, file_meta
from tests.support.pixels import ramp, set_rgb_pixels

PRIVATE_CREATOR = "PLANTED CREATOR"
SAFE_CREATOR = "SAFE CREATOR"


def planted_value(vr: str, n: int) -> object | None:
    """A distinct value number ``n`` valid for ``vr`` (None when the VR is not planted)."""
    if vr == "PN":
        return f"Fam{n:04d}^Giv{n:04d}"
    if vr in ("LO", "SH", "LT", "ST", "UT", "UC", "AE", "CS"):
        return f"PLANT{n:04d}"
    if vr == "UR":
        return f"http://plant{n:04d}.example"
    if vr == "DA":
        return (date(1950, 1, 1) + timedelta(days=17 * n)).strftime("%Y%m%d")
    if vr == "DT":
        return (date(1950, 1, 2) + timedelta(days=17 * n)).strftime("%Y%m%d") + "101112"
    if vr == "TM":
        return f"{n % 24:02d}{(n * 7) % 60:02d}{(n * 13) % 60:02d}.{n:04d}"
    if vr == "UI":
        return f"{UID_ROOT}.{n}"
    if vr == "AS":
        return f"{n % 999:03d}Y"
    if vr == "DS":
        return f"7.{n:04d}"
    if vr == "IS":
        return str(900000 + n)
    if vr in ("US", "SS", "UL", "SL"):
        return n
    if vr in ("FL", "FD"):
        return float(n)
    if vr in ("OB", "OW", "UN"):
        return f"PLNT{n:04d}".encode()
    return None


def _planted_item(n: int) -> Dataset:
    item = Dataset()
    item.PatientName = planted_value("PN", n)
    item.InstitutionName = planted_value("LO", n + 1)
    item.ReferencedSOPInstanceUID = planted_value("UI", n + 2)
    item.ReferencedSOPClassUID = VLPhotographicImageStorage
    item.StudyDate = planted_value("DA", n + 3)
    block = item.private_block(0x0011, PRIVATE_CREATOR, create=True)
    block.add_new(0x01, "LO", planted_value("LO", n + 4))
    return item


def _plant_table(ds: Dataset, n: int, *, sequences: bool) -> None:
    """Plant a value numbered from ``n`` in every Table E.1-1 attribute pydicom can write."""
    for tag in sorted(load_table().rows):
        group = tag >> 16
        if group in (0x0000, 0x0002) or not dictionary_has_tag(tag) or dictionary_is_retired(tag):
            continue
        vr = dictionary_VR(tag).split(" or ")[0]
        n += 10
        if vr == "SQ":
            if sequences:
                ds.add(DataElement(tag, vr, [_planted_item(n)]))
            continue
        value = planted_value(vr, n)
        if value is not None:
            ds.add(DataElement(tag, vr, value))


def planted_instance(sop_class_uid: str = VLPhotographicImageStorage) -> Dataset:
    """A dataset with a planted value in every Table E.1-1 attribute pydicom can write, at
    the top level, inside an item of every table sequence, and all over again inside a
    standard sequence the table keeps (Contributing Equipment Sequence)."""
    ds = Dataset()
    _plant_table(ds, 0, sequences=True)
    contributing = Dataset()
    _plant_table(contributing, 10000, sequences=False)
    ds.ContributingEquipmentSequence = [contributing]
    # The identity and image of a photographic instance.
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = f"{UID_ROOT}.1.1"
    ds.StudyInstanceUID = f"{UID_ROOT}.1.2"
    ds.SeriesInstanceUID = f"{UID_ROOT}.1.3"
    ds.PatientName = "Plantfam^Plantgiven^Plantmid"
    ds.PatientID = "PLANTED-PID-77"
    ds.PatientBirthDate = "19610203"
    ds.StudyDate = "20240105"
    ds.StudyDescription = "Eyelids of Planted before surgery"
    ds.Modality = "XC"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    set_rgb_pixels(ds, ramp(8, 8))
    # Private groups: an unknown creator and a safe one, top level and nested.
    block = ds.private_block(0x0009, PRIVATE_CREATOR, create=True)
    block.add_new(0x10, "LO", "PLANT-PRIVATE-LO")
    block.add_new(0x11, "UI", f"{UID_ROOT}.9.1")
    block.add_new(0x12, "OB", b"PLANT-PRIVATE-OB")
    block.add_new(0x13, "SQ", [_planted_item(90000)])
    safe = ds.private_block(0x0019, SAFE_CREATOR, create=True)
    safe.add_new(0x10, "LO", "SAFE-PRIVATE-KEPT")
    safe.add_new(0x11, "LO", "PLANT-SAFE-BUT-NOT-LISTED")
    # Overlay and curve groups.
    ds.add_new(0x60000010, "US", 8)
    ds.add_new(0x60000011, "US", 8)
    ds.add_new(0x60003000, "OW", b"PLANT-OVERLAY-DT")
    ds.add_new(0x60004000, "LT", "PLANT-OVERLAY-COMMENT")
    ds.add_new(0x50003000, "OB", b"PLANT-CURVE-DATA")
    ds.file_meta = file_meta(ds)
    ds.file_meta.SourceApplicationEntityTitle = "PLANTSRCAE"
    ds.file_meta.SendingApplicationEntityTitle = "PLANTSENDAE"
    ds.file_meta.PrivateInformationCreatorUID = f"{UID_ROOT}.9.9"
    ds.file_meta.PrivateInformation = b"PLANT-META-PRIVATE"
    return ds
