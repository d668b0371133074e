"""The leak check: no original identifying value may survive in anything that leaves.

Run on every anonymized header (file meta, sequences and private blocks included), on file and
archive names and on the metadata rows. A hit names the place (tag or field), never the value.
Matching is case-insensitive and bounded by characters other than letters, digits and ``_``,
so ``ANN`` does not match ``CHANNEL`` and a name part ``RIS`` does not match the code
``SIEMENS_RIS``; a date also matches at the start of a date-time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from sendit_ops.identifiers import Needles

_NUMERIC_VRS = {"US", "SS", "UL", "SL", "FL", "FD", "AT", "OF", "OD", "OL", "OV", "SV", "UV"}
_MAX_BINARY = 1 << 16


def _alternation(values: Iterable[str]) -> str:
    return "|".join(re.escape(v) for v in sorted(values, key=len, reverse=True))


class LeakScanner:
    """Searches text and headers for a batch's original identifying values."""

    def __init__(self, needles: Needles):
        parts = []
        words = needles.words | needles.uids
        if words:
            parts.append(rf"(?<![A-Z0-9_])(?:{_alternation(words)})(?![A-Z0-9_])")
        if needles.dates:
            parts.append(rf"(?<![0-9])(?:{_alternation(needles.dates)})")
        self._re = re.compile("|".join(parts), re.IGNORECASE) if parts else None

    def hits(self, text: str) -> bool:
        """True when ``text`` contains an original identifying value."""
        return bool(self._re and text and self._re.search(text))

    def scan_dataset(self, ds: Dataset) -> list[str]:
        """Places (tag paths) in a header holding an original identifying value."""
        found: list[str] = []
        if self._re is None:
            return found

        def visit(dataset: Dataset, prefix: str) -> None:
            for elem in dataset:
                where = f"{prefix}{elem.tag} {elem.keyword or 'private'}".strip()
                if elem.VR == "SQ":
                    for i, item in enumerate(elem.value or []):
                        visit(item, f"{where}[{i}] > ")
                    continue
                if elem.tag == 0x7FE00010 or elem.VR in _NUMERIC_VRS:
                    continue
                value = elem.value
                if isinstance(value, bytes):
                    if len(value) > _MAX_BINARY:
                        continue
                    value = value.decode("latin-1")
                elif isinstance(value, MultiValue | list | tuple):
                    value = "\\".join(str(v) for v in value)
                elif value is None:
                    continue
                if self.hits(str(value)):
                    found.append(where)

        if getattr(ds, "file_meta", None):
            visit(ds.file_meta, "file meta ")
        visit(ds, "")
        if self.hits(ds.preamble.decode("latin-1") if ds.preamble else ""):
            found.append("preamble")
        return found

    def scan_mapping(self, row: dict, label: str) -> list[str]:
        """Fields of a metadata row (or any flat mapping) holding an original value."""
        return [f"{label} field {k}" for k, v in sorted(row.items()) if self.hits(str(v))]
