"""Burned-in text: recall on planted text, an independent judge, false redaction, and speed.

Quality: names, IDs, dates and times planted (``tests/support/planted_text.py``: 8-40 px, several fonts,
colours, outlines, bands and gradients, up to 10 degrees) into retina.jpg, the astronaut and
Grace Hopper photos, the shared DICOM samples, faces-dev photos and frames of a 640x480 clip;
recall is the share of planted boxes at least 90% filled, and Tesseract (an engine the pipeline
does not use) reads the outputs: every planted word it still reads is counted. False redaction
is the mean filled share of text-free images as the step receives them: faces-dev photos masked
with the default masker (photos it refuses never reach the step; the areas the masks rendered
are passed to the step as the pipeline passes them; with the default filled background that is
every pixel, so they are left whole by construction) and retina.jpg. VL6 holds a small overlay
and is planted on, not counted as text-free.
Speed: the text step on a 1 MP still with one core; a masked 640x480 H.264 instance with the text
step, one process per core, with the time of each stage in a worker (with the default filled
background nothing of the source is left and the detector is not run; the text step on the same
frames without the masks' area gives the detector's cost). Targets: recall >= 99%, Tesseract reads
0 planted words, false redaction <= 1%, <= 100 ms per 1 MP still, >= 30 frames/s at 640x480 on
2 cores.

    .venv/bin/python -m bench.text --samples DIR --faces-dir DIR [--faces 40] [--seed 2024] [--record]
    .venv/bin/python -m bench.text --only video [--rounds 3] [--seconds 2]

(``--only`` runs one part: ``quality``, ``still`` or ``video``; all three by default.)

(from the repository root; DIR: the folder of DICOM samples and the folder of face photos, one
sub-folder per person; either may be left out, and its images with it.)
"""

from __future__ import annotations

import argparse
import glob
import multiprocessing
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from io import BytesIO
from pathlib import Path

import cv2
import matplotlib
import numpy as np
import pydicom
import skimage

from bench.results import run_benchmark
from bench.video import FRAME_RATE, SIZES, _worker_masker
from bench.video import clip_file as video_instance
from gateway.audit.text import tesseract_words
from gateway.codec.pixels import decode_frames, encode_frames
from gateway.errors import DmaskError
from gateway.mask.masker import FaceMasker
from gateway.mask.settings import MaskSettings
from gateway.mask.video import masked_frames
from gateway.text.redactor import TextRedactor
from gateway.text.regions import fill_mask
from gateway.text.settings import TextSettings
from tests.support.planted_text import coverage, plant

SAMPLE_NAMES = ("VL2_J2KR.dcm", "VL3_RLE.dcm", "VL6_RLE.dcm")


