"""Tag-only de-identification throughput for a 1 MB photographic instance.

Prints instances per second (median of several rounds) for the tag-only scrub of an instance
as the pipeline receives it (bytes -> parse -> scrub: pydicom decodes values lazily, so parsing
belongs to the measure) and for the same followed by writing the output (-> bytes), under the
Basic Profile and under a profile with options that rewrite values (date shift, cleaning).

    .venv/bin/python bench/deid.py [--rounds 7] [--per-round 200] [--record]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from gateway.deid.scrub import scrub
from gateway.deid.settings import DeidSettings
from results import add_record_option, recorded

SECRET = b"bench-key-bench-key-bench-key-32"
VL_PHOTOGRAPHIC = "1.2.840.10008.5.1.4.1.1.77.1.4"


def instance(rows: int = 600, columns: int = 580) -> Dataset:
    """A VL Photographic instance of about 1 MB with the attributes a camera writes."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.InstanceCreationDate, ds.InstanceCreationTime = "20240105", "101500"
    ds.SOPClassUID, ds.SOPInstanceUID = VL_PHOTOGRAPHIC, generate_uid()
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = "20240105"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = "101500"
    ds.AcquisitionDateTime = "20240105101500"
    ds.AccessionNumber, ds.Modality, ds.Manufacturer = "ACC-0815", "XC", "Camera Corp"
    ds.InstitutionName, ds.InstitutionAddress = "St Elsewhere Eye Clinic", "1 Long Road"
    ds.ReferringPhysicianName, ds.StationName = "Kildare^James", "PHOTO-3"
    ds.StudyDescription, ds.SeriesDescription = "External eye photography", "Face, primary gaze"
    ds.OperatorsName, ds.ManufacturerModelName = "Nurse^Ratched", "EyeCam 2"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Doe^Jane", "PID-4711", "19610203", "F"
    ds.PatientAge, ds.PatientWeight, ds.PatientSize = "062Y", 71.5, 1.68
    ds.DeviceSerialNumber, ds.SoftwareVersions = "SN-998877", "1.0"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = generate_uid(), generate_uid(), generate_uid()
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "S-42", 1, 2
    ds.ImageComments = "Right eye, ptosis follow-up"
    ds.PatientOrientation, ds.Laterality, ds.BurnedInAnnotation = "", "R", "NO"
    reference = Dataset()
    reference.ReferencedSOPClassUID, reference.ReferencedSOPInstanceUID = VL_PHOTOGRAPHIC, generate_uid()
    ds.ReferencedImageSequence = [reference]
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "81745001", "SCT", "Eye"
    ds.AnatomicRegionSequence = [code]
    ds.AcquisitionContextSequence = []
    block = ds.private_block(0x0009, "CAMERA CORP", create=True)
    block.add_new(0x10, "LO", "firmware 7")
    block.add_new(0x11, "OB", b"\x01" * 64)
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.random.default_rng(0).integers(0, 255, (rows, columns, 3), np.uint8).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def rate(function, per_round: int, rounds: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Median instances per second of ``function``: per wall-clock second and per CPU second.

    On a machine shared with other work the CPU-time figure is the one that says what one
    core does; the wall-clock one says what this run got.
    """
    function()  # warm the caches (table, plan, pseudonymizer)
    wall, cpu = [], []
    for _ in range(rounds):
        start, start_cpu = time.perf_counter(), time.process_time()
        for _ in range(per_round):
            function()
        wall.append(per_round / (time.perf_counter() - start))
        cpu.append(per_round / (time.process_time() - start_cpu))
    return statistics.median(wall), statistics.median(cpu)


def measure(args: argparse.Namespace) -> None:
    """Run the benchmark and print its figures."""
    ds = instance()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    profiles = {
        "basic": DeidSettings(),
        "dates+clean": DeidSettings.model_validate(
            {"options": ["retain_longitudinal_modified_dates", "clean_descriptors", "retain_patient_characteristics"]}
        ),
    }
    print(f"instance: {len(data) / 1e6:.2f} MB, {len(ds)} top-level elements")
    for name, settings in profiles.items():
        scrub_only = rate(
            lambda settings=settings: scrub(pydicom.dcmread(io.BytesIO(data)), settings, SECRET, pixels_masked=False),
            args.per_round,
            args.rounds,
        )

        def bytes_to_bytes(settings: DeidSettings = settings) -> bytes:
            out = scrub(pydicom.dcmread(io.BytesIO(data)), settings, SECRET, pixels_masked=False)
            result = io.BytesIO()
            out.save_as(result, enforce_file_format=True)
            return result.getvalue()

        full = rate(bytes_to_bytes, args.per_round, args.rounds)
        for label, (wall, cpu) in (("parse+scrub", scrub_only), ("parse+scrub+write", full)):
            print(f"{name:12s} {label:18s} {cpu:6.0f} instances/s per CPU second, "
                  f"{wall:6.0f} per wall-clock second (median of {args.rounds} rounds)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--per-round", type=int, default=200)
    add_record_option(parser)
    args = parser.parse_args()
    with recorded(args.record):
        measure(args)


if __name__ == "__main__":
    main()
