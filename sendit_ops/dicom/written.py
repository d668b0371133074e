"""What the pipeline wrote itself into a de-identified dataset, so the leak check can tell it
from what came from the input.

The leak check looks for the study's original values (a patient ``BASIC^TABITHA``, ``CLEAN``,
``OPTION``, ``NAME^PATIENT^NAME``) in everything that leaves. The pipeline's own output holds
such words too: "Basic Application Confidentiality Profile", "Clean Descriptors Option",
"Retain Patient Characteristics Option", the dummy ``ANONYMIZED``, the placeholders
``[name]``, ``[date]`` of a cleaned description. Those values did not come from the input, so
they cannot leak it; every value that did come from the input is still checked in full.

Recorded where they are written: ``annex_e.record`` (method text, code sequence items,
Patient Identity Removed, Longitudinal Temporal Information Modified), the profile's dummy
values, the descriptor cleaner (the placeholder and shifted-date spans of each cleaned value),
the file meta. An element counts as written only while it still holds exactly the value the
pipeline wrote (the site recipe runs later and may change it: then it is checked).

``values`` (whole written values and the fragments written into cleaned text) is shared by
every dataset of a batch: the archive step, which sees only bytes and rows, exempts exactly
those strings (``LeakScanner.hits_bytes``, ``scan_mapping``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag

_ATTRIBUTE = "_sendit_written"
# the elements the record writes, by keyword (a dict lookup instead of pydicom's keyword search)
_TAGS: dict[str, BaseTag] = {
    "CodeValue": BaseTag(0x00080100),
    "CodingSchemeDesignator": BaseTag(0x00080102),
    "CodeMeaning": BaseTag(0x00080104),
    "DeidentificationMethod": BaseTag(0x00120063),
    "PatientIdentityRemoved": BaseTag(0x00120062),
    "LongitudinalTemporalInformationModified": BaseTag(0x00280303),
    "ImplementationVersionName": BaseTag(0x00020013),
}
# what may be blanked out of bytes and rows: words (a written value with a letter: method
# text, code meanings, ANONYMIZED, [name]) and the YYYY-MM-DD dates written into cleaned text;
# never bare numbers (the dummies 0, 000000, 19000101): ids and dates of the input are digits
_BLANKABLE = re.compile(r"(?=.*[^\W\d_]).{3,}|\d{4}-\d{2}-\d{2}", re.DOTALL)


def _strings(value: object) -> list[str]:
    if isinstance(value, MultiValue | list | tuple):
        return [str(v) for v in value]
    return [] if value is None else [str(value)]


class Written:
    """The elements and text spans the pipeline wrote into one dataset."""

    def __init__(self, values: set[str] | None = None):
        # id(element) -> (element, the string values written); the element is kept so its
        # id is not reused while this record lives
        self._elements: dict[int, tuple[DataElement, frozenset[str]]] = {}
        # a cleaned text value -> the (start, end) spans of it the pipeline wrote
        self._texts: dict[str, tuple[tuple[int, int], ...]] = {}
        self.values: set[str] = set() if values is None else values

    # ---- recording --------------------------------------------------------------------

    def element(self, elem: DataElement, values: Iterable[str] | None = None) -> None:
        """``elem`` holds (some of) its values because the pipeline wrote them: all of them,
        or only ``values`` (De-identification Method keeps the input's earlier values)."""
        written = frozenset(_strings(elem.value) if values is None else values)
        self._elements[id(elem)] = (elem, written)
        self.values.update(v for v in written if v)

    def dataset_element(
        self, ds: Dataset, keyword: str, values: Iterable[str] | None = None
    ) -> None:
        """``element`` for ``ds``'s element ``keyword`` (nothing if it is absent)."""
        elem = ds._dict.get(_TAGS[keyword]) if keyword in _TAGS else None
        if elem is None and keyword in ds:
            elem = ds[keyword]
        if isinstance(elem, DataElement):  # set by the pipeline: never a raw element
            self.element(elem, values)

    def text(self, value: str, spans: Iterable[tuple[int, int]]) -> None:
        """``value`` (a cleaned description) holds pipeline-written text at ``spans``."""
        spans = tuple(sorted(spans))
        if not spans:
            return
        self._texts[value] = spans
        self.values.update(value[a:b] for a, b in spans if b > a)

    # ---- asking -----------------------------------------------------------------------

    def written_values(self, elem: DataElement) -> frozenset[str]:
        """The values of ``elem`` the pipeline wrote (empty: none, or the element has been
        changed since)."""
        entry = self._elements.get(id(elem))
        if entry is None or entry[0] is not elem:
            return frozenset()
        current = set(_strings(elem.value))
        return entry[1] if entry[1] & current else frozenset()

    def cleaned_parts(self, value: object) -> list[str] | None:
        """For an element value holding a cleaned text (one value or several): the parts of
        it that came from the input (``input_parts`` of each); None when no value of it was
        cleaned (the common case: one dict lookup)."""
        if not self._texts:
            return None
        values = _strings(value)
        if not any(v in self._texts for v in values):
            return None
        return [p for v in values for p in self.input_parts(v)]

    def input_parts(self, value: str) -> list[str]:
        """The parts of a text value that came from the input: the value itself, or for a
        cleaned value the text between the spans the pipeline wrote (each part checked on
        its own, so two input words around a placeholder are not joined)."""
        spans = self._texts.get(value)
        if not spans:
            return [value]
        parts, last = [], 0
        for a, b in spans:
            parts.append(value[last:a])
            last = b
        parts.append(value[last:])
        return [p for p in parts if p.strip()]


def attach(ds: Dataset, written: Written) -> None:
    """Keep ``written`` with ``ds`` so later stages (the pixel stage's method code) record
    what they add to the same dataset."""
    object.__setattr__(ds, _ATTRIBUTE, written)


def of(ds: Dataset) -> Written | None:
    """The record attached to ``ds``, if any."""
    return ds.__dict__.get(_ATTRIBUTE)


def blankable(values: Iterable[str]) -> list[str]:
    """The written values that ``blank`` removes, longest first."""
    return sorted((v for v in values if _BLANKABLE.fullmatch(v)), key=len, reverse=True)


def blank(text: str, values: Iterable[str]) -> str:
    """``text`` with every occurrence of the written ``values`` (words and written dates, see
    ``blankable``) replaced by spaces of the same length (for raw bytes and rows, which have
    no element identity): what is left is input."""
    for value in blankable(values):
        if value in text:
            text = text.replace(value, " " * len(value))
    return text


def blank_bytes(data: bytes, values: Iterable[str]) -> bytes:
    """``blank`` for raw header bytes (written values are ASCII; UTF-8 encoded otherwise)."""
    for value in blankable(values):
        encoded = value.encode("utf-8", errors="ignore")
        if encoded in data:
            data = data.replace(encoded, b" " * len(encoded))
    return data
