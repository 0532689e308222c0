"""Pixel content of test instances: native 8-bit RGB Pixel Data and how close two images are."""

from __future__ import annotations

import numpy as np
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
