"""Decode and encode every transfer syntax the pixel layer claims, with photos shipped in packages.

Lossless syntaxes must round-trip exactly; lossy ones must stay close and record their history.
Files written by other software (dcmtk, the NEMA WG-04 samples) check that we read what others
write, not only what we write ourselves.
"""

from __future__ import annotations

import shutil
import subprocess
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate, generate_fragments
from pydicom.pixels import convert_color_space
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
    MultiFrameTrueColorSecondaryCaptureImageStorage,
    OphthalmicPhotography16BitImageStorage,
    RLELossless,
)

from gateway.codec.pixels import (
    DECODABLE_TRANSFER_SYNTAXES,
    ENCODABLE_TRANSFER_SYNTAXES,
    decode_frames,
    encode_frames,
)
from gateway.errors import PixelDataError, UnsupportedPixelFormat, UnsupportedTransferSyntax
from tests.support.instances import rgb_instance, written_and_read
from tests.support.pixels import psnr

SAMPLES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "dicom-samples"
LOSSLESS = [
    ImplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    RLELossless,
    JPEGLSLossless,
    JPEG2000Lossless,
]
LOSSY = {JPEGBaseline8Bit: "ISO_10918_1", JPEG2000: "ISO_15444_1", JPEGLSNearLossless: "ISO_14495_1"}


@pytest.mark.parametrize("tsyntax", LOSSLESS, ids=lambda uid: uid.name)
def test_lossless_round_trip_is_exact_frame_by_frame(small_face: np.ndarray, tsyntax: UID) -> None:
    frames = np.stack([small_face, small_face[::-1], small_face[:, ::-1]])
    ds = rgb_instance(frames)
    encode_frames(ds, iter(frames), tsyntax)
    back = written_and_read(ds)
    assert back.file_meta.TransferSyntaxUID == tsyntax
    assert back.NumberOfFrames == 3 and (back.Rows, back.Columns) == small_face.shape[:2]
    assert "LossyImageCompression" not in back
    decoded = list(decode_frames(back))
    assert len(decoded) == 3
    for got, want in zip(decoded, frames, strict=True):
        assert got.dtype == np.uint8 and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("tsyntax", list(LOSSY), ids=lambda uid: uid.name)
def test_lossy_round_trip_stays_close_and_keeps_the_lossy_history(small_face: np.ndarray, tsyntax: UID) -> None:
    ds = rgb_instance(small_face[np.newaxis])
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionRatio = 8.5
    ds.LossyImageCompressionMethod = "ISO_10918_1"
    encode_frames(ds, [small_face], tsyntax)
    back = written_and_read(ds)
    decoded = list(decode_frames(back))
    assert len(decoded) == 1
    assert psnr(decoded[0], small_face) > 32
    if tsyntax == JPEGLSNearLossless:
        assert np.abs(decoded[0].astype(int) - small_face).max() <= 2
    assert back.LossyImageCompression == "01"
    assert list(back.LossyImageCompressionMethod) == ["ISO_10918_1", LOSSY[tsyntax]]
    ratios = [float(value) for value in back.LossyImageCompressionRatio]
    assert ratios[0] == 8.5 and ratios[1] > 1.5


@pytest.mark.parametrize("tsyntax", [JPEGBaseline8Bit, JPEG2000, RLELossless], ids=lambda uid: uid.name)
def test_encoding_is_byte_identical_across_runs(small_face: np.ndarray, tsyntax: UID) -> None:
    outputs = []
    for _ in range(2):
        ds = rgb_instance(small_face[np.newaxis])
        encode_frames(ds, [small_face], tsyntax)
        outputs.append(ds.PixelData)
    assert outputs[0] == outputs[1]


def test_default_target_is_the_input_syntax_or_explicit_little_endian(small_face: np.ndarray) -> None:
    ds = rgb_instance(small_face[np.newaxis])
    encode_frames(ds, [small_face], RLELossless)
    encode_frames(ds, [small_face[::-1]])
    assert ds.file_meta.TransferSyntaxUID == RLELossless
    ds.file_meta.TransferSyntaxUID = JPEGLossless  # decodable, but we have no encoder for it
    encode_frames(ds, [small_face])
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    np.testing.assert_array_equal(next(decode_frames(written_and_read(ds))), small_face)


