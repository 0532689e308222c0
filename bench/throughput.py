"""Throughput of storescu -> dmask serve -> Orthanc against storescu -> Orthanc, in one run.

Two workloads, each timed ``--repeats`` times (medians printed):

* 40 KB Secondary Capture instances through a tags-only profile (target: at least half the
  direct rate), whose burned-in text step is ``--tags-text`` (``redact``, the default of every
  profile, decodes the pixels and runs the text detector on them; ``keep`` leaves them as they
  are; ``redact,keep`` measures both in one run, each through a gateway of its own);
* 1 MP photos of a face through the mask profile (target: at least 10 per second on 2 cores);
  ``--mask-count 0`` leaves it out.

Both figures are end to end: from the start of storescu until Orthanc holds every instance
(polled every 20 ms; direct, that is when storescu returns). ``ingest`` is the rate at which
storescu got its responses from the gateway. The two paths alternate which goes first. For the
tags-only workload a third figure is storescu -> a bare pynetdicom SCP that answers Success and
keeps nothing (set up like the gateway's listener): the most any receive path built on
pynetdicom can take on this machine, since storescu waits for each response. The last line of
each workload is the workers' mean time per instance in each pipeline stage (from the gateway's
stage histogram, every instance of the workload).

Usage, from the repository root: ``.venv/bin/python -m bench.throughput [--tags-count 300]
[--tags-text redact,keep] [--mask-count 40] [--repeats 3] [--record]``
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

from pydicom.uid import SecondaryCaptureImageStorage
from pynetdicom import AE, evt

from bench.results import run_benchmark
from gateway.config import Listener
from gateway.dicom.transport import set_tcp_nodelay
from gateway.ingest.listener import SUCCESS  # also makes pynetdicom receive in chunks
from tests.support.instances import photo_instance, write
from tests.support.peers import (
    DmaskServer,
    Orthanc,
    acknowledged,
    gateway_settings,
    orthanc_destination,
    storescu,
)
from tests.support.photos import photo, resized

STAGE_SAMPLE = re.compile(r'^dmask_stage_duration_seconds_(sum|count)\{[^}]*stage="([^"]+)"[^}]*\} (\S+)$', re.M)
"""The sum and count of the stage duration histogram, per stage, in the metrics' text format."""


def _instances(folder: Path, count: int, *, pixels: int, name: str, sop_class: str | None,
               modality: str) -> list[Path]:
    folder.mkdir(parents=True)
    image = resized(photo(name), pixels)
    options = {"sop_class_uid": sop_class} if sop_class else {}
    return [write(photo_instance(image, modality=modality, **options), folder / f"{i:05d}.dcm")
            for i in range(count)]


def _wait_for(orthanc: Orthanc, count: int, timeout: float = 600) -> float:
    deadline = time.perf_counter() + timeout
    while orthanc.instance_count() < count:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"Orthanc holds {orthanc.instance_count()} of {count} instances")
        time.sleep(0.02)
    return time.perf_counter()


def _direct(orthanc: Orthanc, files: list[Path]) -> float:
    before = orthanc.instance_count()
    start = time.perf_counter()
    result = storescu(orthanc.dicom_port, files, called=Orthanc.AE_TITLE)
    if len(acknowledged(result)) != len(files):
        raise RuntimeError("Orthanc did not acknowledge every instance:\n" + result.stderr[-2000:])
    return len(files) / (_wait_for(orthanc, before + len(files)) - start)


def _through_gateway(orthanc: Orthanc, server: DmaskServer, files: list[Path]) -> tuple[float, float]:
    before = orthanc.instance_count()
    start = time.perf_counter()
    result = storescu(server.port, files)
    acked = time.perf_counter()
    if len(acknowledged(result)) != len(files):
        raise RuntimeError("the gateway did not acknowledge every instance:\n"
                           + result.stderr[-2000:])
    end = _wait_for(orthanc, before + len(files))
    return len(files) / (end - start), len(files) / (acked - start)


def _bare_pynetdicom(files: list[Path], max_pdu_size: int) -> float:
    """storescu -> a pynetdicom SCP whose C-STORE handler only answers Success, in instances/s."""
    ae = AE(ae_title="DMASK")
    ae.maximum_pdu_size = max_pdu_size
    ae.add_supported_context(SecondaryCaptureImageStorage)
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[
        (evt.EVT_CONN_OPEN, set_tcp_nodelay), (evt.EVT_C_STORE, lambda event: SUCCESS)])
    try:
        start = time.perf_counter()
        result = storescu(server.server_address[1], files)
        elapsed = time.perf_counter() - start
    finally:
        server.shutdown()
    if len(acknowledged(result)) != len(files):
        raise RuntimeError("the bare SCP did not acknowledge every instance")
    return len(files) / elapsed


