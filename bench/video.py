"""Video masking throughput: decode + mask + encode of a Video Photographic H.264 instance.

Prints frames per second (median of several rounds) for a 640x480 and a 1920x1080 clip
synthesised from the astronaut photo (head drifting, irises oscillating like a nystagmus),
in one process and in one process per core, each masking its own copy of the instance, the
way the gateway's workers do. The per-stage split (decode, mask, encode) comes from the
one-process rounds. Targets (issue 7): 640x480 >= 30 frames/s on 2 cores, 1080p >= 8.

    .venv/bin/python -m bench.video [--rounds 3] [--seconds 2] [--record]    (from the repository root)
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from io import BytesIO
from typing import TypeVar

import pydicom

from bench.results import run_benchmark
from gateway.codec.pixels import decode_frames, encode_frames
from gateway.mask import FaceMasker, MaskSettings
from gateway.mask.video import mask_frames
from tests.support.clips import astronaut_clip
from tests.support.instances import part10_bytes, video_instance

T = TypeVar("T")
FRAME_RATE = 30
SIZES = {"640x480": ((640, 480), 110.0), "1920x1080": ((1920, 1080), 260.0)}


def clip_file(size: tuple[int, int], inter_ocular: float, frames: int) -> bytes:
    """A Video Photographic instance (H.264, 30 frames/s) of the synthetic clip, as a file."""
    with FaceMasker(MaskSettings()) as masker:
        clip = astronaut_clip(masker, size, inter_ocular, frame_rate=FRAME_RATE)
    ds = video_instance((frame.rgb for frame in clip.frames(frames)), f"{1000 / FRAME_RATE:.4f}")
    return part10_bytes(ds)


_masker: FaceMasker | None = None


def _worker_masker() -> FaceMasker:
    global _masker
    if _masker is None:
        _masker = FaceMasker(MaskSettings())
    return _masker


def _timed(spent: dict[str, float], stage: str, items: Iterable[T]) -> Iterator[T]:
    """Pass `items` through, adding the time spent producing each one to ``spent[stage]``."""
    iterator = iter(items)
    while True:
        began = time.perf_counter()
        try:
            item = next(iterator)
        except StopIteration:
            spent[stage] += time.perf_counter() - began
            return
        spent[stage] += time.perf_counter() - began
        yield item


def process(data: bytes) -> dict[str, float]:
    """Decode, mask and encode one instance; seconds spent in each stage and in all."""
    masker = _worker_masker()
    spent = {"decode": 0.0, "mask": 0.0, "encode": 0.0}
    start = time.perf_counter()
    ds = pydicom.dcmread(BytesIO(data))

    decoded = _timed(spent, "decode", decode_frames(ds))
    masked = _timed(spent, "mask", mask_frames(masker, decoded, FRAME_RATE))
    began = time.perf_counter()
    encode_frames(ds, masked)
    total_encode = time.perf_counter() - began
    spent["mask"] -= spent["decode"]  # mask_frames pulls the decoded frames inside its own time
    spent["encode"] = total_encode - spent["mask"] - spent["decode"]
    spent["total"] = time.perf_counter() - start
    return spent


def measure(args: argparse.Namespace) -> None:
    """Run the benchmark and print its figures."""
    frames = round(args.seconds * FRAME_RATE)
    workers = os.cpu_count() or 1
    print(f"{frames} frames per clip, {args.rounds} rounds, medians; {workers} cores", flush=True)
    for name, (size, inter_ocular) in SIZES.items():
        data = clip_file(size, inter_ocular, frames)
        single = [process(data) for _ in range(args.rounds)]
        stage = {key: statistics.median(round_[key] for round_ in single) for key in single[0]}
        # spawn, not fork: this process already holds mediapipe's threads and a GL context.
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            list(pool.map(process, [data] * workers))  # warm-up: models and GL contexts
            parallel = []
            for _ in range(args.rounds):
                began = time.perf_counter()
                list(pool.map(process, [data] * workers))
                parallel.append(workers * frames / (time.perf_counter() - began))
        print(
            f"{name}: 1 process {frames / stage['total']:.1f} frames/s "
            f"(decode {1000 * stage['decode'] / frames:.1f} ms, mask {1000 * stage['mask'] / frames:.1f} ms, "
            f"encode {1000 * stage['encode'] / frames:.1f} ms per frame); "
            f"{workers} processes {statistics.median(parallel):.1f} frames/s",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0, help="clip length")
    run_benchmark(parser, measure)


if __name__ == "__main__":
    main()