def test_image_pixel_module_describes_the_new_pixel_data(small_face: np.ndarray) -> None:
    grey = cv2.cvtColor(small_face, cv2.COLOR_RGB2GRAY)
    ds = rgb_instance(small_face[np.newaxis])
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    del ds.PlanarConfiguration
    ds.WindowCenter, ds.WindowWidth = 128, 256
    ds.PixelData = grey.tobytes()
    encode_frames(ds, decode_frames(ds), JPEG2000Lossless)
    assert (ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration) == (3, "YBR_RCT", 0)
    assert "WindowCenter" not in ds and "NumberOfFrames" not in ds
    np.testing.assert_array_equal(next(decode_frames(written_and_read(ds))), np.dstack([grey] * 3))


def test_ophthalmic_photography_16_bit_is_scaled_down_and_written_back_with_16_bits(small_face: np.ndarray) -> None:
    ds = rgb_instance(small_face[np.newaxis], OphthalmicPhotography16BitImageStorage)
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelData = (small_face.astype(np.uint16) * 257).tobytes()
    frame = next(decode_frames(ds))
    np.testing.assert_array_equal(frame, small_face)
    encode_frames(ds, [frame], JPEG2000Lossless)
    back = written_and_read(ds)
    assert (back.BitsAllocated, back.BitsStored, back.HighBit) == (16, 16, 15)
    np.testing.assert_array_equal(back.pixel_array, small_face.astype(np.uint16) * 257)
    np.testing.assert_array_equal(next(decode_frames(back)), small_face)