def _stage_milliseconds(server: DmaskServer) -> dict[str, float]:
    """Mean worker time per instance of every pipeline stage so far, from the gateway's metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5) as reply:
        samples = {(kind, stage): float(value) for kind, stage, value in STAGE_SAMPLE.findall(reply.read().decode())}
    return {stage: 1000 * total / samples[("count", stage)]
            for (kind, stage), total in samples.items() if kind == "sum" and samples.get(("count", stage))}


def _workload(label: str, orthanc: Orthanc, server: DmaskServer, folder: Path, repeats: int,
              count: int, bare_max_pdu: int | None = None, **instance_options) -> None:
    direct, gateway, ingest, bare = [], [], [], []
    for repeat in range(repeats):
        # Fresh UIDs every round: Orthanc would otherwise only overwrite what it has. The order
        # alternates, so neither path always meets the larger Orthanc index.
        direct_files = _instances(folder / f"{label}-direct-{repeat}", count, **instance_options)
        files = _instances(folder / f"{label}-gateway-{repeat}", count, **instance_options)
        if repeat % 2:
            end_to_end, acked = _through_gateway(orthanc, server, files)
            direct.append(_direct(orthanc, direct_files))
        else:
            direct.append(_direct(orthanc, direct_files))
            end_to_end, acked = _through_gateway(orthanc, server, files)
        gateway.append(end_to_end)
        ingest.append(acked)
        if bare_max_pdu is not None:
            bare.append(_bare_pynetdicom(files, bare_max_pdu))
    size = files[0].stat().st_size / 1000
    ratio = statistics.median(gateway) / statistics.median(direct)
    print(f"{label}: {count} instances of {size:.0f} kB, median of {repeats}")
    print(f"  storescu -> Orthanc          {statistics.median(direct):8.1f} instances/s")
    print(f"  storescu -> dmask -> Orthanc {statistics.median(gateway):8.1f} instances/s "
          f"(ingest {statistics.median(ingest):.1f}/s, {ratio:.2f} of direct)")
    if bare:
        print(f"  storescu -> bare pynetdicom  {statistics.median(bare):8.1f} instances/s "
              f"({statistics.median(bare) / statistics.median(direct):.2f} of direct)")
    stages = ", ".join(f"{stage} {ms:.1f}" for stage, ms in _stage_milliseconds(server).items())
    print(f"  worker time per instance, ms: {stages}")


def _server(folder: Path, orthanc: Orthanc, text_action: str, workers: int) -> DmaskServer:
    """A started gateway forwarding to ``orthanc``, its tags-only profile with ``text_action``."""
    profiles = {"face-photos": {}, "tags-only": {"mask": None, "burned_in_text": {"action": text_action}}}
    settings = gateway_settings(folder, {"research": orthanc_destination(orthanc)}, profiles=profiles,
                                workers=workers)
    settings["logging"]["level"] = "WARNING"
    server = DmaskServer(folder / "dmask", settings)
    server.start()
    return server


def measure(args: argparse.Namespace) -> None:
    """Run the benchmark and print its figures."""
    with tempfile.TemporaryDirectory(prefix="dmask-bench-") as scratch:
        folder = Path(scratch)
        orthanc = Orthanc(folder / "orthanc")
        orthanc.start()
        try:
            for action in args.tags_text:
                server = _server(folder / f"gateway-{action}", orthanc, action, args.workers)
                try:
                    _workload(f"tags-only, text {action}", orthanc, server, folder, args.repeats,
                              args.tags_count, bare_max_pdu=Listener.model_fields["max_pdu_size"].default,
                              pixels=13_000, name="camera", sop_class=SecondaryCaptureImageStorage,
                              modality="OT")
                finally:
                    server.stop()
            if args.mask_count:
                server = _server(folder / "gateway-mask", orthanc, "redact", args.workers)
                try:
                    _workload("mask 1 MP", orthanc, server, folder, args.repeats, args.mask_count,
                              pixels=1_000_000, name="grace_hopper", sop_class=None, modality="XC")
                finally:
                    server.stop()
        finally:
            orthanc.stop()


def _text_actions(value: str) -> list[str]:
    actions = value.split(",")
    if not actions or any(action not in ("redact", "keep") for action in actions):
        raise argparse.ArgumentTypeError("redact, keep or both, comma-separated")
    return actions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tags-count", type=int, default=300)
    parser.add_argument("--tags-text", type=_text_actions, default=["redact"],
                        help="burned_in_text action(s) of the tags-only profile, e.g. redact,keep: one "
                        "gateway and one tags-only workload each, in the same run")
    parser.add_argument("--mask-count", type=int, default=40, help="1 MP photos to mask; 0 leaves them out")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    run_benchmark(parser, measure)


if __name__ == "__main__":
    main()