def _rgb(path: str | Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _sample(path: Path) -> np.ndarray:
    return next(iter(decode_frames(pydicom.dcmread(path, force=True))))


def _words(text: str) -> set[str]:
    return {w for w in "".join(c if c.isalnum() else " " for c in text.upper()).split() if len(w) >= 3}


def quality(faces: int, faces_dir: Path | None, samples: Path | None, seed: int) -> None:
    data = Path(skimage.__file__).parent / "data"
    face_paths = sorted(glob.glob(str(faces_dir / "*" / "*.jpg"))) if faces_dir else []
    clip = pydicom.dcmread(BytesIO(video_instance((640, 480), SIZES["640x480"][1], 30)))
    bases = {"retina": _rgb(data / "retina.jpg"), "astronaut": _rgb(data / "astronaut.png"),
             "hopper": _rgb(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"),
             **({name: _sample(samples / name) for name in SAMPLE_NAMES} if samples else {}),
             **{f"frame{index}": frame for index, frame in enumerate(decode_frames(clip)) if index % 10 == 0},
             **{os.path.basename(path): _rgb(path) for path in face_paths[:faces]}}
    redactor = TextRedactor(TextSettings())
    rng = np.random.default_rng(seed)
    scores, read_before, read_after, images = [], 0, 0, 0
    for name, rgb in bases.items():
        for _ in range(3 if rgb.shape[0] > 300 else 1):
            planted = plant(rgb, rng, 6, name=name)
            redaction = redactor.redact([planted.rgb], {})
            mask = fill_mask(redaction.polygons, rgb.shape[:2])
            scores += [coverage(token, mask) for token in planted.tokens]
            words = {w for token in planted.tokens for w in _words(token.text)}
            read_before += len(words & tesseract_words(planted.rgb))
            read_after += len(words & tesseract_words(redaction.frames[0]))
            images += 1
    recall = float(np.mean(np.array(scores) >= 0.9))
    print(f"planted text: {len(scores)} tokens in {images} images; recall (box >= 90% filled) {100 * recall:.1f}%; "
          f"mean coverage {100 * float(np.mean(scores)):.1f}%", flush=True)
    print(f"tesseract judge: planted words read in inputs {read_before}, in outputs {read_after}", flush=True)
    masked, refused = masked_photos(face_paths)
    text_free = [(_rgb(data / "retina.jpg"), None), *masked]
    print(f"text-free: {len(masked)} masked faces-dev photos ({refused} refused by the masker), retina.jpg",
          flush=True)
    areas = []
    for rgb, rendered in text_free:
        redaction = redactor.redact([rgb], {}, None if rendered is None else [rendered])
        areas.append(float(fill_mask(redaction.polygons, rgb.shape[:2]).mean()) if redaction.polygons else 0.0)
    print(f"false redaction on {len(areas)} text-free images: mean {100 * float(np.mean(areas)):.2f}% of the area, "
          f"{sum(a > 0 for a in areas)} images touched", flush=True)


def masked_photos(paths: list[str]) -> tuple[list[tuple[np.ndarray, np.ndarray | None]], int]:
    """The photos masked with the default masker with the areas it rendered, and how many it
    refused (no face, residual)."""
    masked: list[tuple[np.ndarray, np.ndarray | None]] = []
    refused = 0
    with FaceMasker(MaskSettings()) as masker:
        for path in paths:
            try:
                still = masker.mask_still(_rgb(path))
                masked.append((still.rgb, still.rendered))
            except DmaskError:
                refused += 1
    return masked, refused


def still_speed() -> None:
    cv2.setNumThreads(1)
    retina = cv2.resize(_rgb(Path(skimage.__file__).parent / "data" / "retina.jpg"), (1000, 1000))
    planted = plant(retina, np.random.default_rng(5), 6).rgb
    redactor = TextRedactor(TextSettings())
    for label, rgb in (("text-free", retina), ("with 6 planted lines", planted)):
        redactor.redact([rgb], {})
        times = []
        for _ in range(5):
            began = time.perf_counter()
            redactor.redact([rgb], {})
            times.append(time.perf_counter() - began)
        print(f"1 MP still, 1 core, {label}: {1000 * statistics.median(times):.0f} ms added", flush=True)


_redactor: TextRedactor | None = None


def _worker_redactor() -> TextRedactor:
    global _redactor
    _redactor = _redactor or TextRedactor(TextSettings())
    return _redactor


def masked_and_redacted(data: bytes) -> tuple[dict[str, float], float]:
    """Decode, mask, redact text and encode one instance: seconds per stage (decode and mask
    together, as the masker pulls the frames), and the mean share of a frame the text step filled
    (the clip holds no text: every filled pixel is a false redaction)."""
    began = time.perf_counter()
    ds = pydicom.dcmread(BytesIO(data))
    images = list(masked_frames(_worker_masker(), decode_frames(ds), FRAME_RATE))
    masked = time.perf_counter()
    redaction = _worker_redactor().redact([image.rgb for image in images], {}, [image.rendered for image in images])
    redacted = time.perf_counter()
    encode_frames(ds, redaction.frames)
    ended = time.perf_counter()
    filled = [float((out != image.rgb).any(axis=2).mean()) for out, image in zip(redaction.frames, images, strict=True)]
    stages = {"decode + mask": masked - began, "text": redacted - masked, "encode": ended - redacted,
              "total": ended - began}
    return stages, float(np.mean(filled))


def detector_on_masked(data: bytes) -> float:
    """Seconds of the text step on the masked frames of one instance without the masks' area:
    what the detector costs on the sampled frames where the source is left around the faces (a
    kept background, whose masking itself costs far more for its residual face check)."""
    ds = pydicom.dcmread(BytesIO(data))
    frames = [image.rgb for image in masked_frames(_worker_masker(), decode_frames(ds), FRAME_RATE)]
    began = time.perf_counter()
    _worker_redactor().redact(frames, {})
    return time.perf_counter() - began


def video_speed(seconds: float, rounds: int) -> None:
    frames = round(seconds * FRAME_RATE)
    data = video_instance((640, 480), SIZES["640x480"][1], frames)
    workers = os.cpu_count() or 1
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(masked_and_redacted, [data] * workers))
        rates, filled, stages = [], [], []
        for _ in range(rounds):
            began = time.perf_counter()
            for spent, share in pool.map(masked_and_redacted, [data] * workers):
                stages.append(spent)
                filled.append(share)
            rates.append(workers * frames / (time.perf_counter() - began))
        list(pool.map(detector_on_masked, [data] * workers))  # warm-up: the network's first run at a size
        detector = statistics.median(pool.map(detector_on_masked, [data] * workers))
    split = ", ".join(f"{stage} {1000 * statistics.median(s[stage] for s in stages) / frames:.1f} ms"
                      for stage in stages[0])
    print(f"640x480 masked + text step, {workers} processes: {statistics.median(rates):.1f} frames/s; "
          f"text-free clip, mean share of a frame filled: {100 * float(np.mean(filled)):.2f}%", flush=True)
    print(f"  per frame in a worker (medians): {split}; text step without the masks' area (the detector "
          f"on the sampled frames) {1000 * detector / frames:.1f} ms", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=40, help="face photos planted on")
    parser.add_argument("--faces-dir", type=Path, help="face photos, one sub-folder per person")
    parser.add_argument("--samples", type=Path, help="folder holding the DICOM samples " + ", ".join(SAMPLE_NAMES))
    parser.add_argument("--seed", type=int, default=2024, help="seed of the planted-text corpus")
    parser.add_argument("--seconds", type=float, default=2.0, help="clip length")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=PARTS, help="run one part only (default: all three)")
    run_benchmark(parser, measure)


PARTS = ("quality", "still", "video")


def measure(args: argparse.Namespace) -> None:
    """Run the three measures (or the one of ``--only``) and print their figures."""
    parts = PARTS if args.only is None else (args.only,)
    if "quality" in parts:
        quality(args.faces, args.faces_dir, args.samples, args.seed)
    if "still" in parts:
        still_speed()
    if "video" in parts:
        video_speed(args.seconds, args.rounds)


if __name__ == "__main__":
    main()