def test_12_bit_monochrome_maps_its_range_onto_8_bits(small_face: np.ndarray) -> None:
    grey = cv2.cvtColor(small_face, cv2.COLOR_RGB2GRAY).astype(np.uint16)
    ds = rgb_instance(small_face[np.newaxis])
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1"
    del ds.PlanarConfiguration
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelData = (grey.astype(np.uint32) * 4095 // 255).astype(np.uint16).tobytes()
    frame = next(decode_frames(ds))
    assert np.abs(frame[:, :, 0].astype(int) - (255 - grey)).max() <= 1  # MONOCHROME1: 0 is white
    assert (frame[:, :, 0] == frame[:, :, 2]).all()


@pytest.mark.parametrize("photometric", ["YBR_FULL", "YBR_FULL_422"])
def test_native_ybr_is_converted_to_rgb(small_face: np.ndarray, photometric: str) -> None:
    ybr = convert_color_space(small_face, "RGB", "YBR_FULL")
    ds = rgb_instance(small_face[np.newaxis])
    ds.PhotometricInterpretation = photometric
    if photometric == "YBR_FULL":
        ds.PixelData = ybr.tobytes()
    else:  # Y0 Y1 Cb Cr per pair of pixels, chroma from the left pixel
        pairs = ybr.reshape(small_face.shape[0], -1, 2, 3)
        packed = np.stack([pairs[:, :, 0, 0], pairs[:, :, 1, 0], pairs[:, :, 0, 1], pairs[:, :, 0, 2]], axis=-1)
        ds.PixelData = packed.astype(np.uint8).tobytes()
    frame = next(decode_frames(written_and_read(ds)))
    assert psnr(frame, small_face) > (40 if photometric == "YBR_FULL" else 28)


def test_planar_configuration_1_is_interleaved(small_face: np.ndarray) -> None:
    ds = rgb_instance(small_face[np.newaxis])
    ds.PlanarConfiguration = 1
    ds.PixelData = np.moveaxis(small_face, 2, 0).tobytes()
    np.testing.assert_array_equal(next(decode_frames(ds)), small_face)


def test_palette_colour_becomes_rgb(small_face: np.ndarray) -> None:
    indices = (cv2.cvtColor(small_face, cv2.COLOR_RGB2GRAY) // 16).astype(np.uint8)
    palette = (np.arange(16) * 17).astype(np.uint16) * 257  # 16-bit entries
    ds = rgb_instance(small_face[np.newaxis])
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "PALETTE COLOR"
    del ds.PlanarConfiguration
    for colour, lut in (("Red", palette), ("Green", palette[::-1].copy()), ("Blue", palette)):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [16, 0, 16])
        setattr(ds, f"{colour}PaletteColorLookupTableData", lut.tobytes())
    ds.PixelData = indices.tobytes()
    frame = next(decode_frames(ds))
    np.testing.assert_array_equal(frame[:, :, 0], indices * 17)
    np.testing.assert_array_equal(frame[:, :, 1], (15 - indices) * 17)


def test_multi_frame_decoding_streams_one_frame_at_a_time(small_face: np.ndarray) -> None:
    frames = np.stack([np.roll(small_face, shift, axis=1) for shift in range(40)])
    ds = rgb_instance(frames, MultiFrameTrueColorSecondaryCaptureImageStorage)
    encode_frames(ds, iter(frames), RLELossless)
    del frames
    decoded_size = 40 * small_face.nbytes
    tracemalloc.start()
    try:
        count = sum(1 for _ in decode_frames(ds))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 40
    assert peak < decoded_size / 4


DCMTK_CONVERSIONS = {
    JPEGBaseline8Bit: ["dcmcjpeg", "+eb", "+q", "95"],
    JPEGExtended12Bit: ["dcmcjpeg", "+ee", "+q", "95"],
    JPEGLosslessSV1: ["dcmcjpeg", "+e1"],
    JPEGLossless: ["dcmcjpeg", "+el"],
    JPEGLSLossless: ["dcmcjpls", "+el"],
    JPEGLSNearLossless: ["dcmcjpls", "+en", "+md", "2"],
    RLELossless: ["dcmcrle"],
    ExplicitVRBigEndian: ["dcmconv", "+tb"],
    DeflatedExplicitVRLittleEndian: ["dcmconv", "+td"],
    ImplicitVRLittleEndian: ["dcmconv", "+ti"],
}


@pytest.mark.parametrize("tsyntax", list(DCMTK_CONVERSIONS), ids=lambda uid: uid.name)
def test_decodes_what_dcmtk_writes(small_face: np.ndarray, tsyntax: UID, tmp_path: Path) -> None:
    command = DCMTK_CONVERSIONS[tsyntax]
    if shutil.which(command[0]) is None:
        pytest.skip(f"{command[0]} (dcmtk) is not installed")
    source, converted = tmp_path / "in.dcm", tmp_path / "out.dcm"
    rgb_instance(np.stack([small_face, small_face[::-1]]), MultiFrameTrueColorSecondaryCaptureImageStorage).save_as(
        source, enforce_file_format=True
    )
    subprocess.run([*command, str(source), str(converted)], check=True, capture_output=True)
    ds = pydicom.dcmread(converted)
    assert ds.file_meta.TransferSyntaxUID == tsyntax
    decoded = list(decode_frames(ds))
    assert len(decoded) == 2
    if tsyntax in (JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLSNearLossless):
        assert psnr(decoded[0], small_face) > 30 and psnr(decoded[1], small_face[::-1]) > 30
    else:
        np.testing.assert_array_equal(decoded[0], small_face)
        np.testing.assert_array_equal(decoded[1], small_face[::-1])


@pytest.mark.parametrize("name", ["VL2_J2KR.dcm", "VL3_RLE.dcm", "VL6_RLE.dcm"])
def test_real_samples_decode_and_round_trip_in_their_own_syntax(name: str) -> None:
    path = SAMPLES / name
    if not path.exists():
        pytest.skip("shared DICOM samples are not available")
    ds = pydicom.dcmread(path, force=True)
    source_syntax = ds.file_meta.TransferSyntaxUID
    frames = list(decode_frames(ds))
    assert len(frames) == 1 and frames[0].shape == (486, 756, 3)
    assert frames[0].std() > 10  # a picture, not a constant
    reference = ds.pixel_array  # pydicom's own reading, as a cross-check of the colour space
    np.testing.assert_array_equal(frames[0], reference)
    encode_frames(ds, frames)
    back = written_and_read(ds)
    assert back.file_meta.TransferSyntaxUID == source_syntax
    np.testing.assert_array_equal(next(decode_frames(back)), frames[0])


def test_native_pixel_data_shorter_than_declared_is_a_pixel_data_error(small_face: np.ndarray) -> None:
    ds = rgb_instance(np.stack([small_face, small_face]))
    ds.PixelData = ds.PixelData[: small_face.nbytes + 1000]
    with pytest.raises(PixelDataError):
        list(decode_frames(written_and_read(ds)))


def test_empty_native_pixel_data_is_a_pixel_data_error(small_face: np.ndarray) -> None:
    ds = rgb_instance(small_face[np.newaxis])
    ds.PixelData = b""
    with pytest.raises(PixelDataError, match="holds 0 bytes"):
        list(decode_frames(written_and_read(ds)))


def test_truncated_codestream_is_a_pixel_data_error(small_face: np.ndarray) -> None:
    ds = rgb_instance(small_face[np.newaxis])
    encode_frames(ds, [small_face], JPEG2000Lossless)
    codestream = b"".join(generate_fragments(ds.PixelData))
    ds.PixelData = encapsulate([codestream[: len(codestream) // 2]])
    with pytest.raises(PixelDataError):
        list(decode_frames(written_and_read(ds)))


def test_fewer_fragments_than_frames_is_a_pixel_data_error(small_face: np.ndarray) -> None:
    ds = rgb_instance(np.stack([small_face, small_face, small_face]))
    encode_frames(ds, iter([small_face, small_face, small_face]), RLELossless)
    ds.NumberOfFrames = 5
    with pytest.raises(PixelDataError):
        list(decode_frames(written_and_read(ds)))


@pytest.mark.parametrize("uid", ["1.2.3.4.5", "1.2.840.10008.1.2.4.94"])  # bogus; JPIP Referenced
def test_unknown_transfer_syntax_is_refused(small_face: np.ndarray, uid: str) -> None:
    ds = rgb_instance(small_face[np.newaxis])
    ds.file_meta.TransferSyntaxUID = uid
    with pytest.raises(UnsupportedTransferSyntax):
        next(decode_frames(ds))
    with pytest.raises(UnsupportedTransferSyntax):
        encode_frames(rgb_instance(small_face[np.newaxis]), [small_face], uid)


def test_missing_transfer_syntax_is_refused(small_face: np.ndarray) -> None:
    ds = rgb_instance(small_face[np.newaxis])
    del ds.file_meta.TransferSyntaxUID
    with pytest.raises(UnsupportedTransferSyntax):
        next(decode_frames(ds))


@pytest.mark.parametrize(
    "change",
    [{"SamplesPerPixel": 4, "PhotometricInterpretation": "ARGB"}, {"BitsAllocated": 32, "BitsStored": 32},
     {"PhotometricInterpretation": "YBR_PARTIAL_420"}],
    ids=["ARGB", "32-bit", "YBR_PARTIAL_420"],
)
def test_pixel_formats_we_cannot_mask_are_refused(small_face: np.ndarray, change: dict) -> None:
    ds = rgb_instance(small_face[np.newaxis])
    for keyword, value in change.items():
        setattr(ds, keyword, value)
    with pytest.raises(UnsupportedPixelFormat):
        next(decode_frames(ds))


def test_encoding_refuses_frames_of_different_sizes(small_face: np.ndarray) -> None:
    ds = rgb_instance(small_face[np.newaxis])
    with pytest.raises(ValueError):
        encode_frames(ds, [small_face, small_face[:100]], RLELossless)


def test_negotiable_sets_are_consistent() -> None:
    assert ENCODABLE_TRANSFER_SYNTAXES <= DECODABLE_TRANSFER_SYNTAXES
    assert JPEGLossless in DECODABLE_TRANSFER_SYNTAXES and JPEGLossless not in ENCODABLE_TRANSFER_SYNTAXES
    assert ExplicitVRBigEndian in DECODABLE_TRANSFER_SYNTAXES
