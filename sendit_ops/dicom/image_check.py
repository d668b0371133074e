"""Validate an image before it can be delivered, cheaply, while its header is read.

A file cut short by an interrupted transfer, or with a damaged element length, is still
"readable" by pydicom with ``force=True``: it silently keeps what it could read. Delivered
as is, a study looks complete but is not. So the filter step checks, for every file:

* the whole dataset parsed: no element declares more bytes than the file has, the file does
  not end inside a sequence or an element header;
* an image SOP class (or any file with pixel data) has Rows, Columns, BitsAllocated,
  SamplesPerPixel, PhotometricInterpretation and pixel data;
* native pixel data holds at least Rows x Columns x frames x samples x bits / 8 bytes (more is
  accepted: the pad byte of an odd length, or a writer's padding); encapsulated pixel data
  is a basic offset table and fragment items that parse to the sequence delimiter inside
  the file.

Pixel data is never loaded: the header is read as before (``stop_before_pixels``), then the
check seeks over the pixel data element and fragment item headers using the file size, a
few small reads per file (CT throughput stays as it was). Reasons name tags and byte counts,
never values.
"""

from __future__ import annotations

import os
import struct
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag
from pydicom.uid import UID

from sendit_ops.dicom.io import NotDicomError, head_looks_like_dicom

UNDEFINED = 0xFFFFFFFF
ITEM, SEQ_DELIMITER = 0xFFFEE000, 0xFFFEE0DD
PIXEL_TAGS = {0x7FE00010: "PixelData", 0x7FE00008: "FloatPixelData", 0x7FE00009: "DoubleFloat"}
REQUIRED = ("Rows", "Columns", "BitsAllocated", "SamplesPerPixel", "PhotometricInterpretation")
# explicit VRs with a 2-byte reserved field and a 4-byte length (PS3.5 7.1.2)
LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT"}
LONG_VRS |= {b"UV"}


class RejectedImageError(NotDicomError):
    """A DICOM file that must not be delivered: truncated, corrupt, or not supported.

    Unlike a file that is not DICOM at all (a log, a thumbnail: skipped), a rejected file is
    an image of the study that cannot be delivered, so the study would be incomplete."""

    kind = "corrupt"


class UnsupportedImageError(RejectedImageError):
    """A DICOM image in a form sendit cannot check or write back (e.g. an unknown transfer
    syntax)."""

    kind = "unsupported"


@dataclass(frozen=True)
class PixelSpan:
    """Where the pixel data element of a file was found and how long it is."""

    tag: int
    value_start: int  # file offset of the value (first item header when encapsulated)
    length: int  # declared length, UNDEFINED when encapsulated


def _fmt(n: int) -> str:
    return f"{n:,}"


