"""Tag-only de-identification throughput for a 1 MB photographic instance.

Prints instances per second (median of several rounds) for the tag-only scrub of an instance
as the pipeline receives it (bytes -> parse -> scrub: pydicom decodes values lazily, so parsing
belongs to the measure) and for the same followed by writing the output (-> bytes), under the
Basic Profile and under a profile with options that rewrite values (date shift, cleaning).

    .venv/bin/python -m bench.deid [--rounds 7] [--per-round 200] [--record]    (from the repository root)
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import VLPhotographicImageStorage

from bench.results import run_benchmark
from gateway.deid.scrub import scrub
from gateway.deid.settings import DeidSettings
from tests.support.instances import code, part10_bytes, photographic_instance
from tests.support.keys import SECRET


def instance(rows: int = 600, columns: int = 580) -> Dataset:
    """A VL Photographic instance of about 1 MB with the attributes a camera writes, and some
    that the profile options rewrite (patient characteristics, comments, a private block)."""
    ds = photographic_instance(VLPhotographicImageStorage, instance=2, rows=rows, columns=columns)
    ds.AcquisitionDate, ds.AcquisitionTime = "20240105", "101500"
    ds.PatientWeight, ds.PatientSize = 71.5, 1.68
    ds.ImageComments = "Right eye, ptosis follow-up"
    ds.AnatomicRegionSequence = [code("81745001", "SCT", "Eye")]
    block = ds.private_block(0x0009, "CAMERA CORP", create=True)
    block.add_new(0x10, "LO", "firmware 7")
    block.add_new(0x11, "OB", b"\x01" * 64)
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
    data = part10_bytes(ds)
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
    run_benchmark(parser, measure)


if __name__ == "__main__":
    main()
