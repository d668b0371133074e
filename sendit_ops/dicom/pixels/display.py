"""Frames as a person sees them (8-bit RGB), for OCR and the reviewer's thumbnail.

OCR reads what a viewer would show: palette indices through their colour table, MONOCHROME1
inverted, more than 8 bits scaled linearly over the stored range of the whole image (text is
burned in at the extreme of that range, so no VOI window can hide it from the linear view).
Scales come from the data, not the declared depth: palettes with 16-bit entries often hold
8-bit values (pydicom's OBXXXX1A_expb), and scaling those by 65535 renders a black picture
in which OCR finds nothing, a "clean" image with its text intact.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut

from sendit_ops.dicom.pixels.codec import Decoded

_CHUNK = 16  # frames rendered at once for the max projection (bounded memory on long cines)


def _scale(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    if hi <= lo:
        return np.zeros(values.shape, dtype=np.uint8)
    out = (values.astype(np.float32) - lo) * (255.0 / (hi - lo))
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


class Display:
    """Renders frames of one decoded image the same way every time (one intensity range)."""

    def __init__(self, decoded: Decoded, ds: Dataset):
        self.decoded = decoded
        self.ds = ds
        frames = decoded.frames
        self.lo, self.hi = float(frames.min()), float(frames.max())
        self.palette_peak = 255.0
        if decoded.photometric == "PALETTE COLOR":
            entries = int(ds.RedPaletteColorLookupTableDescriptor[0]) or 65536
            first = int(ds.RedPaletteColorLookupTableDescriptor[1])
            top = min(first + entries, int(np.iinfo(frames.dtype).max) + 1)
            indices = np.arange(first, top).astype(frames.dtype)
            self.palette_peak = max(255.0, float(apply_color_lut(indices, ds).max()))

    def render(self, frames: np.ndarray) -> np.ndarray:
        """(n, rows, columns, 3) uint8 RGB for n decoded frames (same layout as decoded)."""
        photometric = self.decoded.photometric
        if photometric == "PALETTE COLOR":
            rgb = apply_color_lut(frames, self.ds)
            return rgb if rgb.dtype == np.uint8 else _scale(rgb, 0, self.palette_peak)
        if frames.ndim == 4:
            if frames.dtype == np.uint8:
                return frames
            return _scale(frames, 0, max(self.hi, 255.0))
        if frames.dtype == np.uint8 and photometric != "MONOCHROME1":
            gray = frames
        else:
            gray = _scale(frames, self.lo, self.hi)
            if photometric == "MONOCHROME1":
                gray = 255 - gray
        return np.repeat(gray[..., np.newaxis], 3, axis=-1)

    def views(self, frames: np.ndarray) -> Iterator[tuple[int | None, np.ndarray]]:
        """What OCR reads: a single frame whole; of a cine the first, middle and last frames
        and the max projection (burned-in text is static, moving anatomy blurs out of it).
        Yields (frame index or None for the projection, RGB image)."""
        count = frames.shape[0]
        for index in sorted({0, count // 2, count - 1}):
            yield index, self.render(frames[index : index + 1])[0]
        if count > 1:
            projection = None
            for start in range(0, count, _CHUNK):
                chunk = self.render(frames[start : start + _CHUNK]).max(axis=0)
                projection = chunk if projection is None else np.maximum(projection, chunk)
            yield None, projection