def _tag(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def is_image_sop_class(uid: str) -> bool:
    """True for the storage SOP classes whose instances are images (their name says
    "Image Storage": CT, MR, US, CR, DX, SC, VL, enhanced and multi-frame variants)."""
    if not uid:
        return False
    return "Image Storage" in UID(uid).name


def read_checked_header(path: str | Path) -> Dataset:
    """Read a file's header (no pixel data) and validate the whole file; raise
    NotDicomError (not a DICOM file: skipped) or RejectedImageError (a DICOM file that
    must not be delivered)."""
    try:
        fp = open(path, "rb")  # noqa: SIM115 - closed below, fstat needs the descriptor
    except FileNotFoundError:
        raise RejectedImageError("the file is gone (moved or deleted during the run)") from None
    except IsADirectoryError:
        raise RejectedImageError("not a regular file (a folder)") from None
    except OSError as exc:
        raise RejectedImageError(f"unreadable file ({type(exc).__name__})") from None
    with fp:
        size = os.fstat(fp.fileno()).st_size
        head = fp.read(132)
        fp.seek(0)
        if not head_looks_like_dicom(head):
            raise NotDicomError("not a DICOM file (no DICM marker, no DICOM header)")
        try:
            ds = pydicom.dcmread(fp, stop_before_pixels=True, force=True)
        except Exception as exc:  # pydicom raises many types for corrupt files
            frames = {f.name for f in traceback.extract_tb(exc.__traceback__)}
            if fp.tell() >= size - 8 or isinstance(exc, EOFError | struct.error):
                where = (
                    "a sequence"
                    if any(n.startswith("read_sequence") for n in frames)
                    else "an element"
                )
                raise RejectedImageError(
                    f"truncated: the file ends inside {where}: no pixel data"
                ) from None
            raise RejectedImageError(f"corrupt DICOM header ({type(exc).__name__})") from None
        check_file(ds, fp, size, head[128:132] == b"DICM")
    return ds


def check_file(ds: Dataset, fp: BinaryIO, size: int, part10: bool = True) -> None:
    """Validate a dataset just read with ``stop_before_pixels`` from ``fp`` (positioned
    where pydicom stopped: the pixel data element or the end of the file). ``part10``: the
    file has the "DICM" marker (then it is DICOM, however damaged)."""
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        _check_lengths(meta)
    _check_lengths(ds)
    syntax = _raw_text(meta, 0x00020010) if meta is not None else ""
    if not syntax:
        if "SOPInstanceUID" not in ds:
            if part10:
                raise RejectedImageError(
                    "truncated or corrupt: the DICOM header has no transfer syntax and no "
                    "SOPInstanceUID"
                )
            raise NotDicomError("not a DICOM file (no DICOM header found)")
    elif not UID(syntax).is_transfer_syntax:
        raise UnsupportedImageError(f"unsupported transfer syntax {syntax[:64]}")
    media_class = _raw_text(meta, 0x00020002) if meta is not None else ""
    if "SOPInstanceUID" not in ds and media_class and not is_image_sop_class(media_class):
        # a DICOMDIR (Media Storage Directory) or another non-image object beside the images:
        # not part of the study's images, so skipped like a non-DICOM file, with its kind
        kind = UID(media_class).name if UID(media_class).is_valid else "an unknown SOP class"
        raise NotDicomError(f"not an image: a DICOM object of kind '{kind[:64]}'")
    if "SOPInstanceUID" not in ds:
        raise RejectedImageError("corrupt header: no SOPInstanceUID")
    try:
        ds.SOPInstanceUID  # noqa: B018 - decode it: a damaged value raises here
    except Exception as exc:
        raise RejectedImageError(f"corrupt DICOM header ({type(exc).__name__})") from None
    if syntax == pydicom.uid.DeflatedExplicitVRLittleEndian:
        return _check_deflated(ds, fp)
    pos = fp.tell()
    span = _pixel_span(ds, fp, pos, size) if pos < size else None
    if span is None:
        _check_tail_without_pixels(ds, size)
        if is_image_sop_class(_raw_text(ds, 0x00080016)):
            missing = [k for k in REQUIRED if _raw_value(ds, k) is None]
            detail = f"; also missing {', '.join(missing)}" if missing else ""
            raise RejectedImageError(f"no pixel data in an image{detail}")
        return
    expected = expected_length(ds, PIXEL_TAGS[span.tag])
    encapsulated = span.length == UNDEFINED
    compressed = bool(syntax) and UID(syntax).is_compressed
    if encapsulated:
        if syntax and not compressed:
            raise RejectedImageError("encapsulated pixel data in an uncompressed transfer syntax")
        end = _walk_fragments(fp, span.value_start, size, _frames(ds))
    else:
        if compressed:
            raise RejectedImageError("pixel data is not encapsulated but the syntax is compressed")
        have = size - span.value_start
        if span.length > have:
            raise RejectedImageError(
                f"truncated pixel data: {_fmt(have)} of {_fmt(max(expected, span.length))} bytes"
            )
        if span.length < expected:
            raise RejectedImageError(
                f"pixel data too short: {_fmt(span.length)} of {_fmt(expected)} bytes "
                "(Rows x Columns x frames x samples x bits)"
            )
        # more bytes than needed (some writers pad): the image is complete, pydicom and
        # viewers ignore the excess, so it is accepted
        end = span.value_start + span.length
    _walk_trailing(ds, fp, end, size)


def _raw_text(ds: Dataset, tag: int) -> str:
    """A UID element's text without pydicom's conversion ('' when absent or unreadable)."""
    elem = ds._dict.get(BaseTag(tag))
    value = elem.value if elem is not None else None
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").strip(" \0")
    return str(value or "").strip()


def _check_lengths(ds: Dataset) -> None:
    """No element was cut short: pydicom keeps what it could read of a value that runs past
    the end of the file. Parsed sequences (undefined length) are checked item by item;
    defined-length sequences are still raw bytes, checked as a whole."""
    for elem in ds._dict.values():
        if isinstance(elem, RawDataElement):
            value = elem.value
            if elem.length != UNDEFINED and value is not None and len(value) < elem.length:
                raise RejectedImageError(
                    f"declared element length 0x{elem.length:08X} runs past the end of the "
                    f"file (element {_tag(elem.tag)})"
                )
        elif elem.VR == "SQ" and isinstance(elem.value, list | pydicom.Sequence):
            for item in elem.value:
                if isinstance(item, Dataset):
                    _check_lengths(item)


def _last_end(ds: Dataset) -> int | None:
    """File offset just after the last top-level element, when it has a defined length."""
    if not ds._dict:
        return None
    last = ds._dict[max(ds._dict)]
    if isinstance(last, RawDataElement) and last.length != UNDEFINED and last.value_tell:
        return last.value_tell + last.length
    return None


def _check_tail_without_pixels(ds: Dataset, size: int) -> None:
    """pydicom stops silently when fewer than 8 bytes are left for an element header."""
    end = _last_end(ds)
    if end is not None and 0 < size - end < 8:
        raise RejectedImageError("truncated: the file ends inside an element header")


def _pixel_span(ds: Dataset, fp: BinaryIO, pos: int, size: int) -> PixelSpan | None:
    """Read the header of the pixel data element pydicom stopped at."""
    implicit, little = ds.original_encoding
    endian = "<" if little in (True, None) else ">"
    head = fp.read(12)
    if len(head) < 8:
        raise RejectedImageError("truncated: the file ends inside the pixel data element header")
    group, elem = struct.unpack(endian + "HH", head[:4])
    tag = group << 16 | elem
    if tag not in PIXEL_TAGS:
        return None
    if implicit or not b"AA" <= head[4:6] <= b"ZZ":  # pydicom too reads a bad VR as implicit
        (length,) = struct.unpack(endian + "L", head[4:8])
        start = pos + 8
    elif head[4:6] in LONG_VRS:
        if len(head) < 12:
            raise RejectedImageError("truncated: the file ends inside the pixel data element")
        (length,) = struct.unpack(endian + "L", head[8:12])
        start = pos + 12
    else:
        (length,) = struct.unpack(endian + "H", head[6:8])
        start = pos + 8
    return PixelSpan(tag, start, length)


# the image attributes, by tag: looked up in the dataset's dict, no keyword translation
TAGS: dict[str, BaseTag] = {
    "Rows": BaseTag(0x00280010),
    "Columns": BaseTag(0x00280011),
    "BitsAllocated": BaseTag(0x00280100),
    "SamplesPerPixel": BaseTag(0x00280002),
    "PhotometricInterpretation": BaseTag(0x00280004),
    "NumberOfFrames": BaseTag(0x00280008),
}


def _raw_value(ds: Dataset, keyword: str) -> bytes | object | None:
    """An element's value without pydicom's conversion (a conversion per attribute and file
    costs more than the whole check): the raw bytes of a RawDataElement, else the value."""
    elem = ds._dict.get(TAGS[keyword])
    if elem is None:
        return None
    value: object = elem.value  # raw bytes, or whatever pydicom holds
    return value


def _int_attr(ds: Dataset, keyword: str, default: int | None = None) -> int:
    """A US (Rows, Columns, ...) or IS (NumberOfFrames) attribute as an int."""
    value = _raw_value(ds, keyword)
    if value is None or value in (b"", ""):
        if default is not None:
            return default
        raise RejectedImageError(f"missing required image attribute {keyword}")
    try:
        if isinstance(value, bytes) and keyword != "NumberOfFrames":
            _, little = ds.original_encoding
            number = int.from_bytes(value[:2], "little" if little in (True, None) else "big")
            if len(value) != 2:
                raise ValueError(keyword)
        else:
            text = value.decode("ascii") if isinstance(value, bytes) else value
            number = int(str(text).strip("\0 ") or (default or 0))
    except Exception:
        raise RejectedImageError(f"invalid image attribute {keyword}") from None
    if number < 1 and default is None:
        raise RejectedImageError(f"invalid image attribute {keyword}")
    return max(number, 1) if default is not None else number


def _frames(ds: Dataset) -> int:
    return _int_attr(ds, "NumberOfFrames", default=1)


def expected_length(ds: Dataset, pixel_keyword: str = "PixelData") -> int:
    """Bytes of native pixel data the image attributes call for (no pad byte)."""
    missing = [k for k in REQUIRED if _raw_value(ds, k) is None]
    if missing:
        raise RejectedImageError(f"missing required image attribute(s): {', '.join(missing)}")
    rows, cols = _int_attr(ds, "Rows"), _int_attr(ds, "Columns")
    bits, samples = _int_attr(ds, "BitsAllocated"), _int_attr(ds, "SamplesPerPixel")
    if bits != 1 and bits % 8:
        raise UnsupportedImageError(f"unsupported BitsAllocated {bits}")
    raw = _raw_value(ds, "PhotometricInterpretation")
    try:
        photometric = (raw.decode("ascii") if isinstance(raw, bytes) else str(raw)).strip(" \0")
    except Exception:
        raise RejectedImageError("invalid image attribute PhotometricInterpretation") from None
    pixels = rows * cols * _frames(ds)
    if photometric.upper() == "YBR_FULL_422" and pixel_keyword == "PixelData":
        return pixels * 2 * bits // 8  # 4:2:2 chroma subsampling: two values per pixel
    if bits == 1:
        return -(-pixels * samples // 8)
    return pixels * samples * bits // 8


def _walk_fragments(fp: BinaryIO, start: int, size: int, frames: int) -> int:
    """Seek over the basic offset table and fragment items up to the sequence delimiter;
    return the offset after it."""
    pos, item = start, 0
    while True:
        if pos + 8 > size:
            raise RejectedImageError(
                f"truncated pixel data: the file ends inside fragment {max(item, 1)} "
                f"of the encapsulated pixel data (before its end marker)"
            )
        fp.seek(pos)
        group, elem, length = struct.unpack("<HHL", fp.read(8))
        tag = group << 16 | elem
        if tag == SEQ_DELIMITER:
            if item < 2 and frames >= 1:
                raise RejectedImageError("encapsulated pixel data has no fragments")
            return pos + 8
        if tag != ITEM:
            raise RejectedImageError(
                f"corrupt encapsulated pixel data: unexpected tag {_tag(tag)} at item {item}"
            )
        if length == UNDEFINED or pos + 8 + length > size:
            left = max(size - pos - 8, 0)
            what = "the basic offset table" if item == 0 else f"fragment {item}"
            raise RejectedImageError(
                f"truncated pixel data: {what} declares {_fmt(length)} bytes, "
                f"{_fmt(left)} left in the file"
            )
        pos += 8 + length
        item += 1


def _walk_trailing(ds: Dataset, fp: BinaryIO, pos: int, size: int) -> None:
    """Elements after the pixel data (rare: trailing padding) must fit in the file."""
    implicit, little = ds.original_encoding
    endian = "<" if little in (True, None) else ">"
    while pos < size:
        if size - pos < 8:
            raise RejectedImageError("truncated: the file ends inside an element header")
        fp.seek(pos)
        head = fp.read(12)
        group, elem = struct.unpack(endian + "HH", head[:4])
        if implicit or not b"AA" <= head[4:6] <= b"ZZ":
            (length,) = struct.unpack(endian + "L", head[4:8])
            pos += 8
        elif head[4:6] in LONG_VRS and len(head) == 12:
            (length,) = struct.unpack(endian + "L", head[8:12])
            pos += 12
        else:
            (length,) = struct.unpack(endian + "H", head[6:8])
            pos += 8
        if length == UNDEFINED:
            return  # an undefined-length element after the pixel data: not walked further
        if pos + length > size:
            raise RejectedImageError(
                f"declared element length 0x{length:08X} runs past the end of the file "
                f"(element {_tag(group << 16 | elem)})"
            )
        pos += length


def _check_deflated(ds: Dataset, fp: BinaryIO) -> None:
    """A deflated dataset has no file offsets to seek over: read it whole (rare)."""
    fp.seek(0)
    try:
        full = pydicom.dcmread(fp, force=True)
        data = full.get("PixelData")
    except Exception as exc:
        raise RejectedImageError(f"corrupt deflated dataset ({type(exc).__name__})") from None
    if data is None:
        if is_image_sop_class(str(ds.get("SOPClassUID", "") or "")):
            raise RejectedImageError("no pixel data in an image")
        return
    expected = expected_length(ds)
    if len(data) < expected:
        raise RejectedImageError(
            f"truncated pixel data: {_fmt(len(data))} of {_fmt(expected)} bytes"
        )
