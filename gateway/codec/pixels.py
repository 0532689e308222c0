"""Decode and encode the frames of photographic DICOM instances.

The mask works on 8-bit RGB frames (``H x W x 3`` ``uint8``) and nothing else, so this module is
the one place that knows about transfer syntaxes, photometric interpretations, planar
configuration and bit depths. Frames are produced and consumed one at a time so that a long
multi-frame instance is never held in memory as decoded RGB all at once: only its encoded form
(the input and the output Pixel Data) is.

Still-image codecs are pydicom's decoders and encoders (with the pylibjpeg, pyjpegls and
openjpeg plugins); JPEG Baseline is encoded with Pillow (libjpeg-turbo) because pydicom has no
JPEG encoder; the video transfer syntaxes are handled by :mod:`gateway.codec.video`.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, convert_color_space, get_decoder, get_encoder
from pydicom.pixels.utils import get_expected_length
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    OphthalmicPhotography16BitImageStorage,
    RLELossless,
)

from gateway.codec import video as video_codec
from gateway.errors import PixelDataError, UnsupportedPixelFormat, UnsupportedTransferSyntax

NATIVE_TRANSFER_SYNTAXES: frozenset[UID] = frozenset(
    {ImplicitVRLittleEndian, ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian}
)
"""Uncompressed pixel data; Deflate compresses the whole dataset, not the frames."""

STILL_TRANSFER_SYNTAXES: frozenset[UID] = frozenset(
    {
        RLELossless,
        JPEGBaseline8Bit,
        JPEGExtended12Bit,
        JPEGLossless,
        JPEGLosslessSV1,
        JPEGLSLossless,
        JPEGLSNearLossless,
        JPEG2000Lossless,
        JPEG2000,
    }
)
"""Encapsulated syntaxes with one codestream per frame."""

DECODABLE_TRANSFER_SYNTAXES: frozenset[UID] = (
    NATIVE_TRANSFER_SYNTAXES | STILL_TRANSFER_SYNTAXES | video_codec.DECODABLE_TRANSFER_SYNTAXES
)
"""Every transfer syntax :func:`decode_frames` accepts (the SCP accepts exactly these)."""

ENCODABLE_TRANSFER_SYNTAXES: frozenset[UID] = frozenset(
    {
        ImplicitVRLittleEndian,
        ExplicitVRLittleEndian,
        DeflatedExplicitVRLittleEndian,
        RLELossless,
        JPEGBaseline8Bit,
        JPEGLSLossless,
        JPEGLSNearLossless,
        JPEG2000Lossless,
        JPEG2000,
    }
) | video_codec.ENCODABLE_TRANSFER_SYNTAXES
"""Every transfer syntax :func:`encode_frames` writes (forward proposes these)."""

LOSSY_METHODS: dict[UID, str] = {
    JPEGBaseline8Bit: "ISO_10918_1",
    JPEGLSNearLossless: "ISO_14495_1",
    JPEG2000: "ISO_15444_1",
    **video_codec.LOSSY_METHODS,
}
"""Lossy Image Compression Method (0028,2114) defined terms of the lossy syntaxes we write."""

JPEG_BASELINE_QUALITY = 90
"""libjpeg quality of JPEG Baseline re-encodes: visually lossless for photographs."""

JPEG2000_COMPRESSION_RATIO = 10.0
"""Target compression ratio of lossy JPEG 2000 re-encodes (about what cameras write)."""

JPEGLS_NEAR_LOSSLESS_ERROR = 2
"""Maximum absolute sample error (NEAR) of JPEG-LS near-lossless re-encodes."""

_PHOTOMETRIC_INTERPRETATIONS = frozenset(
    {"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT", "MONOCHROME1", "MONOCHROME2", "PALETTE COLOR"}
)

_PIXEL_VALUE_ATTRIBUTES = (
    "SmallestImagePixelValue",
    "LargestImagePixelValue",
    "PixelPaddingValue",
    "PixelPaddingRangeLimit",
    "RedPaletteColorLookupTableDescriptor",
    "GreenPaletteColorLookupTableDescriptor",
    "BluePaletteColorLookupTableDescriptor",
    "RedPaletteColorLookupTableData",
    "GreenPaletteColorLookupTableData",
    "BluePaletteColorLookupTableData",
    "SegmentedRedPaletteColorLookupTableData",
    "SegmentedGreenPaletteColorLookupTableData",
    "SegmentedBluePaletteColorLookupTableData",
    "PaletteColorLookupTableUID",
    "WindowCenter",
    "WindowWidth",
    "WindowCenterWidthExplanation",
    "VOILUTSequence",
    "VOILUTFunction",
)
"""Attributes that describe the old pixel values and are wrong for re-encoded RGB frames."""


def transfer_syntax_of(ds: Dataset) -> UID:
    """Return the transfer syntax of `ds` from its file meta.

    Raises
    ------
    UnsupportedTransferSyntax
        When the dataset has no (0002,0010) Transfer Syntax UID.
    """
    file_meta = getattr(ds, "file_meta", None)
    uid = getattr(file_meta, "TransferSyntaxUID", None) if file_meta is not None else None
    if not uid:
        raise UnsupportedTransferSyntax("the dataset has no Transfer Syntax UID")
    return UID(str(uid))


def decode_frames(ds: Dataset) -> Iterator[np.ndarray]:
    """Yield the frames of `ds` one at a time as ``H x W x 3`` ``uint8`` RGB.

    YBR colour spaces are converted to RGB, monochrome and palette colour to RGB, planar
    configuration to interleaved samples, and more than 8 bits stored are scaled linearly to 8
    bits (Ophthalmic Photography 16 Bit): the mask needs the picture, not the full precision.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        An image instance with Pixel Data and its file meta.

    Yields
    ------
    numpy.ndarray
        One frame, ``H x W x 3`` ``uint8`` RGB.

    Raises
    ------
    UnsupportedTransferSyntax
        The transfer syntax is not in :data:`DECODABLE_TRANSFER_SYNTAXES`.
    UnsupportedPixelFormat
        Samples per pixel, bits allocated or photometric interpretation are ones we do not handle.
    PixelDataError
        The pixel data is missing, shorter than its attributes declare, or does not decode.
    """
    tsyntax = transfer_syntax_of(ds)
    if tsyntax not in DECODABLE_TRANSFER_SYNTAXES:
        raise UnsupportedTransferSyntax(f"cannot decode transfer syntax {tsyntax}")
    if "PixelData" not in ds:
        raise PixelDataError("the dataset has no Pixel Data")
    if tsyntax in video_codec.DECODABLE_TRANSFER_SYNTAXES:
        yield from video_codec.decode_frames(ds)
        return
    _check_pixel_format(ds)
    if tsyntax in NATIVE_TRANSFER_SYNTAXES:
        _check_native_length(ds)
    decoder = get_decoder(tsyntax)
    index = 0
    try:
        for frame, meta in decoder.iter_array(ds, as_rgb=True):
            yield _to_rgb8(frame, meta, ds)
            index += 1
    except (PixelDataError, UnsupportedPixelFormat):
        raise
    except Exception as exc:  # the codec plugins raise anything from ValueError to RuntimeError
        raise PixelDataError(f"frame {index} does not decode ({type(exc).__name__})") from exc
    declared = int(ds.get("NumberOfFrames", 1) or 1)
    if index < declared:
        raise PixelDataError(f"the pixel data holds {index} frames, Number of Frames declares {declared}")


def _check_pixel_format(ds: Dataset) -> None:
    """Refuse pixel layouts we cannot turn into RGB before touching the codestream."""
    try:
        samples = int(ds.SamplesPerPixel)
        bits_allocated = int(ds.BitsAllocated)
        bits_stored = int(ds.get("BitsStored", bits_allocated))
        photometric = str(ds.PhotometricInterpretation).strip()
        rows, columns = int(ds.Rows), int(ds.Columns)
    except (AttributeError, TypeError, ValueError) as exc:
        raise PixelDataError("an Image Pixel module attribute is missing or invalid") from exc
    if photometric not in _PHOTOMETRIC_INTERPRETATIONS:
        raise UnsupportedPixelFormat(f"photometric interpretation {photometric!r} is not supported")
    if samples not in (1, 3) or (samples == 3) != photometric.startswith(("RGB", "YBR")):
        raise UnsupportedPixelFormat(f"{samples} samples per pixel with {photometric} is not supported")
    if bits_allocated not in (8, 16) or not 1 <= bits_stored <= bits_allocated:
        raise UnsupportedPixelFormat(
            f"bits allocated {bits_allocated} / stored {bits_stored} is not supported"
        )
    if rows < 1 or columns < 1:
        raise PixelDataError("Rows and Columns must be positive")


def _check_native_length(ds: Dataset) -> None:
    """Pixel data shorter than Rows x Columns x samples x frames declare is corrupt, not padding."""
    expected = get_expected_length(ds, unit="bytes")
    held = len(ds.PixelData or b"")  # an empty element reads as None
    if held < expected:
        raise PixelDataError(f"the pixel data holds {held} bytes, its attributes declare {expected}")


def _to_rgb8(frame: np.ndarray, meta: dict, ds: Dataset) -> np.ndarray:
    """Convert one decoded frame (as the decoder left it) to ``H x W x 3`` ``uint8`` RGB."""
    photometric = str(meta["photometric_interpretation"])
    bits_stored = int(meta.get("bits_stored", ds.get("BitsStored", 8)))
    if photometric == "PALETTE COLOR":
        frame = apply_color_lut(frame, ds)
        bits_stored = frame.dtype.itemsize * 8
    elif photometric in ("YBR_FULL", "YBR_FULL_422"):
        frame = convert_color_space(frame, photometric, "RGB")
    frame = _scale_to_8_bits(frame, bits_stored, int(meta.get("pixel_representation", 0)))
    if photometric == "MONOCHROME1":
        frame = 255 - frame
    if frame.ndim == 2:
        frame = np.repeat(frame[:, :, np.newaxis], 3, axis=2)
    return np.ascontiguousarray(frame)


def _scale_to_8_bits(frame: np.ndarray, bits_stored: int, pixel_representation: int) -> np.ndarray:
    """Map the stored value range linearly onto 0..255 (signed values are offset first)."""
    if frame.dtype == np.uint8 and bits_stored == 8:
        return frame
    values = frame.astype(np.int64)
    if pixel_representation == 1:
        values += 1 << (bits_stored - 1)
    maximum = (1 << bits_stored) - 1
    values = np.clip(values, 0, maximum)
    return ((values * 255 + maximum // 2) // maximum).astype(np.uint8)


@dataclass(frozen=True)
class _EncodedPixels:
    """The new Pixel Data and what the Image Pixel module must say about it."""

    pixel_data: bytes
    photometric_interpretation: str
    bits: int
    rows: int
    columns: int
    number_of_frames: int
    encapsulated: bool


def encode_frames(
    ds: Dataset, frames: Iterable[np.ndarray], transfer_syntax_uid: str | None = None
) -> None:
    """Replace the Pixel Data of `ds` with `frames`, encoded in `transfer_syntax_uid`.

    The Image Pixel module attributes, Number of Frames and (0002,0010) Transfer Syntax UID are
    rewritten to describe the new pixel data; attributes that described the old pixel values
    (palette, window, smallest/largest value) are removed. Lossy encodes set Lossy Image
    Compression to ``01`` and append their ratio and method to the values already present, so
    that the history of earlier lossy steps is kept. Ophthalmic Photography 16 Bit instances are
    written with 16 bits so that they stay valid for their IOD.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        The instance to change in place.
    frames : Iterable[numpy.ndarray]
        ``H x W x 3`` ``uint8`` RGB frames, all the same size; consumed one at a time.
    transfer_syntax_uid : str, optional
        The syntax to write; by default the input's syntax when it is in
        :data:`ENCODABLE_TRANSFER_SYNTAXES`, else Explicit VR Little Endian (video: H.264, see
        :func:`gateway.codec.video.default_target`).

    Raises
    ------
    UnsupportedTransferSyntax
        `transfer_syntax_uid` is not one we can encode.
    UnsupportedPixelFormat
        The target syntax cannot carry the required bit depth.
    ValueError
        `frames` is empty or its frames are not RGB ``uint8`` of one size.
    """
    target = UID(transfer_syntax_uid) if transfer_syntax_uid else _default_target(ds)
    if target not in ENCODABLE_TRANSFER_SYNTAXES:
        raise UnsupportedTransferSyntax(f"cannot encode transfer syntax {target}")
    if target in video_codec.ENCODABLE_TRANSFER_SYNTAXES:
        video = video_codec.encode_frames(ds, _checked(frames), target)
        pixels = _EncodedPixels(
            video.pixel_data, "YBR_PARTIAL_420", 8, video.rows, video.columns,
            video.number_of_frames, encapsulated=True,
        )
        video_codec.set_cine_module(ds, video)
    else:
        bits = 16 if ds.get("SOPClassUID") == OphthalmicPhotography16BitImageStorage else 8
        pixels = _encode_still_frames(_checked(frames), target, bits)
    _set_image_pixel_module(ds, pixels)
    if getattr(ds, "file_meta", None) is None:
        ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = target
    if target in LOSSY_METHODS:
        uncompressed = pixels.rows * pixels.columns * 3 * pixels.number_of_frames
        _record_lossy_compression(ds, uncompressed / len(pixels.pixel_data), LOSSY_METHODS[target])


def _default_target(ds: Dataset) -> UID:
    """The input's syntax when we can write it (keeps the PACS's storage expectations)."""
    try:
        source = transfer_syntax_of(ds)
    except UnsupportedTransferSyntax:
        return ExplicitVRLittleEndian
    if source in video_codec.DECODABLE_TRANSFER_SYNTAXES:
        return video_codec.default_target(source, video_codec.frame_rate(ds))
    if source in ENCODABLE_TRANSFER_SYNTAXES:
        return source
    return ExplicitVRLittleEndian


def _checked(frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """Pass frames through, refusing anything but one size of ``H x W x 3`` ``uint8``."""
    shape = None
    for frame in frames:
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError("frames must be H x W x 3 uint8 RGB")
        if shape is None:
            shape = frame.shape
        elif frame.shape != shape:
            raise ValueError("all frames must have the same size")
        yield frame
    if shape is None:
        raise ValueError("there are no frames to encode")


def _encode_still_frames(frames: Iterator[np.ndarray], target: UID, bits: int) -> _EncodedPixels:
    """Encode frame by frame: native bytes are appended, compressed frames are fragments."""
    native = target in NATIVE_TRANSFER_SYNTAXES
    photometric = _photometric_written(target)
    chunks: list[bytes] = []
    rows = columns = count = 0
    for frame in frames:
        rows, columns = frame.shape[:2]
        samples = frame.astype(np.uint16) * 257 if bits == 16 else frame
        chunks.append(samples.tobytes() if native else _encode_frame(samples, target, photometric, bits))
        count += 1
    if native:
        pixel_data = b"".join(chunks)
        pixel_data += b"\0" * (len(pixel_data) % 2)
    else:
        # The Basic Offset Table holds 32-bit offsets: beyond 4 GiB it must stay empty.
        fits = sum(len(chunk) + 8 for chunk in chunks) < 2**32
        pixel_data = encapsulate(chunks, has_bot=fits)
    return _EncodedPixels(pixel_data, photometric, bits, rows, columns, count, encapsulated=not native)


def _photometric_written(target: UID) -> str:
    """The colour space each encoder stores: JPEG codecs decorrelate colour, others keep RGB."""
    if target == JPEGBaseline8Bit:
        return "YBR_FULL_422"
    if target == JPEG2000Lossless:
        return "YBR_RCT"
    if target == JPEG2000:
        return "YBR_ICT"
    return "RGB"


def _encode_frame(samples: np.ndarray, target: UID, photometric: str, bits: int) -> bytes:
    """One frame's codestream in `target`."""
    if target == JPEGBaseline8Bit:
        if bits != 8:
            raise UnsupportedPixelFormat("JPEG Baseline carries 8 bits only")
        buffer = io.BytesIO()
        # subsampling=1 is 4:2:2, what YBR_FULL_422 declares for JPEG Baseline.
        Image.fromarray(samples).save(buffer, "JPEG", quality=JPEG_BASELINE_QUALITY, subsampling=1)
        return buffer.getvalue()
    options: dict[str, Any] = {}  # codec-specific keywords of the encoder
    if target == JPEG2000:
        options["j2k_cr"] = [JPEG2000_COMPRESSION_RATIO]
    elif target == JPEGLSNearLossless:
        options["jls_error"] = JPEGLS_NEAR_LOSSLESS_ERROR
    return get_encoder(target).encode(
        samples,
        rows=samples.shape[0],
        columns=samples.shape[1],
        samples_per_pixel=3,
        bits_allocated=bits,
        bits_stored=bits,
        pixel_representation=0,
        photometric_interpretation=photometric,
        planar_configuration=0,
        number_of_frames=1,
        **options,
    )


