"""Decode pixel data into frames, and write masked frames back so the header matches the bytes.

Decoding uses pydicom 3's decoders (numpy for native/RLE/deflated, pylibjpeg with -libjpeg,
-openjpeg, -rle and pyjpegls for JPEG, JPEG-LS and JPEG 2000), asking for RGB: YBR_* colour
comes back as RGB and is written back as RGB with PlanarConfiguration 0, so the header always
describes the bytes (deid 0.4.13 scrambles PlanarConfiguration 1 cines, deid #228).

Re-encoding never loses anything: native input stays native (same transfer syntax),
compressed input goes out JPEG-LS lossless (RLE when JPEG-LS cannot hold it, native when
neither can), and a lossy source keeps saying so (LossyImageCompression 01 with its ratio
and method).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.pixels import get_decoder
from pydicom.pixels.decoders.base import Decoder
from pydicom.pixels.utils import pack_bits
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    JPEGLSLossless,
    RLELossless,
)

# transfer syntaxes whose codestream may have lost information, with the PS3.3 C.7.6.1.1.5
# method that names the compression
LOSSY_METHODS = {
    "1.2.840.10008.1.2.4.50": "ISO_10918_1",  # JPEG baseline
    "1.2.840.10008.1.2.4.51": "ISO_10918_1",  # JPEG extended
    "1.2.840.10008.1.2.4.81": "ISO_14495_1",  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.91": "ISO_15444_1",  # JPEG 2000
    "1.2.840.10008.1.2.4.203": "ISO_15444_15",  # HTJ2K
}
# the pixel module elements write_back may change (kept to restore a held image)
PIXEL_KEYWORDS = (
    "PixelData",
    "PhotometricInterpretation",
    "PlanarConfiguration",
    "SamplesPerPixel",
    "LossyImageCompression",
    "LossyImageCompressionRatio",
    "LossyImageCompressionMethod",
    "ExtendedOffsetTable",
    "ExtendedOffsetTableLengths",
)


# an image's stored values as pydicom decodes them: unsigned or signed integers of the
# image's depth (1-bit data comes back one pixel a uint8; float pixel data is not decoded)
Frames = NDArray[np.integer[Any]]


class UndecodableError(Exception):
    """The pixel data cannot be decoded; the message names the problem, never a value."""


@dataclass(frozen=True)
class Decoded:
    """An image's pixels as frames: (frames, rows, columns) or (frames, rows, columns, 3)."""

    frames: Frames
    photometric: str  # after decoding: YBR_* is returned as RGB
    bits_stored: int
    source_syntax: UID

    @property
    def count(self) -> int:
        """Number of frames."""
        return int(self.frames.shape[0])

    @property
    def color(self) -> bool:
        """True for three samples per pixel."""
        return self.frames.ndim == 4


def _frames(
    decoder: Decoder, ds: Dataset, stored: bytes | None = None
) -> tuple[Frames, dict[str, str | int]]:
    """Decode frame by frame into one array: pydicom converts YBR to RGB in float64 over
    the whole array at once (about 1 GB for a 120-frame 640x480 cine), one frame at a time
    it needs a 120th of that.

    ``stored``: the native bytes of the pixel data; while every decoded frame equals its
    part of them, no array is filled and the frames are a read-only view of those bytes
    (``_stored_view``)."""
    count = int(ds.get("NumberOfFrames") or 1)
    if count <= 1:
        # pydicom 3.0.2 annotates as_array's **kwargs as DecodeOptions, not
        # Unpack[DecodeOptions]: as_rgb (a key of DecodeOptions) is a bool
        arr, one = decoder.as_array(ds, as_rgb=True)  # type: ignore[arg-type]
        whole = None if stored is None else _stored_view(stored, arr, 1)
        return (arr if whole is None or not _same(whole[0], arr) else whole[0]), one
    out: Frames | None = None
    view: Frames | None = None
    info: dict[str, str | int] = {}
    index = -1
    for index, (frame, frame_info) in enumerate(decoder.iter_array(ds, as_rgb=True)):
        info = frame_info
        if index == 0 and stored is not None:
            view = _stored_view(stored, frame, count)
        if view is not None:
            if _same(view[index], frame):
                continue
            out = np.empty((count, *frame.shape), dtype=frame.dtype)
            out[:index] = view[:index]  # the frames equal so far
            view = None
        elif out is None:
            out = np.empty((count, *frame.shape), dtype=frame.dtype)
        out[index] = frame
    if index != count - 1:
        raise ValueError("frame count")
    frames = view if view is not None else out
    if frames is None:
        raise ValueError("frame count")
    return frames, info


