"""Plain video files through ``dmask mask``: same timing and size, no audio, every frame masked."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from gateway.cli import app
from gateway.errors import NoFaceFound, PixelDataError, TrackingGap
from gateway.files.video_file import CONTACT_SHEET_FRAMES, mask_video_file, probe, read_frames
from gateway.mask.masker import FaceMasker
from gateway.mask.settings import MaskSettings
from tests.support.clips import astronaut_clip
from tests.support.photos import photo

FRAMES = 20
RATE = Fraction(25)
FILL = MaskSettings().fill_color


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
    assert mask_video_file(masker, face_clip, target, preview) == FRAMES
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
    mask_video_file(masker, face_clip, first)
    mask_video_file(masker, face_clip, second)
    assert first.read_bytes() == second.read_bytes()


def test_a_clip_without_a_face_leaves_no_output(masker: FaceMasker, tmp_path: Path) -> None:
    source, target = tmp_path / "fundus.mp4", tmp_path / "out.mp4"
    write_clip(source, [cv2.resize(photo("retina"), (240, 240))] * 10, with_audio=False)
    with pytest.raises((TrackingGap, NoFaceFound)):
        mask_video_file(masker, source, target)
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