def _set_image_pixel_module(ds: Dataset, pixels: _EncodedPixels) -> None:
    """Make the Image Pixel module (and Number of Frames) describe the new Pixel Data."""
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = pixels.photometric_interpretation
    ds.PlanarConfiguration = 0
    ds.Rows = pixels.rows
    ds.Columns = pixels.columns
    ds.BitsAllocated = pixels.bits
    ds.BitsStored = pixels.bits
    ds.HighBit = pixels.bits - 1
    ds.PixelRepresentation = 0
    if "NumberOfFrames" in ds or pixels.number_of_frames > 1:
        ds.NumberOfFrames = pixels.number_of_frames
    for keyword in _PIXEL_VALUE_ATTRIBUTES:
        if keyword in ds:
            delattr(ds, keyword)
    for keyword in ("ExtendedOffsetTable", "ExtendedOffsetTableLengths"):
        if keyword in ds:
            delattr(ds, keyword)
    ds.PixelData = pixels.pixel_data
    element = ds["PixelData"]
    element.VR = "OB" if pixels.bits == 8 or pixels.encapsulated else "OW"
    element.is_undefined_length = pixels.encapsulated


def _record_lossy_compression(ds: Dataset, ratio: float, method: str) -> None:
    """Set Lossy Image Compression and append this step to the ratio and method history."""
    ratios = [float(value) for value in _as_list(ds.get("LossyImageCompressionRatio"))]
    methods = [str(value) for value in _as_list(ds.get("LossyImageCompressionMethod"))]
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionRatio = [*ratios, round(ratio, 2)]
    ds.LossyImageCompressionMethod = [*methods, method]


def _as_list(value: object) -> list:
    """A multi-valued element's value as a list (pydicom gives a scalar for one value)."""
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple, MultiValue)):
        return list(value)
    return [value]