def _stored_view(data: bytes, first: Frames, count: int) -> Frames | None:
    """The stored bytes ``data`` read as ``count`` frames of ``first``'s shape and type (a
    read-only view, no copy) when they are that many bytes (with at most one of padding to
    an even length); else None.

    Why: the pixel stage holds an image's frames as decoded and as decoded again after
    masking and writing back, and the stored bytes of both stay alive anyway (the element,
    the snapshot kept to restore a held image): on a 120-frame 640x480 cine each copy is
    37 MB. ``_frames`` compares every frame with its part of the view: whatever a decoder
    does to some native data (byte order, bits masked, sign extended), the view is used
    only when it holds exactly what the decoder returned."""
    size = count * first.nbytes
    if not 0 <= len(data) - size <= 1:
        return None
    stored: Frames = np.frombuffer(data, dtype=first.dtype, count=count * first.size)
    return stored.reshape(count, *first.shape)


def _same(a: Frames, b: Frames) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and bool(np.array_equal(a, b))


def decode(ds: Dataset, view: bool = False) -> Decoded:
    """All frames of ``ds``, or UndecodableError naming the transfer syntax and the problem.

    ``view``: native frames that are exactly the stored bytes come back as a read-only
    view of them, not a copy (``_stored_view``)."""
    if "PixelData" not in ds:
        kind = "float" if ("FloatPixelData" in ds or "DoubleFloatPixelData" in ds) else "no"
        raise UndecodableError(f"{kind} pixel data: cannot be cleaned")
    meta = getattr(ds, "file_meta", None)
    syntax = UID(str(meta.get("TransferSyntaxUID", ""))) if meta is not None else UID("")
    name = syntax.name if syntax else "no transfer syntax"
    allocated = int(ds.get("BitsAllocated") or 0)
    if allocated not in (1, 8, 16, 32):
        raise UndecodableError(f"pixel data cannot be cleaned (BitsAllocated {allocated})")
    if allocated == 1 and syntax.is_compressed:
        # 1-bit data is native in practice; an encapsulated one could not be written back
        raise UndecodableError(f"1-bit pixel data cannot be cleaned ({name})")
    try:
        decoder = get_decoder(syntax)
    except (NotImplementedError, ValueError):
        raise UndecodableError(f"pixel data cannot be decoded ({name}: no decoder)") from None
    try:
        data = ds.PixelData
        stored = data if view and not syntax.is_compressed and isinstance(data, bytes) else None
        arr, info = _frames(decoder, ds, stored)
    except Exception as exc:  # codec errors come as many types; the text may hold values
        raise UndecodableError(
            f"pixel data cannot be decoded ({name}: {type(exc).__name__})"
        ) from None
    photometric = str(info.get("photometric_interpretation", ds.PhotometricInterpretation))
    samples = int(info.get("samples_per_pixel", ds.get("SamplesPerPixel", 1)))
    frames = int(info.get("number_of_frames", ds.get("NumberOfFrames", 1)) or 1)
    if frames == 1 and arr.ndim == (3 if samples == 3 else 2):
        arr = arr[np.newaxis]
    if photometric.startswith("YBR"):  # as_rgb could not convert (e.g. YBR_ICT left as is)
        raise UndecodableError(f"pixel data cannot be cleaned ({name}: {photometric} colour)")
    bits = int(info.get("bits_stored", ds.get("BitsStored", allocated)))
    return Decoded(arr, photometric, bits, syntax)


@dataclass(frozen=True)
class Snapshot:
    """The elements write_back may change, as they were, to put back when an image is held:
    copies of those of ``PIXEL_KEYWORDS`` present, by keyword, and the file meta's transfer
    syntax (None: it has none)."""

    elements: dict[str, DataElement]
    transfer_syntax: UID | None


