"""Original identifying values of a batch: what the pseudonym request needs, and what the
leak check must never find in the output.

Everything here is identified data: it is kept in the batch's work folder (mode 0600) and
deleted when the batch is finished; it is never logged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from sendit_ops import dicom_io  # noqa: F401 - pydicom's value warnings off (they print values)

# Elements whose whole values identify the patient or the study; besides these, every person
# name (PN) and its parts, every date (DA/DT) and every non-standard UID is a needle.
# Institution, station and device names are removed by the recipe but not searched for
# everywhere: they legitimately recur in vendor text (Manufacturer "TOSHIBA_MEC").
ID_KEYWORDS = (
    "PatientID", "OtherPatientIDs", "AccessionNumber", "StudyID", "MedicalRecordLocator",
    "PatientAddress", "PatientTelephoneNumbers", "PatientBirthName", "PatientMotherBirthName",
    "RequestedProcedureID", "PlacerOrderNumberImagingServiceRequest",
    "FillerOrderNumberImagingServiceRequest",
)  # fmt: skip
DATE_VRS = ("DA", "DT")
_NEEDLE_VRS = {"SQ", "PN", "DA", "DT", "UI", None}
_ID_TAGS = {tag_for_keyword(k) for k in ID_KEYWORDS}
STANDARD_UID_ROOT = "1.2.840.10008."
MIN_LEN = 3  # shorter values (sex, single initials) match too much ordinary text


@dataclass
class Needles:
    """Original values to search for: words (ids, names, text), dates (YYYYMMDD), UIDs."""

    words: set[str] = field(default_factory=set)
    dates: set[str] = field(default_factory=set)
    uids: set[str] = field(default_factory=set)

    def update(self, other: Needles) -> None:
        """Add another set of needles."""
        self.words |= other.words
        self.dates |= other.dates
        self.uids |= other.uids

    def as_dict(self) -> dict[str, list[str]]:
        """JSON-able form (sorted)."""
        return {"words": sorted(self.words), "dates": sorted(self.dates), "uids": sorted(self.uids)}

    @classmethod
    def from_dict(cls, data: dict[str, list[str]]) -> Needles:
        """Inverse of as_dict."""
        return cls(set(data["words"]), set(data["dates"]), set(data["uids"]))


def _values(value: object) -> list[str]:
    if isinstance(value, MultiValue | list | tuple):
        return [str(v).strip() for v in value if str(v).strip()]
    text = str(value).strip() if value is not None else ""
    return [text] if text else []


def _add_word(needles: Needles, value: str) -> None:
    value = value.strip()
    if len(re.sub(r"[^A-Za-z0-9]", "", value)) >= MIN_LEN:
        needles.words.add(value.upper())
        compact = re.sub(r"[^A-Za-z0-9]", "", value)
        if compact != value and len(compact) >= MIN_LEN:
            needles.words.add(compact.upper())  # DASHER ids drop dashes


def collect_needles(ds: Dataset, extra_words: list[str] = ()) -> Needles:
    """Walk a header (file meta, sequences and private blocks included) and collect every
    identifying value: names (and their parts), ids, dates, non-standard UIDs."""
    needles = Needles()
    for word in extra_words:
        _add_word(needles, word)

    def visit(dataset: Dataset) -> None:
        for tag, raw in dataset._dict.items():
            # skip, without decoding, elements whose explicit VR cannot hold an identifier
            vr = getattr(raw, "VR", None)
            if vr and vr not in _NEEDLE_VRS and tag not in _ID_TAGS:
                continue
            elem = dataset[tag]
            if elem.VR == "SQ":
                for item in elem.value or []:
                    visit(item)
                continue
            if elem.tag == 0x7FE00010:
                continue
            if elem.VR == "PN":
                for name in _values(elem.value):
                    _add_word(needles, name.replace("^", " ").strip())
                    for part in re.split(r"[\^=\s]+", name):
                        _add_word(needles, part)
            elif elem.VR in DATE_VRS:
                for v in _values(elem.value):
                    if len(v) >= 8 and v[:8].isdigit():
                        needles.dates.add(v[:8])
            elif elem.VR == "UI" and elem.tag != 0x00020012:  # ImplementationClassUID: software
                for v in _values(elem.value):
                    if not v.startswith(STANDARD_UID_ROOT):
                        needles.uids.add(v)
            elif elem.keyword in ID_KEYWORDS:
                for v in _values(elem.value):
                    _add_word(needles, v)

    if getattr(ds, "file_meta", None):
        visit(ds.file_meta)
    visit(ds)
    return needles


def dicom_date_to_iso(value: str, time: str = "") -> str | None:
    """DICOM DA (+ optional TM) -> DASHER timestamp ``YYYY-MM-DDTHH:MM:SSZ`` (None if invalid)."""
    if len(value) < 8 or not value[:8].isdigit():
        return None
    digits = re.sub(r"\D", "", time.split(".")[0])[:6].ljust(6, "0")
    hh, mm, ss = digits[0:2], digits[2:4], digits[4:6]
    if not (int(hh) < 24 and int(mm) < 60 and int(ss) < 60):
        hh = mm = ss = "00"
    return f"{value[0:4]}-{value[4:6]}-{value[6:8]}T{hh}:{mm}:{ss}Z"
