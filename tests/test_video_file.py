"""Plain video files through ``dmask mask``: same timing and size, no audio, every frame masked,
burned-in text filled in every frame."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from gateway.cli import app
from gateway.errors import BurnedInText, NoFaceFound, PixelDataError, TrackingGap
from gateway.files.video_file import (
    CONTACT_SHEET_FRAMES,
    mask_video_file,
    probe,
    read_frames,
    redact_clip_text,
    write_frames,
)
from gateway.mask.masker import FaceMasker
from gateway.mask.settings import BackgroundPolicy, MaskSettings
from gateway.process.pipeline import redact_text
from gateway.text.regions import fill_mask
from gateway.text.settings import TextAction, TextSettings
from tests.support.clips import astronaut_clip
from tests.support.photos import photo
from tests.support.planted_text import PlantedToken, coverage, plant

FRAMES = 20
RATE = Fraction(25)
FILL = MaskSettings().fill_color
TEXT = TextSettings()
OUTLINE = (255, 0, 255)
#: The rows of the clip where text is burned in, below the face.
BAND = np.s_[290:360]


def write_clip(path: Path, frames: list[np.ndarray], with_audio: bool = True) -> None:
    """An H.264 clip, with a mono AAC track of noise standing in for a voice."""
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("libx264", rate=RATE)
        video.height, video.width = frames[0].shape[:2]
        video.pix_fmt = "yuv420p"
        audio = container.add_stream("aac", rate=48000) if with_audio else None
        rng = np.random.default_rng(3)
        for index, frame in enumerate(frames):
            picture = av.VideoFrame.from_ndarray(frame, format="rgb24")
            picture.pts = index
            container.mux(video.encode(picture))
            if audio is not None:
                samples = av.AudioFrame.from_ndarray(
                    rng.uniform(-0.1, 0.1, (1, 1920)).astype(np.float32), format="fltp", layout="mono"
                )
                samples.sample_rate, samples.pts = 48000, index * 1920
                container.mux(audio.encode(samples))
        container.mux(video.encode(None))
        if audio is not None:
            container.mux(audio.encode(None))


@pytest.fixture(scope="module")
def face_clip(tmp_path_factory: pytest.TempPathFactory, masker: FaceMasker) -> Path:
    clip = astronaut_clip(masker, (480, 360), 90, frame_rate=25.0)
    path = tmp_path_factory.mktemp("clips") / "nystagmus.mp4"
    write_clip(path, [frame.rgb for frame in clip.frames(FRAMES)])
    return path


@pytest.mark.parametrize("suffix", [".mp4", ".mov"])
def test_video_file_keeps_timing_and_size_drops_audio_and_masks_every_frame(
    masker: FaceMasker, face_clip: Path, tmp_path: Path, suffix: str
) -> None:
    target, preview = tmp_path / f"masked{suffix}", tmp_path / "sheet.png"
    assert mask_video_file(masker, face_clip, target, preview, text=TEXT) == FRAMES
    info = probe(target)
    assert (info.width, info.height, info.frame_rate) == (480, 360, RATE)
    with av.open(str(target)) as container:
        assert [stream.type for stream in container.streams] == ["video"]
        assert container.streams.video[0].codec_context.name == "h264"
    outputs = list(read_frames(target))
    assert len(outputs) == FRAMES
    for original, output in zip(read_frames(face_clip), outputs, strict=True):
        assert np.abs(output[:16, :16].astype(int) - FILL).max() <= 6  # fill, up to H.264 error
        face = np.s_[120:260, 170:310]
        assert np.abs(output[face].astype(int) - original[face]).mean() > 20
    sheet = cv2.imread(str(preview))
    assert sheet.shape[:2] == (CONTACT_SHEET_FRAMES * 360, 960)  # rows of 480 + 480 pixels, unscaled


def test_video_file_output_is_byte_identical_across_runs(masker: FaceMasker, face_clip: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "first.mp4", tmp_path / "second.mp4"
    mask_video_file(masker, face_clip, first, text=TEXT)
    mask_video_file(masker, face_clip, second, text=TEXT)
    assert first.read_bytes() == second.read_bytes()


def test_a_clip_without_a_face_leaves_no_output(masker: FaceMasker, tmp_path: Path) -> None:
    source, target = tmp_path / "fundus.mp4", tmp_path / "out.mp4"
    write_clip(source, [cv2.resize(photo("retina"), (240, 240))] * 10, with_audio=False)
    with pytest.raises((TrackingGap, NoFaceFound)):
        mask_video_file(masker, source, target, text=TEXT)
    assert not target.exists()


def test_dmask_mask_accepts_video_files(face_clip: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["mask", str(face_clip), "-o", str(tmp_path / "out"), "--preview", "--config", str(tmp_path / "none.yaml")]
    )
    assert result.exit_code == 0, result.output
    masked = tmp_path / "out" / face_clip.name
    assert probe(masked).frame_count == FRAMES
    assert (tmp_path / "out" / f"{face_clip.name}.preview.png").exists()


def test_a_file_that_is_not_a_video_is_a_pixel_data_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("minutes of the eye clinic meeting, not a video")
    with pytest.raises(PixelDataError, match="cannot be opened"):
        probe(path)
    with pytest.raises(PixelDataError, match="cannot be opened"):
        list(read_frames(path))


@pytest.fixture(scope="module")
def keeping_masker() -> Iterator[FaceMasker]:
    """A masker that keeps the background: text burned in beside the face outlives the mask."""
    with FaceMasker(MaskSettings(background=BackgroundPolicy.KEEP)) as keeping:
        yield keeping


@pytest.fixture(scope="module")
def text_clip(tmp_path_factory: pytest.TempPathFactory,
              keeping_masker: FaceMasker) -> tuple[Path, tuple[PlantedToken, ...]]:
    """The face clip with a name and a time burned into every frame below the face (planted on
    the real photo's first frame, the same overlay on every frame, as a camera draws it)."""
    frames = [frame.rgb for frame in astronaut_clip(keeping_masker, (480, 360), 90, frame_rate=25.0).frames(FRAMES)]
    planted = plant(frames[0][BAND], np.random.default_rng(2), 2, sizes=(16, 24))
    ink = (planted.rgb != frames[0][BAND]).any(axis=-1)
    for frame in frames:
        frame[BAND][ink] = planted.rgb[ink]
    offset = np.array([0, BAND.start], np.float32)
    tokens = tuple(PlantedToken(token.text, token.corners + offset, token.size) for token in planted.tokens)
    path = tmp_path_factory.mktemp("clips") / "overlay.mp4"
    write_clip(path, frames, with_audio=False)
    return path, tokens


def test_burned_in_text_of_a_video_file_is_filled_in_every_frame(
    keeping_masker: FaceMasker, text_clip: tuple[Path, tuple[PlantedToken, ...]], tmp_path: Path
) -> None:
    source, tokens = text_clip
    target, preview = tmp_path / "masked.mp4", tmp_path / "sheet.png"

    assert mask_video_file(keeping_masker, source, target, preview, text=TEXT) == FRAMES

    outputs = list(read_frames(target))
    assert len(outputs) == FRAMES and probe(target).frame_rate == RATE
    for output in outputs:
        filled = output.max(axis=-1) <= 30  # the black fill, up to H.264 error
        assert min(coverage(token, filled) for token in tokens) >= 0.9
    sheet = cv2.cvtColor(cv2.imread(str(preview)), cv2.COLOR_BGR2RGB)
    row = sheet[:360]  # the first frame: original (480 px) beside the output, unscaled
    assert (np.abs(row[:, 480:].astype(int) - OUTLINE).max(axis=-1) <= 40)[BAND].any()
    assert not (np.abs(row[:, :480].astype(int) - OUTLINE).max(axis=-1) <= 40).any()


def test_a_video_file_refused_for_its_text_leaves_no_output(
    keeping_masker: FaceMasker, text_clip: tuple[Path, tuple[PlantedToken, ...]], tmp_path: Path
) -> None:
    target = tmp_path / "masked.mp4"
    with pytest.raises(BurnedInText):
        mask_video_file(keeping_masker, text_clip[0], target, text=TextSettings(action=TextAction.REFUSE))
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []  # nor a half-filled copy


def test_a_clip_file_is_redacted_as_the_pipeline_redacts_the_whole_clip_in_memory(tmp_path: Path) -> None:
    """Only the sampled frames are held, and the result is the pipeline's on all frames: the same
    regions (the union over the sampled frames and a scene change), the same fill in every frame."""
    base = cv2.resize(photo("astronaut"), (320, 240))
    frames = [base.copy() for _ in range(FRAMES)]
    for index in range(12, 15):  # not a sampled frame: found through its scene change
        cv2.rectangle(frames[index], (0, 0), (320, 240), (20, 20, 20), -1)
        cv2.putText(frames[index], "1957-03-14", (60, 130), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2)
    for index in range(8):  # moves: filled wherever it was seen
        cv2.putText(frames[index], "ID 4821", (10 + 10 * index, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 0), 2)
    clip = tmp_path / "clip.mp4"
    assert write_frames(clip, frames, RATE) == FRAMES
    redacted = tmp_path / "redacted.mp4"
    shutil.copy(clip, redacted)

    every_third = TextSettings(sample_every=3)  # the moving text seen in frames 0, 3 and 6
    in_memory = redact_text(list(read_frames(clip)), every_third, {})
    polygons = redact_clip_text(redacted, FRAMES, RATE, every_third)

    # The lines found are the same; in memory a moving line is also followed through the frames
    # between samples, which the file route does not hold (its extra places come after the lines).
    assert len(polygons) == in_memory.lines >= 4
    assert all(np.array_equal(ours, theirs) for ours, theirs in zip(polygons, in_memory.polygons[:len(polygons)],
                                                                    strict=True))
    mask = fill_mask(polygons, (240, 320))
    outputs = list(read_frames(redacted))
    assert len(outputs) == FRAMES
    untouched = ~mask & ~fill_mask(in_memory.polygons, (240, 320))
    for output, expected in zip(outputs, in_memory.frames, strict=True):
        assert np.mean(output[mask].max(axis=-1) <= 30) >= 0.97  # the black fill, up to H.264 error
        assert np.abs(output[untouched].astype(int) - expected[untouched]).mean() < 3  # one more H.264 pass
