"""Image validation before delivery, on real files (pydicom's and deid-data's) that the tests
truncate or corrupt themselves: every damaged file is rejected with a reason naming the
problem, every intact one passes."""

from __future__ import annotations

import io
import os
import struct
import warnings
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from sendit_ops.dicom.image_check import (
    RejectedImageError,
    UnsupportedImageError,
    read_checked_header,
)
from sendit_ops.dicom.io import NotDicomError, read_header

pytestmark = pytest.mark.unit


def data(name: str) -> bytes:
    """The bytes of one of pydicom's test files."""
    return Path(get_testdata_file(name)).read_bytes()


def pixel_value_offset(raw: bytes) -> int:
    """File offset of the PixelData value (pydicom's own reading, to build the cases)."""
    fp = io.BytesIO(raw)
    pydicom.dcmread(fp, stop_before_pixels=True)
    implicit, _ = pydicom.dcmread(io.BytesIO(raw), stop_before_pixels=True).original_encoding
    return fp.tell() + (8 if implicit else 12)


def element_length_offset(raw: bytes, keyword: str) -> int:
    """File offset of an element's 4-byte length (implicit VR file)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(io.BytesIO(raw), force=True)
    tag = pydicom.datadict.tag_for_keyword(keyword)
    return ds._dict[tag].value_tell - 4


def check(tmp_path: Path, raw: bytes, name: str = "x.dcm") -> str:
    """'ok', or the reason the file is refused prefixed by its kind."""
    path = tmp_path / name
    path.write_bytes(raw)
    try:
        read_checked_header(path)
    except UnsupportedImageError as exc:
        return f"unsupported: {exc}"
    except RejectedImageError as exc:
        return f"rejected: {exc}"
    except NotDicomError as exc:
        return f"not dicom: {exc}"
    return "ok"


def test_cut_inside_pixel_data_names_the_byte_counts(tmp_path):
    raw = data("MR_small.dcm")  # 64 x 64 x 16 bits: 8,192 pixel bytes
    start = pixel_value_offset(raw)
    assert check(tmp_path, raw[: start + 1988]) == (
        "rejected: truncated pixel data: 1,988 of 8,192 bytes"
    )


def test_cut_inside_a_sequence_says_so(tmp_path):
    raw = data("JPEG2000.dcm")  # an undefined-length SourceImageSequence at 0x376
    ds = pydicom.dcmread(io.BytesIO(raw))
    cut = ds["SourceImageSequence"].file_tell + 20
    assert check(tmp_path, raw[:cut]) == (
        "rejected: truncated: the file ends inside a sequence: no pixel data"
    )


def test_declared_length_past_the_end_of_the_file(tmp_path):
    raw = bytearray(data("MR_small_implicit.dcm"))
    at = element_length_offset(bytes(raw), "Columns")  # 10 elements before PixelData
    raw[at : at + 4] = struct.pack("<L", 0x7FFFFFF0)
    reason = check(tmp_path, bytes(raw))
    assert reason.startswith(
        "rejected: declared element length 0x7FFFFFF0 runs past the end of the file"
    )


def test_preamble_without_dicm_is_not_dicom_not_truncated(tmp_path):
    garbage = bytes(range(256)) * 8
    assert check(tmp_path, b"\0" * 128 + garbage) == (
        "not dicom: not a DICOM file (no DICM marker, no DICOM header)"
    )
    assert check(tmp_path, b"C-MOVE log: transfer complete\n").startswith("not dicom: ")
    with pytest.raises(NotDicomError, match="not a DICOM file"):
        read_header(tmp_path / "x.dcm")


def test_unknown_transfer_syntax_is_unsupported(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.file_meta.TransferSyntaxUID = "1.2.3.4.5.6.7.8"
    buf = io.BytesIO()
    ds.save_as(buf)
    assert check(tmp_path, buf.getvalue()).startswith("unsupported: unsupported transfer syntax")


def test_missing_image_attributes_are_named(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    del ds.Rows
    buf = io.BytesIO()
    ds.save_as(buf)
    assert check(tmp_path, buf.getvalue()) == (
        "rejected: missing required image attribute(s): Rows"
    )
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    del ds.PixelData
    buf = io.BytesIO()
    ds.save_as(buf)
    assert check(tmp_path, buf.getvalue()) == "rejected: no pixel data in an image"


def test_a_fragment_running_past_the_end_is_truncated(tmp_path):
    raw = data("JPEG2000.dcm")
    reason = check(tmp_path, raw[:-40])
    assert reason.startswith("rejected: truncated pixel data: fragment 1 declares")


@pytest.mark.parametrize(
    "name",
    [
        "CT_small.dcm",
        "MR_small_implicit.dcm",
        "JPEG2000.dcm",
        "emri_small_jpeg_2k_lossless.dcm",
        "SC_rgb.dcm",
        "MR_small_bigendian.dcm",
    ],
)
def test_no_cut_of_a_real_file_is_accepted(tmp_path, name):
    """Every truncation point (sampled: ~150 per file) is refused; the whole file passes."""
    raw = data(name)
    assert check(tmp_path, raw) == "ok"
    step = max(1, len(raw) // 150)
    accepted = [k for k in range(1, len(raw), step) if check(tmp_path, raw[:k]) == "ok"]
    assert accepted == []


# pydicom's test files that are damaged or are not whole images on purpose
DAMAGED = {
    "MR_truncated.dcm",
    "emri_small_jpeg_2k_lossless_too_short.dcm",
    "rtplan_truncated.dcm",
    "badVR.dcm",  # NumberOfFrames "A"
    "meta_missing_tsyntax.dcm",
    "no_meta.dcm",
    # snippets without an SOP Instance UID (sequence and charset tests)
    "UN_sequence.dcm",
    "empty_charset_LEI.dcm",
    "nested_priv_SQ.dcm",
    "no_meta_group_length.dcm",
    "priv_SQ.dcm",
}


def test_intact_real_files_pass():
    """Every other pydicom test file (every transfer syntax pydicom ships, padded pixel data
    included: a complete image) and deid-data's images pass."""
    from dicom_corpus import DEID_FILES

    # pydicom's own folder (get_testdata_files("*") also searches pydicom-data: 13 s)
    names = sorted(Path(get_testdata_file("CT_small.dcm")).parent.glob("*.dcm"))
    intact = [p for p in names if p.name not in DAMAGED]
    assert len(intact) > 60
    for path in [*intact, *DEID_FILES]:
        read_checked_header(path)


def test_pydicom_own_damaged_files_are_rejected():
    for name in ("MR_truncated.dcm", "emri_small_jpeg_2k_lossless_too_short.dcm"):
        with pytest.raises(RejectedImageError, match="truncated pixel data"):
            read_checked_header(get_testdata_file(name))


def test_reasons_carry_no_values(tmp_path):
    """A truncated file whose header holds a name: the reason names tags and counts only."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName = "QUIRKYNAME^PATIENT"
    buf = io.BytesIO()
    ds.save_as(buf)
    raw = buf.getvalue()
    for cut in range(200, len(raw), 97):
        reason = check(tmp_path, raw[:cut])
        assert "QUIRKY" not in reason and os.fspath(tmp_path) not in reason
