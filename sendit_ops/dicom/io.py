"""Reading DICOM files the way sendit does (every file tried, ``force=True``), safely.

pydicom validates every value it decodes and warns about an invalid one *with the value*
(``Invalid value for VR DA: '1970-05-06'``), through its logger and Python's warnings: in a
task that is the task log, and the value may be a birth date or a name. Importing this module
turns that validation off for reading (``quiet_pydicom``); sendit does not rely on it (what it
needs from a header is checked by its own rules, with messages that name tags, not values),
and decoding is faster without it.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

import pydicom
import pydicom.config
from pydicom.dataset import Dataset, FileDataset

from sendit_ops.core.errors import BatchError


def quiet_pydicom() -> None:
    """No value validation when pydicom decodes (or deid builds) an element: its warnings
    print the value itself (idempotent; applies to the whole process)."""
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE


quiet_pydicom()


class NotDicomError(BatchError):
    """The file is not a readable DICOM image (reason text is PHI-free)."""


def looks_like_dicom(fp: BinaryIO) -> bool:
    """True when a file looks like DICOM: the "DICM" marker after a 128-byte preamble, or
    (old files without a preamble) a first element in group 0002 or 0008.

    pydicom's ``force=True`` parses any bytes as elements; a log file or a file with a
    preamble and garbage then fails later with an error that reads like a bug ("internal
    error (ValueError) ... rerun the batch") although no rerun can fix it. The file is left
    positioned at its start."""
    head = fp.read(132)
    fp.seek(0)
    return head_looks_like_dicom(head)


def head_looks_like_dicom(head: bytes) -> bool:
    """``looks_like_dicom`` on the first 132 bytes of a file."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    if len(head) < 8:
        return False
    group_le, group_be = struct.unpack("<H", head[:2])[0], struct.unpack(">H", head[:2])[0]
    return group_le in (0x0002, 0x0008) or group_be in (0x0002, 0x0008)


def read_header(path: str | Path) -> Dataset:
    """Read a file's header without pixel data; raise NotDicomError if it is not DICOM.

    With ``force=True`` pydicom accepts almost any bytes, so a file is only accepted when it
    looks like DICOM (``looks_like_dicom``) and has an SOP Instance UID (or a file meta
    header) after reading. The filter step uses ``image_check.read_checked_header``, which
    also checks the file is complete.
    """
    try:
        with open(path, "rb") as fp:
            if not looks_like_dicom(fp):
                raise NotDicomError("not a DICOM file (no DICM marker, no DICOM header)")
            ds = pydicom.dcmread(fp, stop_before_pixels=True, force=True)
    except NotDicomError:
        raise
    except Exception as exc:  # pydicom raises many types for corrupt files
        raise NotDicomError(f"unreadable DICOM ({type(exc).__name__})") from None
    try:
        has_meta = bool(getattr(ds, "file_meta", None)) and "TransferSyntaxUID" in ds.file_meta
        if "SOPInstanceUID" not in ds and not has_meta:
            raise NotDicomError("not a DICOM file (no DICOM header found)")
        ds.SOPInstanceUID  # noqa: B018 - force parsing of a truncated element
    except NotDicomError:
        raise
    except Exception as exc:
        raise NotDicomError(f"corrupt DICOM header ({type(exc).__name__})") from None
    return ds


def read_full(path: str | Path) -> Dataset:
    """Read a whole DICOM file (pixels included)."""
    try:
        return pydicom.dcmread(path, force=True)
    except FileNotFoundError:
        raise NotDicomError("an image file is gone (moved or deleted during the run)") from None
    except Exception as exc:
        raise NotDicomError(f"unreadable DICOM ({type(exc).__name__})") from None


def text(ds: Dataset, keyword: str) -> str:
    """A header value as a stripped string ('' when absent)."""
    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, pydicom.multival.MultiValue):
        return "\\".join(str(v) for v in value).strip()
    return str(value).strip()


def as_file_dataset(ds: Dataset) -> FileDataset:
    """deid only works on FileDataset objects: wrap a plain Dataset (no copy of the elements)."""
    if isinstance(ds, FileDataset):
        return ds
    return FileDataset("", ds, file_meta=getattr(ds, "file_meta", None), preamble=b"\0" * 128)


def remove_private_tags(ds: Dataset) -> None:
    """Delete every private element, in nested sequences too (what pydicom's
    ``Dataset.remove_private_tags`` does, without its per-element walk machinery; private
    elements are deleted before they are decoded)."""
    for tag in [t for t in ds._dict if t.is_private]:
        del ds[tag]
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value or []:
                remove_private_tags(item)
