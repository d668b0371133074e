"""Masking: every box on every frame, with the value a viewer shows darkest.

MONOCHROME2 masks with the image's minimum and MONOCHROME1 with its maximum (0 would show
white there, as deid does); RGB with black; PALETTE COLOR with the index whose colour is
darkest (index 0 may be any colour).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut

from sendit_ops.dicom.pixels.codec import Decoded, Frames
from sendit_ops.dicom.pixels.model import Box


def darkest_palette_index(ds: Dataset, dtype: np.dtype) -> int:
    """The palette index whose RGB colour has the lowest luminance."""
    descriptor = ds.RedPaletteColorLookupTableDescriptor
    entries = int(descriptor[0]) or 65536
    first = int(descriptor[1])
    limit = np.iinfo(dtype).max if dtype.kind in "ui" else first + entries - 1
    indices = np.arange(first, min(first + entries, int(limit) + 1)).astype(dtype)
    rgb = apply_color_lut(indices, ds).astype(np.float64)
    luminance = rgb @ np.array([0.299, 0.587, 0.114])
    return int(indices[int(np.argmin(luminance))])


def fill_value(decoded: Decoded, ds: Dataset) -> int | float:
    """The stored value that displays darkest for this image."""
    frames = decoded.frames
    if decoded.photometric == "PALETTE COLOR":
        return darkest_palette_index(ds, frames.dtype)
    if decoded.color:
        return 0
    # item(): the numpy scalar as a Python number of the frames' kind
    extreme: int | float = (
        frames.max().item() if decoded.photometric == "MONOCHROME1" else frames.min().item()
    )
    return extreme


def apply(frames: Frames, boxes: Iterable[Box], value: int | float) -> Frames:
    """A copy of ``frames`` with every box filled on every frame (outside: untouched)."""
    out = frames.copy()
    for box in boxes:
        out[:, box.y0 : box.y1, box.x0 : box.x1] = value
    return out
