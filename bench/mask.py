"""Digital mask speed: stills at 1024x768 and 4000x3000, and a 640x480 frame sequence.

Prints medians in milliseconds for ``FaceMasker.mask_image`` on one-face stills, wall and CPU
(detection runs two mediapipe graphs side by side), with the detect and render steps on their
own, and frames per second for a 640x480 sequence (tracking detect + render per frame) in one
process and in one process per core.

    .venv/bin/python -m bench.mask [--rounds 15] [--frames 90] [--eye-corrections 3,2,1,0] [--record]
                                                                    (from the repository root)

``--eye-corrections`` times the stills once per value of that setting (the default's alone
without it): each correction is a Face Mesh look more, the speed an admin trades for eye
fidelity (the audit measures that side).

Targets (issue 5): 1024x768 <= 40 ms, 4000x3000 <= 300 ms, 640x480 sequence >= 30 frames/s
using both cores.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

import cv2
import numpy as np

from bench.results import run_benchmark
from gateway.mask import FaceMasker, MaskSettings
from tests.support.photos import photo


def still(width: int, height: int) -> np.ndarray:
    """The photo scaled to the frame's height and centred on a ``width`` x ``height`` frame."""
    hopper = photo("grace_hopper")
    scaled = cv2.resize(hopper, (round(hopper.shape[1] * height / hopper.shape[0]), height),
                        interpolation=cv2.INTER_LINEAR)
    frame = np.full((height, width, 3), 70, dtype=np.uint8)
    x0 = (width - scaled.shape[1]) // 2
    frame[:, x0: x0 + scaled.shape[1]] = scaled
    return frame


def sequence(count: int) -> list[np.ndarray]:
    """640x480 frames of the photo drifting and turning slowly, like a short clinical clip."""
    base = still(640, 480)
    frames = []
    for index in range(count):
        angle = 4.0 * np.sin(index / 15.0)
        shift = 12.0 * np.sin(index / 25.0)
        matrix = cv2.getRotationMatrix2D((320, 240), angle, 1.0)
        matrix[0, 2] += shift
        frames.append(cv2.warpAffine(base, matrix, (640, 480), borderMode=cv2.BORDER_REPLICATE))
    return frames


def median_ms(action: Callable[[], object], rounds: int) -> tuple[float, float]:
    """Median wall and process CPU milliseconds of ``action`` (CPU counts every thread)."""
    action()  # warm-up: first use allocates framebuffers and graph buffers
    wall, cpu = [], []
    for _ in range(rounds):
        started, started_cpu = time.perf_counter(), time.process_time()
        action()
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return statistics.median(wall) * 1000.0, statistics.median(cpu) * 1000.0


def run_sequence(count: int) -> float:
    """Frames per second of tracking detect + render over a sequence, in this process."""
    frames = sequence(count)
    with FaceMasker(MaskSettings()) as masker:
        masker.render(frames[0], masker.detect(frames[0], tracking=True))
        started = time.perf_counter()
        for frame in frames:
            masker.render(frame, masker.detect(frame, tracking=True))
        return count / (time.perf_counter() - started)


def measure(arguments: argparse.Namespace) -> None:
    """Run the benchmark and print its figures."""
    for corrections in arguments.eye_corrections or [MaskSettings().eye_corrections]:
        settings = MaskSettings(eye_corrections=corrections)
        with FaceMasker(settings) as masker:
            for width, height in ((1024, 768), (4000, 3000)):
                rgb = still(width, height)
                faces = masker.detect(rgb)
                total, cpu = median_ms(lambda rgb=rgb: masker.mask_image(rgb), arguments.rounds)
                detect, _ = median_ms(lambda rgb=rgb: masker.detect(rgb), arguments.rounds)
                render, _ = median_ms(lambda rgb=rgb, faces=faces: masker.render(rgb, faces), arguments.rounds)
                print(f"{width}x{height} one face: mask_image {total:.1f} ms median, {cpu:.1f} ms CPU "
                      f"(detect {detect:.1f} ms, render+compose {render:.1f} ms, "
                      f"{corrections} eye corrections), {arguments.rounds} rounds")
    single = run_sequence(arguments.frames)
    print(f"640x480 sequence, one process: {single:.1f} frames/s")
    cores = os.cpu_count() or 1
    with ProcessPoolExecutor(cores, mp_context=multiprocessing.get_context("spawn")) as pool:
        rates = list(pool.map(run_sequence, [arguments.frames] * cores))
    print(f"640x480 sequence, {cores} processes at once: {sum(rates):.1f} frames/s in total")


def corrections_list(text: str) -> list[int]:
    """``3,2,1`` -> ``[3, 2, 1]``; each value must be a valid ``eye_corrections``."""
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}") from error
    if any(value < 0 for value in values):
        raise argparse.ArgumentTypeError("eye corrections cannot be negative")
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--frames", type=int, default=90)
    parser.add_argument("--eye-corrections", type=corrections_list, default=None,
                        help="comma-separated eye_corrections values to time the stills with")
    run_benchmark(parser, measure)


if __name__ == "__main__":
    main()
