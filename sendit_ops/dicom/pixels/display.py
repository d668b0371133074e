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
from typing import Any, TypeGuard

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut

from sendit_ops.dicom.pixels.codec import Decoded, Frames

_CHUNK = 16  # frames rendered at once for the max projection (bounded memory on long cines)
# the screen's grey view clips this share of the values at each end (see Display.gray)
ROBUST_TAIL = 0.0005

# what a person (and OCR) sees: 8-bit grey (rows, columns) or RGB (rows, columns, 3), or a
# stack of those with the frames first
Picture = NDArray[np.uint8]


def is_8bit(values: NDArray[Any]) -> TypeGuard[Picture]:
    """True when ``values`` are already 8-bit (the type checker cannot see a dtype test)."""
    return values.dtype == np.uint8


def _scale(values: NDArray[np.number[Any]], lo: float, hi: float) -> Picture:
    if hi <= lo:
        return np.zeros(values.shape, dtype=np.uint8)
    out = (values.astype(np.float32) - lo) * (255.0 / (hi - lo))
    clipped: NDArray[np.floating[Any]] = np.clip(out + 0.5, 0, 255)
    return clipped.astype(np.uint8)


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
        self.robust = self._robust_range(frames)

    def _robust_range(self, frames: Frames) -> tuple[float, float]:
        """The stored range without its extreme 0.05 % at each end (grey data over 8 bits).

        A few outlier values (metal, a padding value, one hot pixel) stretch the linear
        range so far that text at 4095 of a 65535 range renders 16 of 255: invisible to
        the screen. Clipped at these quantiles, text is either inside the window or at its
        end, and shows either way."""
        palette = self.decoded.photometric == "PALETTE COLOR"
        if frames.ndim == 4 or frames.dtype.itemsize == 1 or palette:
            return self.lo, self.hi
        sample = frames[:: max(1, frames.shape[0] // 8)]  # a few frames of a cine
        offset = int(sample.min())
        span = int(sample.max()) - offset
        if span < 256 or span > (1 << 24):
            return self.lo, self.hi
        counts = np.bincount((sample.astype(np.int64) - offset).ravel(), minlength=span + 1)
        cumulative = np.cumsum(counts) / counts.sum()
        lo = offset + int(np.searchsorted(cumulative, ROBUST_TAIL))
        hi = offset + int(np.searchsorted(cumulative, 1 - ROBUST_TAIL))
        return (float(lo), float(hi)) if hi > lo else (self.lo, self.hi)

    def gray(self, frame: Frames) -> Picture:
        """One decoded frame as the text screen sees it: 8-bit grey, grey data over the
        robust range (above), colour as the brightest of its channels (coloured text keeps
        its contrast: pure blue text has a luminance of 29 of 255)."""
        if frame.ndim == 3 or self.decoded.photometric == "PALETTE COLOR":
            brightest: Picture = self.render(frame[np.newaxis])[0].max(axis=-1)
            return brightest
        if is_8bit(frame) and self.decoded.bits_stored > 1:
            return frame
        lo, hi = self.robust
        return _scale(frame, lo, hi)

    def render(self, frames: Frames) -> Picture:
        """(n, rows, columns, 3) uint8 RGB for n decoded frames (same layout as decoded)."""
        photometric = self.decoded.photometric
        if photometric == "PALETTE COLOR":
            rgb = apply_color_lut(frames, self.ds)
            return rgb if is_8bit(rgb) else _scale(rgb, 0, self.palette_peak)
        if frames.ndim == 4:
            if is_8bit(frames):
                return frames
            return _scale(frames, 0, max(self.hi, 255.0))
        gray: Picture
        if is_8bit(frames) and photometric != "MONOCHROME1":
            gray = frames
        else:
            gray = _scale(frames, self.lo, self.hi)
            if photometric == "MONOCHROME1":
                gray = 255 - gray
        return np.repeat(gray[..., np.newaxis], 3, axis=-1)

    def views(self, frames: Frames) -> Iterator[tuple[int | None, Picture]]:
        """What full-frame OCR reads: a single frame whole; of a cine the first, middle and
        last frames and the max and the min projections (static text stays sharp in them
        while moving anatomy blurs out: bright text in the max, dark text in the min).
        Every frame is also screened (``stage``), so text on other frames is found too.
        Yields (frame index or None for a projection, RGB image)."""
        count = frames.shape[0]
        for index in sorted({0, count // 2, count - 1}):
            yield index, self.render(frames[index : index + 1])[0]
        if count > 1:
            chunk = self.render(frames[:_CHUNK])
            high, low = chunk.max(axis=0), chunk.min(axis=0)
            for start in range(_CHUNK, count, _CHUNK):
                chunk = self.render(frames[start : start + _CHUNK])
                high = np.maximum(high, chunk.max(axis=0))
                low = np.minimum(low, chunk.min(axis=0))
            yield None, high
            yield None, low
