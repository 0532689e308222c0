"""Decode and encode the video transfer syntaxes (MPEG-2, MPEG-4 AVC/H.264, HEVC) with PyAV.

A Video Photographic instance carries one bitstream in its Pixel Data, usually in an MPEG-2
Transport Stream or MP4 container that may multiplex audio (PS3.5 8.2.5-8.2.9). Frames are
decoded one at a time from that stream; audio is never read, and the output holds one video
stream in an MPEG-2 Transport Stream, so voices do not survive a re-encode.

Encoders are configured for byte-identical output across runs (single-threaded, fixed rate
control parameters, no AVX-512 in x264, no wall-clock metadata) so that a retried instance
reaches the PACS unchanged.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_fragments
from pydicom.uid import (
    HEVCM10P51,
    HEVCMP51,
    MPEG2MPHL,
    MPEG2MPHLF,
    MPEG2MPML,
    MPEG2MPMLF,
    MPEG4HP41,
    MPEG4HP41BD,
    MPEG4HP41BDF,
    MPEG4HP41F,
    MPEG4HP42STEREO,
    MPEG4HP42STEREOF,
    MPEG4HP422D,
    MPEG4HP422DF,
    MPEG4HP423D,
    MPEG4HP423DF,
    UID,
)

from gateway.errors import PixelDataError, UnsupportedPixelFormat

_MPEG2 = frozenset({MPEG2MPML, MPEG2MPMLF, MPEG2MPHL, MPEG2MPHLF})
_H264 = frozenset(
    {
        MPEG4HP41, MPEG4HP41F, MPEG4HP41BD, MPEG4HP41BDF, MPEG4HP422D, MPEG4HP422DF,
        MPEG4HP423D, MPEG4HP423DF, MPEG4HP42STEREO, MPEG4HP42STEREOF,
    }
)
_HEVC = frozenset({HEVCMP51, HEVCM10P51})

DECODABLE_TRANSFER_SYNTAXES: frozenset[UID] = _MPEG2 | _H264 | _HEVC
"""Video syntaxes whose base layer FFmpeg decodes (stereo inputs give the base view only)."""

ENCODABLE_TRANSFER_SYNTAXES: frozenset[UID] = frozenset(
    {MPEG2MPML, MPEG2MPMLF, MPEG2MPHL, MPEG2MPHLF, MPEG4HP41, MPEG4HP41F, MPEG4HP422D, MPEG4HP422DF, HEVCMP51}
)
"""Syntaxes we write. Blu-ray compatible, 3D and stereo constraints are not reproduced, and
HEVC Main 10 would need a 10-bit pipeline: those inputs are re-encoded as H.264 (see
:func:`default_target`)."""

LOSSY_METHODS: dict[UID, str] = {
    **{uid: "ISO_13818_2" for uid in _MPEG2},
    **{uid: "ISO_14496_10" for uid in _H264},
    **{uid: "ISO_23008_2" for uid in _HEVC},
}
"""Lossy Image Compression Method (0028,2114) defined terms."""

H264_CRF = 18
"""x264 constant rate factor: visually lossless for clinical video."""

HEVC_CRF = 20
"""x265 constant rate factor of about the same quality as :data:`H264_CRF`."""

MPEG2_BITS_PER_PIXEL = 0.3
"""MPEG-2 target bit rate per pixel per frame (about 2.8 Mbit/s at 640x480, 30 frames/s)."""

MPEG2_FRAME_RATES = frozenset(
    Fraction(numerator, denominator)
    for numerator, denominator in (
        (24000, 1001), (24, 1), (25, 1), (30000, 1001), (30, 1), (50, 1), (60000, 1001), (60, 1)
    )
)
"""The frame_rate_code values of ISO/IEC 13818-2 Table 6-4."""

_ELEMENTARY_FORMATS = {
    **{uid: "mpegvideo" for uid in _MPEG2},
    **{uid: "h264" for uid in _H264},
    **{uid: "hevc" for uid in _HEVC},
}


@dataclass(frozen=True)
class EncodedVideo:
    """The Pixel Data of a re-encoded clip and the values the Image Pixel and Cine modules need."""

    pixel_data: bytes
    rows: int
    columns: int
    number_of_frames: int
    frame_rate: Fraction


def default_target(source: UID, frame_rate: Fraction) -> UID:
    """The syntax a re-encode of `source` is written in: the same where we can, else H.264.

    MPEG-2 can only signal the broadcast frame rates (:data:`MPEG2_FRAME_RATES`); other MPEG-2
    clips become H.264. H.264 High Profile Level 4.1 is limited to 30 frames/s at 1080p; faster clips get Level 4.2.
    """
    if source in ENCODABLE_TRANSFER_SYNTAXES and (source not in _MPEG2 or frame_rate in MPEG2_FRAME_RATES):
        return source
    return MPEG4HP422D if frame_rate > 30 else MPEG4HP41


def bitstream(ds: Dataset) -> bytes:
    """The video bitstream (its container included) from the encapsulated Pixel Data."""
    try:
        return b"".join(generate_fragments(ds.PixelData))
    except Exception as exc:  # malformed item tags or lengths
        raise PixelDataError(f"the encapsulated pixel data is malformed ({type(exc).__name__})") from exc


def _open(data: bytes, tsyntax: UID) -> av.container.InputContainer:
    """Open a bitstream: FFmpeg probes TS/MP4/PS containers; a bare stream needs its format named."""
    try:
        return av.open(io.BytesIO(data), mode="r")
    except av.error.FFmpegError:
        pass
    try:
        return av.open(io.BytesIO(data), mode="r", format=_ELEMENTARY_FORMATS[tsyntax])
    except av.error.FFmpegError as exc:
        raise PixelDataError(f"the video bitstream cannot be opened ({type(exc).__name__})") from exc


def decode_frames(ds: Dataset) -> Iterator[np.ndarray]:
    """Yield the frames of a video instance one at a time as ``H x W x 3`` ``uint8`` RGB.

    Only the first video stream is decoded; audio and other streams are skipped.

    Raises
    ------
    PixelDataError
        The bitstream does not open or decode, has no video stream, its frame size differs
        from Rows x Columns, or it holds fewer frames than Number of Frames declares.
    """
    tsyntax = UID(str(ds.file_meta.TransferSyntaxUID))
    expected = (int(ds.get("Rows", 0)), int(ds.get("Columns", 0)))
    count = 0
    with _open(bitstream(ds), tsyntax) as container:
        for frame in read_video_stream(container):
            if frame.shape[:2] != expected:
                raise PixelDataError(
                    f"frame {count} is {frame.shape[1]}x{frame.shape[0]}, Rows/Columns declare "
                    f"{expected[1]}x{expected[0]}"
                )
            yield frame
            count += 1
    declared = int(ds.get("NumberOfFrames", count) or count)
    if count == 0 or count < declared:
        raise PixelDataError(f"the bitstream holds {count} frames, Number of Frames declares {declared}")


def read_video_stream(container: av.container.InputContainer) -> Iterator[np.ndarray]:
    """The frames of the first video stream of `container` as RGB, one at a time; other
    streams (audio above all) are never decoded.

    Raises
    ------
    PixelDataError
        There is no video stream, or a frame does not decode.
    """
    if not container.streams.video:
        raise PixelDataError("the bitstream has no video stream")
    count = 0
    try:
        for frame in container.decode(container.streams.video[0]):
            yield frame.to_ndarray(format="rgb24")
            count += 1
    except av.error.FFmpegError as exc:
        raise PixelDataError(f"frame {count} does not decode ({type(exc).__name__})") from exc


def frame_rate(ds: Dataset) -> Fraction:
    """Frames per second from Frame Time, Cine Rate or Recommended Display Frame Rate.

    Frame Time is preferred because it is what Frame Increment Pointer points to in the Cine
    module; 33.367 ms is read back as 30000/1001. When no attribute is present the rate is read
    from the bitstream.

    Raises
    ------
    PixelDataError
        No attribute and no bitstream gives a positive rate.
    """
    frame_time = float(ds.get("FrameTime", 0) or 0)
    if frame_time > 0:
        return _as_rate(1000 / frame_time)
    for keyword in ("CineRate", "RecommendedDisplayFrameRate"):
        value = float(ds.get(keyword, 0) or 0)
        if value > 0:
            return _as_rate(value)
    tsyntax = UID(str(ds.file_meta.TransferSyntaxUID))
    if tsyntax in DECODABLE_TRANSFER_SYNTAXES:
        with _open(bitstream(ds), tsyntax) as container:
            rate = container.streams.video[0].average_rate if container.streams.video else None
        if rate:
            return _as_rate(float(rate))
    raise PixelDataError("no frame rate: Frame Time, Cine Rate and the bitstream give none")


def _as_rate(fps: float) -> Fraction:
    """`fps` as an exact rate: whole numbers and NTSC rates (N x 1000/1001) are recognised.

    Frame Time is written with a few digits (33.3667 ms), so the exact 30000/1001 that MPEG-2
    and the x264 timing need has to be recovered rather than approximated.
    """
    for candidate in (Fraction(round(fps)), Fraction(round(fps * 1.001) * 1000, 1001)):
        if candidate and abs(float(candidate) - fps) < 5e-4 * fps:
            return candidate
    return Fraction(fps).limit_denominator(1000)


def encode_frames(ds: Dataset, frames: Iterable[np.ndarray], target: UID) -> EncodedVideo:
    """Encode RGB `frames` as one video stream in an MPEG-2 Transport Stream, in one fragment.

    The frame rate is that of `ds` (:func:`frame_rate`), so timing survives the re-encode.

    Raises
    ------
    UnsupportedPixelFormat
        Odd frame sizes, which 4:2:0 chroma subsampling cannot carry, or an MPEG-2 target with
        a frame rate MPEG-2 cannot signal.
    """
    rate = frame_rate(ds)
    if target in _MPEG2 and rate not in MPEG2_FRAME_RATES:
        raise UnsupportedPixelFormat(f"MPEG-2 cannot carry {float(rate):.3f} frames/s")
    output = io.BytesIO()
    with av.open(output, mode="w", format="mpegts") as container:
        rows, columns, count = write_video_stream(container, frames, target, rate)
    pixel_data = encapsulate([output.getvalue()], fragments_per_frame=1, has_bot=False)
    return EncodedVideo(pixel_data, rows, columns, count, rate)


def write_video_stream(
    container: av.container.OutputContainer, frames: Iterable[np.ndarray], target: UID, rate: Fraction
) -> tuple[int, int, int]:
    """Encode RGB `frames` as a new video stream of `container` with `target`'s codec settings.

    Returns
    -------
    tuple[int, int, int]
        Rows, columns and number of frames written.

    Raises
    ------
    UnsupportedPixelFormat
        Odd frame sizes, which 4:2:0 chroma subsampling cannot carry.
    """
    stream = None
    rows = columns = count = 0
    for frame in frames:
        if stream is None:
            rows, columns = frame.shape[:2]
            if rows % 2 or columns % 2:
                raise UnsupportedPixelFormat("video frames need an even number of rows and columns")
            stream = _add_stream(container, target, rate, columns, rows)
        picture = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="yuv420p")
        picture.pts = count
        container.mux(stream.encode(picture))
        count += 1
    if stream is not None:
        container.mux(stream.encode(None))
    return rows, columns, count


_X264_CPU_BITS = {
    "mmx": 0, "sse": 2, "sse2": 3, "abm": 4, "pni": 5, "ssse3": 6, "sse4_1": 7, "sse4_2": 8,
    "avx": 9, "xop": 10, "fma4": 11, "fma": 12, "bmi1": 13, "bmi2": 14, "avx2": 15,
}
"""``/proc/cpuinfo`` flag -> bit of x264's ``X264_CPU_*`` flags (x264.h); AVX-512 (bit 16) is
deliberately absent."""


@functools.cache
def _x264_cpu_option() -> str:
    """An x264 ``asm`` option with the CPU's features up to AVX2, never AVX-512.

    With its AVX-512 code the x264 in PyAV's wheel wrote different bitstreams for the same
    frames from one run to the next (depending on what the heap held before); without it the
    output is byte-identical. x264 has no switch for "all but AVX-512", so the features are read
    from ``/proc/cpuinfo`` (a Linux gateway); elsewhere x264 detects them itself.
    """
    try:
        flags = next(
            set(line.split(":", 1)[1].split())
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("flags")
        )
    except (OSError, StopIteration):
        return ""
    mask = sum(1 << bit for flag, bit in _X264_CPU_BITS.items() if flag in flags)
    if "sse" in flags:
        mask |= 1 << 1  # MMX2 (MMXEXT) comes with SSE
    if "avx" in flags:
        mask |= (1 << 18) | (1 << 20)  # 64-byte cache lines, fast SSE2: what x264 picks itself
    return f":asm={mask}"


def _add_stream(
    container: av.container.OutputContainer, target: UID, rate: Fraction, width: int, height: int
) -> av.video.stream.VideoStream:
    """A video stream whose encoder settings fit `target`'s profile and level, deterministically."""
    if target in _MPEG2:
        stream = container.add_stream("mpeg2video", rate=rate)
        stream.bit_rate = int(width * height * float(rate) * MPEG2_BITS_PER_PIXEL)
        stream.codec_context.gop_size = max(1, round(float(rate) / 2))
    elif target in _HEVC:
        stream = container.add_stream("libx265", rate=rate)
        stream.options = {
            "crf": str(HEVC_CRF),
            "preset": "faster",
            "x265-params": "pools=none:frame-threads=1:log-level=error:info=0",
        }
    else:
        level = "4.2" if target in (MPEG4HP422D, MPEG4HP422DF) else "4.1"
        stream = container.add_stream("libx264", rate=rate)
        stream.options = {
            "crf": str(H264_CRF),
            "preset": "faster",
            "profile": "high",
            "level": level,
            # A fixed GOP (no scene-cut decisions) keeps the keyframe positions independent of
            # small pixel differences between masks.
            "x264-params": f"keyint={max(1, round(float(rate) * 2))}:min-keyint=1:scenecut=0"
            f":cpu-independent=1{_x264_cpu_option()}",
        }
    # One thread: FFmpeg's automatic threading made x264 output differ from run to run.
    stream.codec_context.thread_count = 1
    stream.width = width
    stream.height = height
    stream.pix_fmt = "yuv420p"
    stream.time_base = Fraction(1) / rate
    return stream


def set_cine_module(ds: Dataset, video: EncodedVideo) -> None:
    """Make Frame Time, Cine Rate and Frame Increment Pointer agree with the encoded clip."""
    ds.FrameTime = f"{float(1000 / video.frame_rate):.6g}"
    ds.CineRate = round(video.frame_rate)
    ds.FrameIncrementPointer = 0x00181063  # Frame Time
