"""Video transfer syntaxes through the pixel layer: frames, timing, determinism, audio dropped."""

from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np
import pytest
from pydicom.encaps import encapsulate, generate_fragments
from pydicom.uid import (
    HEVCMP51,
    MPEG2MPHL,
    MPEG2MPML,
    MPEG4HP41,
    MPEG4HP41BD,
    MPEG4HP42STEREO,
    MPEG4HP422D,
    UID,
    VideoPhotographicImageStorage,
)

from gateway.codec.pixels import DECODABLE_TRANSFER_SYNTAXES, decode_frames, encode_frames
from gateway.errors import PixelDataError, UnsupportedPixelFormat
from tests.support.instances import rgb_instance, video_instance
from tests.support.pixels import psnr

WRITTEN = [MPEG4HP41, MPEG4HP422D, MPEG2MPML, MPEG2MPHL, HEVCMP51]


@pytest.fixture(scope="module")
def clip(small_face: np.ndarray) -> np.ndarray:
    """12 frames of the astronaut photo panning right, 160 x 120."""
    return np.stack([np.roll(small_face, 2 * index, axis=1) for index in range(12)])


@pytest.mark.parametrize("tsyntax", WRITTEN, ids=lambda uid: uid.name)
def test_video_round_trip_keeps_count_size_timing_and_syntax(clip: np.ndarray, tsyntax: UID) -> None:
    ds = video_instance(clip, "33.3667", tsyntax)
    assert ds.file_meta.TransferSyntaxUID == tsyntax
    assert ds.NumberOfFrames == len(clip)
    assert float(ds.FrameTime) == pytest.approx(1000 * 1001 / 30000, abs=1e-3)
    assert ds.CineRate == 30 and ds.FrameIncrementPointer == 0x00181063
    assert ds.PhotometricInterpretation == "YBR_PARTIAL_420" and ds.LossyImageCompression == "01"
    frames = list(decode_frames(ds))
    assert len(frames) == len(clip)
    assert all(psnr(got, want) > 28 for got, want in zip(frames, clip, strict=True))
    with av.open(io.BytesIO(b"".join(generate_fragments(ds.PixelData)))) as container:
        assert container.format.name == "mpegts"
        assert [stream.type for stream in container.streams] == ["video"]
        assert container.streams.video[0].average_rate == Fraction(30000, 1001)


@pytest.mark.parametrize("tsyntax", WRITTEN, ids=lambda uid: uid.name)
def test_video_encoding_is_byte_identical_across_runs(clip: np.ndarray, tsyntax: UID) -> None:
    assert video_instance(clip, "40", tsyntax).PixelData == video_instance(clip, "40", tsyntax).PixelData


@pytest.mark.parametrize("tsyntax", [MPEG4HP41BD, MPEG4HP42STEREO], ids=lambda uid: uid.name)
def test_syntaxes_we_only_decode_are_re_encoded_as_h264(clip: np.ndarray, tsyntax: UID) -> None:
    ds = video_instance(clip, "40", MPEG4HP41)
    ds.file_meta.TransferSyntaxUID = tsyntax
    assert tsyntax in DECODABLE_TRANSFER_SYNTAXES
    encode_frames(ds, decode_frames(ds))
    assert ds.file_meta.TransferSyntaxUID == MPEG4HP41
    assert len(list(decode_frames(ds))) == len(clip)


def test_audio_in_the_input_is_dropped(clip: np.ndarray) -> None:
    output = io.BytesIO()
    with av.open(output, mode="w", format="mpegts") as container:
        video = container.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 160, 120, "yuv420p"
        audio = container.add_stream("mp2", rate=48000)
        for index, frame in enumerate(clip):
            picture = av.VideoFrame.from_ndarray(frame, format="rgb24")
            picture.pts = index
            container.mux(video.encode(picture))
            samples = av.AudioFrame.from_ndarray(
                np.zeros((1, 1920), dtype=np.int16), format="s16", layout="mono"
            )
            samples.sample_rate, samples.pts = 48000, index * 1920
            container.mux(audio.encode(samples))
        container.mux(video.encode(None))
        container.mux(audio.encode(None))
    ds = rgb_instance(clip[:1], VideoPhotographicImageStorage)
    ds.file_meta.TransferSyntaxUID = MPEG4HP41
    ds.NumberOfFrames, ds.FrameTime = len(clip), "40"
    ds.PixelData = encapsulate([output.getvalue()], has_bot=False)
    frames = list(decode_frames(ds))
    assert len(frames) == len(clip)
    encode_frames(ds, frames)
    with av.open(io.BytesIO(b"".join(generate_fragments(ds.PixelData)))) as container:
        assert [stream.type for stream in container.streams] == ["video"]


def test_a_bare_elementary_stream_decodes(clip: np.ndarray) -> None:
    ds = video_instance(clip, "40", MPEG4HP41)
    with av.open(io.BytesIO(b"".join(generate_fragments(ds.PixelData)))) as source:
        annex_b = b"".join(bytes(packet) for packet in source.demux(video=0))
    ds.PixelData = encapsulate([annex_b], has_bot=False)
    assert len(list(decode_frames(ds))) == len(clip)


def test_fewer_frames_than_declared_is_a_pixel_data_error(clip: np.ndarray) -> None:
    ds = video_instance(clip, "40", MPEG4HP41)
    ds.NumberOfFrames = len(clip) + 5
    with pytest.raises(PixelDataError):
        list(decode_frames(ds))


def test_a_garbage_bitstream_is_a_pixel_data_error(clip: np.ndarray) -> None:
    ds = video_instance(clip, "40", MPEG4HP41)
    ds.PixelData = encapsulate([bytes(range(256)) * 64], has_bot=False)
    with pytest.raises(PixelDataError):
        list(decode_frames(ds))


def test_frame_rate_comes_from_the_bitstream_when_attributes_are_absent(clip: np.ndarray) -> None:
    ds = video_instance(clip, "40", MPEG4HP41)
    for keyword in ("FrameTime", "CineRate", "FrameIncrementPointer"):
        delattr(ds, keyword)
    encode_frames(ds, decode_frames(ds))
    assert float(ds.FrameTime) == 40.0 and ds.CineRate == 25


def test_frames_of_another_size_than_declared_are_a_pixel_data_error(clip: np.ndarray) -> None:
    ds = video_instance(clip, "40", MPEG4HP41)
    ds.Rows = 100
    with pytest.raises(PixelDataError, match="Rows/Columns"):
        next(decode_frames(ds))


def test_mpeg2_at_a_rate_mpeg2_cannot_signal_becomes_h264(clip: np.ndarray) -> None:
    ds = video_instance(clip, "66.6667", MPEG4HP41)  # 15 frames/s
    ds.file_meta.TransferSyntaxUID = MPEG2MPML  # as if a camera had written MPEG-2 at 15 frames/s
    with pytest.raises(UnsupportedPixelFormat):
        encode_frames(ds, iter(clip), MPEG2MPML)
    encode_frames(ds, iter(clip))
    assert ds.file_meta.TransferSyntaxUID == MPEG4HP41 and float(ds.FrameTime) == pytest.approx(66.6667)
