"""Verification: what OCR still reads on the masked output must be harmless.

A line passes when every token is an allow-listed technical token (MI, TIS, cm, Hz ...), a
short measurement (up to 3 digits, optional decimals, optional allow-listed unit: ``0.8``,
``100%``, ``20Hz``) or a single character, AND the study's identifiers are not in it
(``is_identifying``). Anything else holds the image for review: a date, a long number, a
word. The text itself is only compared, never kept.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from pydicom.dataset import Dataset

from sendit_ops.dicom.pixels.ocr import TextHit

_SPLIT = re.compile(r"[\s=<>:;,|()\[\]{}*#~\"']+")
_MEASURE = re.compile(r"[+-]?\d{1,3}(?:[.,]\d{1,3})?(?P<unit>%|[A-Z][A-Z/]*)?")
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
# characters OCR confuses in printed text; compared after mapping to the digit
_CONFUSABLE = str.maketrans({"O": "0", "D": "0", "Q": "0", "I": "1", "L": "1", "|": "1",
                             "Z": "2", "S": "5", "B": "8", "G": "6"})  # fmt: skip


def token_allowed(token: str, allow: frozenset[str]) -> bool:
    """True for an allow-listed token, a short measurement, or a lone character."""
    t = token.upper().strip(".-+_")
    if len(t) <= 1 or t in allow:
        return True
    match = _MEASURE.fullmatch(t)
    return bool(match) and (match["unit"] is None or match["unit"] in allow)


def line_allowed(text: str, allow: frozenset[str]) -> bool:
    """True when every token of an OCR line is allowed."""
    return all(token_allowed(t, allow) for t in _SPLIT.split(text) if t)


def residual(
    hits: Iterable[TextHit], allow: Iterable[str], is_identifying: Callable[[str], bool]
) -> list[TextHit]:
    """The hits that hold an image: not allowed, or naming an identifier."""
    allowed = frozenset(a.upper() for a in allow)
    return [h for h in hits if is_identifying(h.text) or not line_allowed(h.text, allowed)]


def _compact(text: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", text.upper())


def date_forms(yyyymmdd: str) -> set[str]:
    """A date's common printed forms, without separators (24-MAY-02 -> 24MAY02)."""
    if not (len(yyyymmdd) >= 8 and yyyymmdd[:8].isdigit()):
        return set()
    y, m, d = yyyymmdd[:4], yyyymmdd[4:6], yyyymmdd[6:8]
    if not 1 <= int(m) <= 12:
        return set()
    yy, mon, mi, di = y[2:], _MONTHS[int(m) - 1], str(int(m)), str(int(d))
    forms = set()
    for year in (y, yy):
        forms |= {y + m + d, m + d + year, mi + di + year, d + m + year, di + mi + year}
        forms |= {d + mon + year, di + mon + year, mon + d + year, mon + di + year}
    forms |= {y + mon + d, y + m + d}
    return {f for f in forms if len(f) >= 6}


def _near(needle: str, text: str) -> bool:
    """``needle`` in ``text`` with at most one character substituted, dropped or added."""
    n = len(needle)
    for size in (n - 1, n, n + 1):
        for start in range(0, max(0, len(text) - size) + 1):
            window = text[start : start + size]
            if len(window) != size:
                continue
            if size == n and sum(a != b for a, b in zip(window, needle, strict=True)) <= 1:
                return True
            if size != n:
                short, long_ = (window, needle) if size < n else (needle, window)
                if any(long_[:i] + long_[i + 1 :] == short for i in range(len(long_))):
                    return True
    return False


def identifier_matcher(words: Iterable[str], dates: Iterable[str] = ()) -> Callable[[str], bool]:
    """A fuzzy test for a study's identifiers in OCR text.

    ``words``: names (and their parts), ids, institution; ``dates``: YYYYMMDD values (e.g. a
    batch's ``Needles.words`` and ``Needles.dates``). Matching ignores case, spaces and
    punctuation, maps letters OCR mistakes for digits, finds dates in any common format and
    words of 6 or more characters with one OCR error.
    """
    needles = {c for c in (_compact(w) for w in words) if len(c) >= 3}
    skeletons = {n.translate(_CONFUSABLE) for n in needles}
    date_needles = {f for d in dates for f in date_forms(str(d))}

    def is_identifying(text: str) -> bool:
        compact = _compact(text)
        if not compact:
            return False
        skeleton = compact.translate(_CONFUSABLE)
        if any(n in compact for n in needles | date_needles):
            return True
        if any(s in skeleton for s in skeletons):
            return True
        return any(len(n) >= 6 and _near(n, compact) for n in needles)

    return is_identifying


def header_identifiers(ds: Dataset) -> tuple[set[str], set[str]]:
    """Words and dates of an ORIGINAL header worth looking for in its pixels: person names
    and their parts, ids, institution, and every date (for :func:`identifier_matcher`)."""
    words: set[str] = set()
    dates: set[str] = set()
    keywords = ("PatientID", "OtherPatientIDs", "AccessionNumber", "StudyID", "InstitutionName",
                "InstitutionAddress", "StationName", "PatientAddress")  # fmt: skip
    for elem in ds.iterall():
        value = elem.value
        values = list(value) if isinstance(value, list | tuple) or elem.VM > 1 else [value]
        if elem.VR == "PN":
            for v in values:
                words.update(p for p in re.split(r"[\^=\s]+", str(v)) if p)
        elif elem.VR in ("DA", "DT"):
            dates.update(str(v)[:8] for v in values if str(v)[:8].isdigit())
        elif elem.keyword in keywords:
            for v in values:
                words.add(str(v))
                words.update(p for p in str(v).split() if len(p) >= 4)
    return words, dates
