"""The leak check: no original identifying value may survive in anything that leaves.

Run on every anonymized header (file meta, sequences and private blocks included), on file and
archive names, on the metadata rows and on the raw header bytes of every archive member. A hit
names the place (tag path or field), never the value.

What counts as a hit is ``identifiers.IdentifierMatcher``'s: names in every component group
and written form (accents, case, order, other scripts), ids with or without separators, dates
in common formats, UIDs; Latin words bounded by non-word characters so ``ANN`` does not match
``CHANNEL`` and a name part ``RIS`` does not match ``SIEMENS_RIS`` (an id glued by ``_``,
``SCAN_12345678``, still matches). Three rules keep it from
crying wolf:

- a date element (DA, DT) is a leak only when it still holds *its own* original value: a
  shifted date equal to another element's original date (InstanceCreationDate 19970911 shifted
  by -36 days onto SeriesDate 19970806) is what date shifting does, not a leak;
- a coded string (CS) holds defined terms: a single name part there (ImageType ``PERFUSION``
  for a patient ``Perfusion^MCA Stroke``) is not a leak, two name parts together still are;
- in a metadata row only values are searched, JSON strings parsed, never keys (a name part
  ``PATIENTNAME`` is not found in the ``DicomHeader`` key ``PatientName``);
- what the pipeline wrote itself is not input (``written.Written``): its method text and code
  meanings ("Basic Application Confidentiality Profile", "Retain Patient Characteristics
  Option"), dummy values and the placeholders of cleaned descriptions cannot leak a patient
  named BASIC, PATIENT or NAME. A header's elements are skipped while they hold exactly what
  the pipeline wrote, a cleaned value is checked outside its placeholders; raw bytes and rows
  (no element identity) are checked with the batch's written values blanked out. Every value
  that came from the input is checked in full.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterable, Iterator, Mapping

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from sendit_ops.dicom.descriptors import StudyDescriptors
from sendit_ops.dicom.identifiers import (
    BIRTH_DATE_TAG,
    DATE_VRS,
    DateForms,
    IdentifierMatcher,
    Needles,
    fold,
    original_dates,
    path_key,
)
from sendit_ops.dicom.written import Written, blank, blank_bytes

__all__ = ["LeakScanner", "original_dates"]

_NUMERIC_VRS = {"US", "SS", "UL", "SL", "FL", "FD", "AT", "OF", "OD", "OL", "OV", "SV", "UV"}
# strings of digits: a date written there can only be YYYYMMDD (DD.MM.YY would be a version)
_NUMBER_STRING_VRS = {"DS", "IS", "TM", "AS", "UI"}
_MAX_BINARY = 1 << 16


def _where(prefix: str, elem: DataElement) -> str:
    """The place of an element as hits name it: tag and keyword, never the value (built only
    for hits: keyword look-ups are a large part of a clean header's scan)."""
    return f"{prefix}{elem.tag} {elem.keyword or 'private'}".strip()


def _date_parts(value: str) -> list[str]:
    return [v.strip()[:8] for v in value.split("\\")]


class LeakScanner:
    """Searches text, headers, rows and raw bytes for a batch's original identifying values.

    ``full_dates``: dates are retained on purpose (Retain Longitudinal Temporal Information
    with Full Dates): no date is a needle except the birth date. ``redact_institutions``:
    ``redact`` removes institution names too (False with Retain Institution Identity).
    ``kept``: the kinds of values the de-identification options keep on purpose
    (``Profile.kept_needles``: "dates", "uids", "institutions"), the same switches by name.
    """

    def __init__(
        self,
        needles: Needles,
        *,
        full_dates: bool = False,
        redact_institutions: bool = True,
        kept: Iterable[str] = (),
    ):
        kept = frozenset(kept)
        if "uids" in kept:  # Retain UIDs: the originals are the output's UIDs
            needles = dataclasses.replace(needles, uids=set())
        self.needles = needles
        self.full_dates = full_dates or "dates" in kept
        self.redact_institutions = redact_institutions and "institutions" not in kept
        self.matcher = IdentifierMatcher(needles, dates=not self.full_dates)
        self._redactor: IdentifierMatcher | None = None
        # folded name parts seen as defined terms in CS values of scanned headers: the raw
        # header bytes of those files may hold them (see IdentifierMatcher.hits_bytes)
        self.defined_terms: set[str] = set()
        # what the pipeline wrote into this batch's files (whole values, placeholders): the
        # raw bytes and rows of the archive step are checked without them
        self.written_values: set[str] = set()
        self._descriptors: StudyDescriptors | None = None

    # ---- text --------------------------------------------------------------------------------

    def hits(self, text: str, *, dates: DateForms = "any") -> bool:
        """True when ``text`` contains an original identifying value. ``dates="none"`` for
        text that carries a shifted date on purpose (an archive name: check its date with
        ``date_kept("StudyDate", ...)``), where another element's original date is no leak."""
        return self.matcher.hits(text, dates=dates)

    def date_kept(self, keyword: str, value: str) -> bool:
        """True when ``value``, the value of top-level date element ``keyword`` (or a tag path
        ``00080020``) after de-identification, is still one of that element's originals."""
        tag = tag_for_keyword(keyword)
        path = f"{tag:08X}" if tag is not None else keyword
        return bool(value) and self._date_kept(path, int(path[-8:], 16), value, None)

    def hits_bytes(self, data: bytes, exempt: Iterable[str] = ()) -> bool:
        """True when raw bytes hold an original value in UTF-8, Latin-1 or the study's
        character sets (for the archive members' header bytes); ``exempt``: the
        ``defined_terms`` noted when those headers were scanned. The values the pipeline
        wrote (``written_values``) are blanked out first."""
        if self.written_values:
            data = blank_bytes(data, self.written_values)
        return self.matcher.hits_bytes(data, frozenset(exempt))

    @property
    def descriptors(self) -> StudyDescriptors:
        """Clean Descriptors for this batch: the study's identifiers and the free-text
        detector, with typed placeholders (``anonymize_dataset(clean=scanner.descriptors)``
        makes each file's cleaner from it)."""
        if self._descriptors is None:
            self._descriptors = StudyDescriptors(
                self.needles, full_dates=self.full_dates, institutions=self.redact_institutions
            )
        return self._descriptors

    def redact(self, text: str, marker: str = "[removed]") -> str:
        """Clean Descriptors: ``text`` with every identifying value (institution names too,
        unless kept on purpose) replaced by ``marker``: the leak check's own matcher, so
        what is left afterwards is exactly what the check still stops. Usable as the
        profile's ``Cleaner`` (``clean=scanner.redact``)."""
        if self._redactor is None:
            self._redactor = IdentifierMatcher(
                self.needles, dates=not self.full_dates, institutions=self.redact_institutions
            )
        return self._redactor.redact(text, marker)

    # ---- dates -------------------------------------------------------------------------------

    def _date_kept(self, path: str, tag: int, value: str, originals: dict[str, str] | None) -> bool:
        """True when a date element still holds its own original value (its date part)."""
        if self.full_dates and tag != BIRTH_DATE_TAG:
            return False
        current = _date_parts(value)
        if originals is not None:
            before = _date_parts(originals.get(path, ""))
            return any(c and i < len(before) and c == before[i] for i, c in enumerate(current))
        pooled = self.needles.element_dates.get(path_key(path))
        if pooled is None:
            if self.needles.element_dates:
                return False  # the element was not there before: nothing of its own to keep
            return any(c in self.needles.dates for c in current)  # needles from an old file
        before_set = {d[:8] for d in pooled}
        return any(c and c in before_set for c in current)

    # ---- headers -----------------------------------------------------------------------------

    def _value_hits(self, vr: str | None, text: str) -> bool:
        dates: DateForms = "compact" if vr in _NUMBER_STRING_VRS else "any"
        folded = fold(text)
        if self.matcher.search_folded(folded, coded=vr == "CS", dates=dates):
            return True
        if vr == "CS":  # a defined term equal to a name part: allowed, noted for raw bytes
            self.defined_terms |= self.matcher.lone_parts(folded)
        return False

    def scan_dataset(
        self,
        ds: Dataset,
        original_dates: dict[str, str] | None = None,
        written: Written | None = None,
    ) -> list[str]:
        """Places (tag paths) in a header holding an original identifying value.

        ``original_dates``: the header's own ``identifiers.original_dates`` taken before
        de-identification; without it a date element is compared with the originals of the
        same element path over the study (``Needles.element_dates``). ``written``: what the
        pipeline wrote into ``ds`` (not checked: it is not input).
        """
        found: list[str] = []
        if self.matcher.empty:
            return found

        def visit(dataset: Dataset, prefix: str, path_prefix: str) -> None:
            for elem in dataset:
                tag = int(elem.tag)
                vr = elem.VR
                if tag == 0x7FE00010 or vr in _NUMERIC_VRS:
                    continue
                path = f"{path_prefix}{tag:08X}"
                if vr == "SQ":
                    where = _where(prefix, elem)
                    for i, item in enumerate(elem.value or []):
                        visit(item, f"{where}[{i}] > ", f"{path}[{i}].")
                    continue
                value = elem.value
                if value is None or value == "":
                    continue
                if written is not None and (own := written.written_values(elem)):
                    value = [v for v in _strings(value) if v not in own]
                    if not value:
                        continue  # all of it written by the pipeline
                if isinstance(value, bytes):
                    hit = len(value) <= _MAX_BINARY and self.matcher.hits_bytes(value)
                elif vr in DATE_VRS:
                    hit = self._date_kept(path, tag, "\\".join(_strings(value)), original_dates)
                elif written is not None and (parts := written.cleaned_parts(value)):
                    hit = any(self._value_hits(vr, part) for part in parts)
                else:  # several values joined, as the check always read them
                    if isinstance(value, MultiValue | list | tuple):
                        value = "\\".join(str(v) for v in value)
                    hit = self._value_hits(vr, str(value))
                if hit:
                    found.append(_where(prefix, elem))

        if getattr(ds, "file_meta", None):
            visit(ds.file_meta, "file meta ", "")
        visit(ds, "", "")
        preamble = getattr(ds, "preamble", None)
        if preamble and self.matcher.hits_bytes(preamble):
            found.append("preamble")
        return found

    # ---- rows --------------------------------------------------------------------------------

    def scan_mapping(self, row: Mapping[str, object], label: str) -> list[str]:
        """Fields of a metadata row (or any mapping) holding an original value. Only values
        are searched; a string holding JSON (``DicomHeader``) is parsed and its values
        searched, each with the rule of the DICOM element its key names."""
        found: list[str] = []
        for key, value in sorted(row.items()):
            if any(self._leaf_hits(k, v) for k, v in _leaves(str(key), value)):
                found.append(f"{label} field {key}")
        return found

    def _leaf_hits(self, key: str, value: object) -> bool:
        text = "\\".join(str(v) for v in value) if isinstance(value, list) else str(value)
        if self.written_values:
            text = blank(text, self.written_values)
        if not text.strip():
            return False
        vr = _keyword_vr(key)
        if vr in DATE_VRS:
            tag = tag_for_keyword(key) or 0
            return self._date_kept(f"{tag:08X}", tag, text, None)
        return self._value_hits(vr, text)


def _strings(value: object) -> list[str]:
    if isinstance(value, MultiValue | list | tuple):
        return [str(v) for v in value]
    return [str(value)]


def _leaves(key: str, value: object) -> Iterator[tuple[str, object]]:
    """(nearest key, value) of every scalar or list of scalars in a value, JSON strings
    parsed (a row's ``DicomHeader``)."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        with contextlib.suppress(ValueError):  # not JSON after all: searched as text
            value = json.loads(value)
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(str(k), v)
    elif isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
        for v in value:
            yield from _leaves(key, v)
    elif value is not None:
        yield key, value


def _keyword_vr(keyword: str) -> str | None:
    """VR of the DICOM element a keyword names (None for other field names)."""
    tag = tag_for_keyword(keyword)
    if tag is None:
        return None
    try:
        return dictionary_VR(tag)
    except KeyError:
        return None