def snapshot(ds: Dataset) -> Snapshot:
    """The elements write_back may change, to put back when an image is held."""
    # copies: pydicom assigns a new value to the element already there, in place
    elements = {k: copy.copy(ds[k]) for k in PIXEL_KEYWORDS if k in ds}
    meta = getattr(ds, "file_meta", None)
    syntax: UID | None = None
    if meta is not None and "TransferSyntaxUID" in meta:
        syntax = meta.TransferSyntaxUID
    return Snapshot(elements, syntax)


def restore(ds: Dataset, saved: Snapshot) -> None:
    """Undo write_back (see :func:`snapshot`)."""
    for keyword in PIXEL_KEYWORDS:
        if keyword in ds:
            del ds[keyword]
    for keyword, elem in saved.elements.items():
        # a copy again: a later write_back must not change what was saved
        ds[keyword] = copy.copy(elem)
    if saved.transfer_syntax is not None:
        ds.file_meta.TransferSyntaxUID = saved.transfer_syntax


def _native_bytes(frames: Frames, little_endian: bool) -> bytes:
    dtype = frames.dtype.newbyteorder("<" if little_endian else ">")
    return np.ascontiguousarray(frames, dtype=dtype).tobytes()


def write_back(ds: Dataset, frames: Frames, decoded: Decoded) -> UID:
    """Store ``frames`` (same shape as decoded) in ``ds``; return the new transfer syntax.

    Rows, columns, frame count and bit depth stay; colour is RGB, PlanarConfiguration 0.
    The SOP Instance UID is not touched (the header stage owns it).
    """
    source = decoded.source_syntax
    source_size = len(ds.PixelData) if source.is_compressed else 0
    allocated = int(ds.BitsAllocated)
    ds.PhotometricInterpretation = decoded.photometric
    if decoded.color:
        ds.SamplesPerPixel = 3
        ds.PlanarConfiguration = 0
    arr = frames if decoded.count > 1 else frames[0]
    if allocated == 1:  # a segmentation or a bitmap: packed 8 pixels a byte, LSB first
        ds.PixelData = pack_bits(np.ascontiguousarray(frames, dtype=np.uint8).ravel())
        ds["PixelData"].VR = "OB"
        return UID(str(ds.file_meta.TransferSyntaxUID))
    if not source.is_compressed:
        for keyword in ("ExtendedOffsetTable", "ExtendedOffsetTableLengths"):
            if keyword in ds:
                del ds[keyword]
        # same transfer syntax, same byte order (pydicom cannot re-encode a big endian
        # dataset as little endian on write)
        ds.PixelData = _native_bytes(frames, source.is_little_endian)
        ds["PixelData"].VR = "OB" if allocated == 8 else "OW"
        return UID(str(ds.file_meta.TransferSyntaxUID))
    try:
        ds.compress(JPEGLSLossless, arr, encoding_plugin="pyjpegls", generate_instance_uid=False)
    except Exception:  # bit depth or layout JPEG-LS cannot hold (more than 16 bits)
        try:
            ds.compress(RLELossless, arr, generate_instance_uid=False)
        except Exception:  # e.g. 32-bit colour (12 RLE segments): native is lossless too
            for keyword in ("ExtendedOffsetTable", "ExtendedOffsetTableLengths"):
                if keyword in ds:
                    del ds[keyword]
            ds.PixelData = _native_bytes(frames, little_endian=True)
            ds["PixelData"].VR = "OB" if allocated == 8 else "OW"
            ds["PixelData"].is_undefined_length = False
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    method = LOSSY_METHODS.get(str(source))
    if method or str(ds.get("LossyImageCompression", "")).strip() == "01":
        ds.LossyImageCompression = "01"
        if method and "LossyImageCompressionMethod" not in ds:
            ds.LossyImageCompressionMethod = method
        if "LossyImageCompressionRatio" not in ds and source_size:
            ratio = frames.nbytes / source_size
            ds.LossyImageCompressionRatio = f"{ratio:.2f}"[:16]
    return UID(str(ds.file_meta.TransferSyntaxUID))
