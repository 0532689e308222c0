"""Pixel content of test instances: native 8-bit RGB Pixel Data and how close two images are."""

from __future__ import annotations

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset


def set_rgb_pixels(ds: Dataset, frames: np.ndarray) -> None:
    """Give `ds` native 8-bit RGB Pixel Data holding `frames` (N x H x W x 3) and the Image
    Pixel module that describes it; Number of Frames is set only for more than one frame."""
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = frames.shape[1:3]
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    if len(frames) > 1:
        ds.NumberOfFrames = len(frames)
    ds.PixelData = np.ascontiguousarray(frames, dtype=np.uint8).tobytes()


def ramp(rows: int, columns: int) -> np.ndarray:
    """One RGB frame (1 x rows x columns x 3) of a byte ramp: real pixel data without a picture."""
    return np.arange(rows * columns * 3, dtype=np.uint8).reshape(1, rows, columns, 3)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two 8-bit images in dB (infinite when they are equal)."""
    mse = np.mean((a.astype(float) - b.astype(float)) ** 2)
    return 10 * np.log10(255**2 / mse) if mse else float("inf")


def set_palette_pixels(ds: Dataset, image: np.ndarray) -> None:
    """Give `ds` native 8-bit PALETTE COLOR Pixel Data for `image` (H x W x 3), replacing what
    it had: the image quantised to 256 colours, with 16-bit Red, Green and Blue lookup tables."""
    quantised = Image.fromarray(image).quantize(256)
    palette = quantised.getpalette()
    assert palette is not None  # a quantised image always has one
    lut = np.zeros((256, 3), dtype=np.uint16)
    colours = np.asarray(palette[: 256 * 3], dtype=np.uint16).reshape(-1, 3)
    lut[: len(colours)] = colours * 257
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "PALETTE COLOR"
    ds.pop("PlanarConfiguration", None)  # one sample per pixel has none
    ds.Rows, ds.Columns = image.shape[:2]
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    for channel, colour in enumerate(("Red", "Green", "Blue")):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, 16])
        setattr(ds, f"{colour}PaletteColorLookupTableData", lut[:, channel].tobytes())
    ds.PixelData = np.asarray(quantised, dtype=np.uint8).tobytes()
