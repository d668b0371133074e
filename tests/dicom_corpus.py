"""Real DICOM files shipped in packages: pydicom's test files and deid-data."""

from __future__ import annotations

import warnings
from pathlib import Path

import deid_data
import pydicom
from pydicom.data import get_testdata_files

DEID_DATA = Path(deid_data.__file__).parent / "data"
DEID_FILES = sorted(
    [
        *DEID_DATA.glob("dicom-cookies/*.dcm"),
        *DEID_DATA.glob("humans/*.dcm"),
        DEID_DATA / "ultrasounds" / "GREYSCALE_IMAGE.dcm",
        DEID_DATA / "animals" / "cat.dcm",
    ]
)


def pydicom_files(limit: int = 40) -> list[Path]:
    """Readable single-dataset pydicom test files with pixel data and an SOP Instance UID
    (those needing a download are left out)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        names = sorted(get_testdata_files("*.dcm"))
    chosen = []
    for name in names:
        try:
            ds = pydicom.dcmread(name, stop_before_pixels=True)
        except Exception:
            continue
        if (
            "SOPInstanceUID" in ds
            and "PixelData" in pydicom.dcmread(name)
            and (ds.file_meta.get("TransferSyntaxUID", "").startswith("1.2.840.10008.1.2"))
        ):
            chosen.append(Path(name))
        if len(chosen) >= limit:
            break
    return chosen
