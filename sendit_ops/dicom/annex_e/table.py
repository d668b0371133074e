"""DICOM PS3.15 Annex E Table E.1-1 as data: loaded once per process.

The table is the standard's own (``table_e1_1.json``, its edition and source named in the
file), not a hand list: a rule of sendit's de-identification can be traced to a row. Entries
added to the standard after that edition come from an independent copy and carry only their
Basic Profile action (see the file's ``supplement``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

TABLE_FILE = Path(__file__).with_name("table_e1_1.json")

# the option columns of Table E.1-1, in the standard's order, with their CID 7050 codes
OPTION_CODES: dict[str, tuple[str, str]] = {
    "clean_graphics": ("113103", "Clean Graphics Option"),
    "clean_structured_content": ("113104", "Clean Structured Content Option"),
    "clean_descriptors": ("113105", "Clean Descriptors Option"),
    "retain_longitudinal_full_dates": (
        "113106",
        "Retain Longitudinal Temporal Information Full Dates Option",
    ),
    "retain_longitudinal_modified_dates": (
        "113107",
        "Retain Longitudinal Temporal Information Modified Dates Option",
    ),
    "retain_patient_characteristics": ("113108", "Retain Patient Characteristics Option"),
    "retain_device_identity": ("113109", "Retain Device Identity Option"),
    "retain_uids": ("113110", "Retain UIDs Option"),
    "retain_safe_private": ("113111", "Retain Safe Private Option"),
    "retain_institution_identity": ("113112", "Retain Institution Identity Option"),
}
BASIC_PROFILE_CODE = ("113100", "Basic Application Confidentiality Profile")
CLEAN_PIXEL_DATA_CODE = ("113101", "Clean Pixel Data Option")

BASIC_ACTIONS = ("X", "Z", "D", "U", "X/Z", "X/D", "Z/D", "X/Z/D", "X/Z/U*")


@dataclass(frozen=True)
class Entry:
    """One row of Table E.1-1.

    ``tag`` is the element tag for ordinary rows; ``mask``/``value`` describe the repeating
    groups (``(50xx,xxxx)``, ``(60xx,3000)``, ``(60xx,4000)``) so that a tag ``t`` belongs to
    the row when ``t & mask == value``; the private row has ``private`` set.
    """

    label: str
    name: str
    basic: str
    options: dict[str, str] = field(default_factory=dict)
    tag: int | None = None
    mask: int = 0xFFFFFFFF
    value: int = 0
    private: bool = False
    supplement: str | None = None
    in_composite_iod: bool = True


def _parse_tag(label: str) -> tuple[int | None, int, int, bool]:
    """``(gggg,eeee)`` with ``X`` digits as wildcards -> (tag, mask, value, private)."""
    if label == "private":
        return None, 0, 0, True
    digits = label.strip("()").replace(",", "")
    if len(digits) != 8:
        raise ValueError(f"bad tag in Table E.1-1 data: {label}")
    mask = int("".join("0" if c in "xX" else "F" for c in digits), 16)
    value = int("".join("0" if c in "xX" else c for c in digits), 16)
    tag = value if mask == 0xFFFFFFFF else None
    return tag, mask, value, False


def _entry(row: dict[str, Any]) -> Entry:
    if row["basic"] not in BASIC_ACTIONS:
        raise ValueError(f"unknown Basic Profile action in Table E.1-1 data: {row['basic']}")
    for option, action in row.get("options", {}).items():
        if option not in OPTION_CODES or action not in ("K", "C"):
            raise ValueError(f"unknown option column {option}={action} in Table E.1-1 data")
    tag, mask, value, private = _parse_tag(row["tag"])
    return Entry(
        label=row["tag"],
        name=row["name"],
        basic=row["basic"],
        options=dict(row.get("options", {})),
        tag=tag,
        mask=mask,
        value=value,
        private=private,
        supplement=row.get("supplement"),
        in_composite_iod=not row.get("not_in_composite_iod", False),
    )


@dataclass(frozen=True)
class Table:
    """Table E.1-1: its rows and where they come from."""

    edition: str
    source: dict[str, str]
    supplement: dict[str, str]
    entries: tuple[Entry, ...]

    def by_tag(self) -> dict[int, Entry]:
        """Rows with an exact tag, keyed by tag."""
        return {e.tag: e for e in self.entries if e.tag is not None}

    def masked(self) -> tuple[Entry, ...]:
        """Rows of repeating groups (curves, overlays)."""
        return tuple(e for e in self.entries if e.tag is None and not e.private)


@cache
def load_table(path: Path = TABLE_FILE) -> Table:
    """The table, parsed and checked once per process."""
    doc = json.loads(path.read_text())
    rows = [*doc["entries"], *doc.get("supplement_entries", [])]
    entries = tuple(_entry(r) for r in rows)
    tags = [e.label for e in entries]
    if len(tags) != len(set(tags)):
        raise ValueError("Table E.1-1 data lists a tag twice")
    return Table(doc["edition"], doc["source"], doc.get("supplement", {}), entries)
