"""Minimal RGB instances for pixel-layer tests: any number of frames, no identifying attributes.

Unlike ``dicom_instances`` (full photographic instances with planted PHI), these carry only what
the Image Pixel module needs, so a test can change one attribute and see what the codec does.
"""

from __future__ import annotations

import io

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, VLPhotographicImageStorage, generate_uid


def make_dataset(frames: np.ndarray, sop_class: UID = VLPhotographicImageStorage) -> Dataset:
    """An Explicit VR Little Endian RGB instance holding `frames` (N x H x W x 3)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.SOPClassUID = sop_class
    ds.Modality = "XC"
    set_rgb_pixels(ds, frames)
    return ds


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


def written_and_read(ds: Dataset) -> Dataset:
    """`ds` after a trip through a Part 10 file, as a receiver would see it."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two 8-bit images in dB (infinite when they are equal)."""
    mse = np.mean((a.astype(float) - b.astype(float)) ** 2)
    return 10 * np.log10(255**2 / mse) if mse else float("inf")
