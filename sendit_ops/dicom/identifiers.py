"""Original identifying values of a batch, and the matchers that find them in text.

``collect_needles`` gathers what the pseudonym request needs and what must never leave:
person names (every component group: alphabetic, ideographic, phonetic), ids, dates, UIDs,
institutions, and the date elements' own original values. ``IdentifierMatcher`` compiles
them once per batch into regular expressions over *folded* text (NFKC, case folded, accents
and kana voicing marks dropped, katakana as hiragana), so ``Jose Muller`` is found for
``MÜLLER^JOSÉ`` and ``たろう やまだ`` for ``ﾔﾏﾀﾞ^ﾀﾛｳ``. The leak check (``leak_scan.LeakScanner``)
and the Clean Descriptors option (``IdentifierMatcher.redact``) both use it, so what is
cleaned and what is checked can never drift apart.

One source, three modes: the needles are collected once per study (``collect_needles``, in
the filter step) and every consumer matches them the way it needs: *exact* (a date element
against its own original value, a UID in a set: ``LeakScanner``), *folded*
(``IdentifierMatcher``: the header cleaner and the leak check) and *OCR-tolerant*
(``ocr_matcher``: confusable letters and digits, one character wrong, printed date forms; the
pixel stage's check of what OCR still reads on a masked image).

Everything here is identified data: it is kept in the batch's work folder (mode 0600) and
deleted when the batch is finished; it is never logged, and no message built here holds it.
"""

from __future__ import annotations

import codecs
import contextlib
import functools
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal, TypedDict

from pydicom.charset import convert_encodings
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from sendit_ops.dicom import io as dicom_io  # noqa: F401 - pydicom's value warnings off (they print values)

# Elements whose whole values identify the patient or the study; besides these, every person
# name (PN) and its parts, every date (DA/DT) and every non-standard UID is a needle.
ID_KEYWORDS = (
    "PatientID", "OtherPatientIDs", "AccessionNumber", "StudyID", "MedicalRecordLocator",
    "PatientAddress", "PatientTelephoneNumbers", "PatientBirthName", "PatientMotherBirthName",
    "RequestedProcedureID", "PlacerOrderNumberImagingServiceRequest",
    "FillerOrderNumberImagingServiceRequest",
)  # fmt: skip
# Institution names are removed by the recipe but are not leak-check needles: vendor and site
# strings recur legitimately elsewhere (Manufacturer "TOSHIBA_MEC", a department code). They
# are collected for Clean Descriptors, where removing one from free text costs nothing, and for
# the OCR check of burned-in text (a station name is often burned into ultrasound images).
INSTITUTION_KEYWORDS = (
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "StationName",
)  # fmt: skip
DATE_VRS = ("DA", "DT")
# UN (an explicit VR of "unknown"): pydicom gives the element its dictionary VR on access
_NEEDLE_VRS = frozenset({"SQ", "PN", "DA", "DT", "UI", "UN", None})
_ID_TAGS = frozenset(t for k in ID_KEYWORDS if (t := tag_for_keyword(k)) is not None)
_INSTITUTION_TAGS = frozenset(
    t for k in INSTITUTION_KEYWORDS if (t := tag_for_keyword(k)) is not None
)
_CHARSET_TAG = 0x00080005
BIRTH_DATE_TAG = 0x00100030
STANDARD_UID_ROOT = "1.2.840.10008."
MIN_LEN = 3  # shorter Latin values (sex, initials, "LI") match too much ordinary text

# ---- folding ---------------------------------------------------------------------------------

# letters NFKD does not decompose, spelled the way people type them without the key
_SPECIAL = {
    "ø": "o", "æ": "ae", "œ": "oe", "đ": "d", "ð": "d", "ł": "l", "þ": "th", "\u0131": "i",
    "ħ": "h", "ŧ": "t", "ŋ": "n", "ĸ": "q",
}  # fmt: skip
_HANGUL = ("\uac00", "\ud7a3")
_KATAKANA = ("\u30a1", "\u30f6")


@functools.lru_cache(maxsize=1 << 16)
def fold_char(ch: str) -> str:
    """One character as the matcher sees it: NFKC (full/half width, compatibility forms),
    case folded (ß -> ss), accents and kana voicing marks dropped (NFKD minus combining
    marks), katakana as hiragana. Hangul syllables are kept whole: their decomposition is
    into letters (jamo), not into a base and an accent."""
    out: list[str] = []
    for c in unicodedata.normalize("NFKC", ch).casefold():
        if _HANGUL[0] <= c <= _HANGUL[1]:
            out.append(c)
            continue
        for d in unicodedata.normalize("NFKD", c):
            if unicodedata.combining(d):
                continue
            d = _SPECIAL.get(d, d)
            if _KATAKANA[0] <= d <= _KATAKANA[1]:
                d = chr(ord(d) - 0x60)
            out.append(d)
    return "".join(out)


class _FoldTable(dict[int, str]):
    """``str.translate`` table filled on first use of each code point (fast in C after);
    bounded, since UTF-8 read from binary bytes can show any code point."""

    def __missing__(self, code: int) -> str:
        value = fold_char(chr(code))
        if len(self) < _FOLD_TABLE_MAX:
            self[code] = value
        return value


_FOLD_TABLE_MAX = 1 << 16


_FOLD_TABLE = _FoldTable()


def fold(text: str) -> str:
    """Text as the matcher sees it (see ``fold_char``); plain ASCII takes a fast path."""
    if text.isascii():
        return text.lower()
    return text.translate(_FOLD_TABLE)


def fold_with_offsets(text: str) -> tuple[str, list[int]]:
    """``fold(text)`` and, for each of its characters, the index of the character of ``text``
    it came from (folding changes lengths: ß -> ss, ﾀﾞ -> た)."""
    parts: list[str] = []
    offsets: list[int] = []
    for i, ch in enumerate(text):
        f = fold_char(ch)
        parts.append(f)
        offsets.extend([i] * len(f))
    return "".join(parts), offsets


# ---- needles ---------------------------------------------------------------------------------


class NeedlesDict(TypedDict, total=False):
    """``Needles`` as JSON (``identifiers.json``); a file written before names and dates were
    split holds only words, dates and uids."""

    words: list[str]
    dates: list[str]
    uids: list[str]
    names: list[str]
    institutions: list[str]
    birth_dates: list[str]
    element_dates: dict[str, list[str]]
    charsets: list[str]


@dataclass
class Needles:
    """Original values of a study, as found (folding happens when they are compiled).

    ``words``: ids, addresses, phone numbers, whole values; ``dates``: YYYYMMDD of every date;
    ``uids``: non-standard UIDs; ``names``: whole PN values (``Yamada^Tarou=山田^太郎=...``);
    ``institutions``: institution names/addresses (redaction only); ``birth_dates``: YYYYMMDD
    of birth dates (still needles when full dates are retained on purpose);
    ``element_dates``: original DA/DT values by element path without item indices
    (``00400275.00400244``), so a shifted date is compared with its own element's originals;
    ``charsets``: Python codecs of the study's SpecificCharacterSet (for raw-byte checks).
    """

    words: set[str] = field(default_factory=set)
    dates: set[str] = field(default_factory=set)
    uids: set[str] = field(default_factory=set)
    names: set[str] = field(default_factory=set)
    institutions: set[str] = field(default_factory=set)
    birth_dates: set[str] = field(default_factory=set)
    element_dates: dict[str, set[str]] = field(default_factory=dict)
    charsets: set[str] = field(default_factory=set)

    def update(self, other: Needles) -> None:
        """Add another set of needles."""
        self.words |= other.words
        self.dates |= other.dates
        self.uids |= other.uids
        self.names |= other.names
        self.institutions |= other.institutions
        self.birth_dates |= other.birth_dates
        self.charsets |= other.charsets
        for path, values in other.element_dates.items():
            self.element_dates.setdefault(path, set()).update(values)

    def as_dict(self) -> NeedlesDict:
        """JSON-able form (sorted, so the file is deterministic)."""
        return {
            "words": sorted(self.words),
            "dates": sorted(self.dates),
            "uids": sorted(self.uids),
            "names": sorted(self.names),
            "institutions": sorted(self.institutions),
            "birth_dates": sorted(self.birth_dates),
            "element_dates": {k: sorted(v) for k, v in sorted(self.element_dates.items())},
            "charsets": sorted(self.charsets),
        }

    @classmethod
    def from_dict(cls, data: NeedlesDict) -> Needles:
        """Inverse of as_dict; a file written before names/dates were split (words, dates,
        uids only) still loads: its names are among its words."""
        return cls(
            words=set(data.get("words", ())),
            dates=set(data.get("dates", ())),
            uids=set(data.get("uids", ())),
            names=set(data.get("names", ())),
            institutions=set(data.get("institutions", ())),
            birth_dates=set(data.get("birth_dates", ())),
            element_dates={k: set(v) for k, v in data.get("element_dates", {}).items()},
            charsets=set(data.get("charsets", ())),
        )


def _values(value: object) -> list[str]:
    if isinstance(value, MultiValue | list | tuple):
        return [str(v).strip() for v in value if str(v).strip()]
    text = str(value).strip() if value is not None else ""
    return [text] if text else []


def _alnum_len(value: str) -> int:
    return sum(1 for c in value if c.isalnum())


def _add_word(needles: Needles, value: str) -> None:
    value = value.strip()
    if _alnum_len(value) >= MIN_LEN:
        needles.words.add(value)


def path_key(path: str) -> str:
    """An element path without item indices (``00400275[1].00400244`` -> ``00400275.00400244``):
    how original date values are pooled over a study's images."""
    return re.sub(r"\[\d+\]", "", path)


def _walk(
    ds: Dataset,
    prefix: str = "",
    vrs: frozenset[str | None] | None = None,
    tags: frozenset[int] = frozenset(),
) -> Iterator[tuple[str, DataElement]]:
    """(path, element) of every element, sequences entered, pixel data left out; elements
    whose explicit VR is not in ``vrs`` (default: those that can hold a needle) and whose
    tag is not in ``tags`` are skipped without being decoded."""
    if vrs is None:
        vrs, tags = _NEEDLE_VRS, _ID_TAGS | _INSTITUTION_TAGS | {_CHARSET_TAG}
    for tag, raw in ds._dict.items():
        vr = getattr(raw, "VR", None)
        if (vr and vr not in vrs and tag not in tags) or tag == 0x7FE00010:
            continue
        elem = ds[tag]
        path = f"{prefix}{int(tag):08X}"
        if elem.VR == "SQ":
            for i, item in enumerate(elem.value or []):
                yield from _walk(item, f"{path}[{i}].", vrs, tags)
            continue
        yield path, elem


# what original_dates decodes: dates, sequences, and UN (pydicom gives it its dictionary VR);
# the profile may then remove every other element undecoded
_DATE_WALK_VRS = frozenset({"DA", "DT", "SQ", "UN", None})


def original_dates(ds: Dataset) -> dict[str, str]:
    """Every DA/DT element's value by element path (``00080020``, ``00400275[0].00400244``),
    taken before de-identification: the leak check then asks of each date element only
    whether it still holds its own original value, so a shifted date that happens to equal
    another element's original date is not a leak."""
    return {
        path: "\\".join(_values(elem.value))
        for path, elem in _walk(ds, "", _DATE_WALK_VRS, frozenset())
        if elem.VR in DATE_VRS and _values(elem.value)
    }


def collect_needles(ds: Dataset, extra_words: Iterable[str] = ()) -> Needles:
    """Walk a header (file meta, sequences and private blocks included) and collect every
    identifying value: names, ids, dates, non-standard UIDs, institutions, character sets."""
    needles = Needles()
    for word in extra_words:
        _add_word(needles, word)
    datasets = [ds.file_meta] if getattr(ds, "file_meta", None) else []
    for dataset in [*datasets, ds]:
        for path, elem in _walk(dataset):
            if elem.tag == _CHARSET_TAG:
                with contextlib.suppress(LookupError):  # unknown name: pydicom fell back too
                    needles.charsets.update(convert_encodings(_values(elem.value) or [""]))
            elif elem.VR == "PN":
                needles.names.update(_values(elem.value))
            elif elem.VR in DATE_VRS:
                for v in _values(elem.value):
                    needles.element_dates.setdefault(path_key(path), set()).add(v)
                    if len(v) >= 8 and v[:8].isdigit():
                        needles.dates.add(v[:8])
                        if elem.tag == BIRTH_DATE_TAG:
                            needles.birth_dates.add(v[:8])
            elif elem.VR == "UI" and elem.tag != 0x00020012:  # ImplementationClassUID: software
                for v in _values(elem.value):
                    if not v.startswith(STANDARD_UID_ROOT):
                        needles.uids.add(v)
            elif elem.tag in _INSTITUTION_TAGS:
                needles.institutions.update(
                    v for v in _values(elem.value) if _alnum_len(v) >= MIN_LEN
                )
            elif elem.tag in _ID_TAGS:
                for v in _values(elem.value):
                    _add_word(needles, v)
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


# ---- the matcher -----------------------------------------------------------------------------

# scripts written without spaces between words: a name part is found inside any text
_CJK = (
    "\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # kana, CJK
    "\u1100-\u11ff\u3130-\u318f\uac00-\ud7af"  # hangul
)
_HAN_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff]")
_CJK_RE = re.compile(rf"[{_CJK}\U00020000-\U0002ffff]")
# what continues a word around a needle: for Latin needles (folded to ASCII) an ASCII letter or
# digit, so "DOE様" still ends the name; for other spaced scripts any word character. (A class
# like [^\W<CJK ranges>] reads better but costs ~10 ms to compile at each of its uses.)
_LATIN_WORD = "[0-9a-z_]"
_ANY_WORD = r"\w"
_LATIN_ALNUM = "[0-9a-z]"  # around a value holding a digit: "_" separates (see _word_class)
_ANY_ALNUM = r"[^\W_]"
_SEP = r"[\W_]{0,3}"  # between the words of one value: "MRN-100234", "MRN 100234", "MRN100234"
# name titles and particles: not identifying on their own
_NOT_NAMES = {
    "mr", "mrs", "ms", "miss", "dr", "prof", "sir", "rev", "herr", "frau", "mme", "mlle",
    "jr", "sr", "ii", "iii", "iv", "md", "phd", "dds", "rn", "van", "von", "der", "den",
    "del", "della", "des", "dos", "das", "bin", "ibn", "binti", "the",
}  # fmt: skip

_MONTHS: dict[str, int] = {}
for _n, _names in enumerate(
    (
        "jan january januar janvier janv enero gennaio januari",
        "feb february februar fevrier fevr febrero febbraio februari",
        "mar march marz maerz mars marzo maart",
        "apr april avril avr abril aprile",
        "may mai mayo maggio mei",
        "jun june juni juin junio giugno",
        "jul july juli juillet juil julio luglio",
        "aug august aout agosto augustus",
        "sep sept september septembre septiembre settembre",
        "oct october oktober octobre okt octubre ottobre",
        "nov november novembre noviembre",
        "dec december dezember decembre dez diciembre dicembre",
    ),
    start=1,
):
    for _name in _names.split():
        _MONTHS[_name] = _n

_D = r"(?<!\d)"  # not inside a longer number
_ND = r"(?!\d)"
_ORD = r"(?:st|nd|rd|th)?"
_S = r"[-/. ]*"  # separators around a month name: 24-MAY-02, 24 May 2002, 24MAY2002


def _mon(group: str) -> str:
    """A month name or abbreviation (checked against _MONTHS when a match is read)."""
    return rf"(?P<{group}>[a-z]{{3,9}})\.?"


# every common written form of a date (on folded text); ``_date_candidates`` reads the groups.
# Numeric separators are the same on both sides ((?P=..) back-references).
_DATE_FORMS = (
    # YYYYMMDD (also the start of a DT), YYYY-MM-DD, YYYY/MM/DD, YYYY.MM.DD
    rf"{_D}(?P<a_y>\d{{4}})(?P<a_s>[-/. ]?)(?P<a_m>\d{{1,2}})(?P=a_s)(?P<a_d>\d{{1,2}})",
    # DD.MM.YYYY, DD/MM/YYYY, MM/DD/YYYY, DD-MM-YY ...
    rf"{_D}(?P<b_1>\d{{1,2}})(?P<b_s>[-/.])(?P<b_2>\d{{1,2}})(?P=b_s)(?P<b_y>\d{{4}}|\d{{2}}){_ND}",
    # 24-MAY-02, 24 May 2002, 24th May, 2002
    rf"{_D}(?P<c_d>\d{{1,2}}){_ORD}{_S}{_mon('c_m')}[-/., ]*(?P<c_y>\d{{4}}|\d{{2}}){_ND}",
    # May 24, 2002
    rf"(?<![a-z]){_mon('d_m')}{_S}(?P<d_d>\d{{1,2}}){_ORD},?{_S}(?P<d_y>\d{{4}}){_ND}",
    # 2002-May-24
    rf"{_D}(?P<e_y>\d{{4}}){_S}{_mon('e_m')}{_S}(?P<e_d>\d{{1,2}}){_ND}",
    # 2002年5月24日, 2002년 5월 24일
    r"(?P<f_y>\d{4})\s*[年년]\s*(?P<f_m>\d{1,2})\s*[月월]\s*(?P<f_d>\d{1,2})\s*[日일]?",
)
_DATE_RE = re.compile("|".join(_DATE_FORMS))


DateForms = Literal["any", "compact", "none"]


# a run of dotted numbers (a UID, or something holding one), not inside a word
_UID_RUN = re.compile(r"(?<![0-9a-z_])\d+(?:\.\d+)+(?![0-9a-z_])")


def _ymd(year: str, month: int | str, day: str) -> list[str]:
    m, d = int(month), int(day)
    if not (1 <= m <= 12 and 1 <= d <= 31):
        return []
    years = [year] if len(year) == 4 else ["19" + year, "20" + year]
    return [f"{y}{m:02d}{d:02d}" for y in years]


def _date_candidates(match: re.Match[str]) -> list[str]:
    """The YYYYMMDD dates a date-looking match may mean (both DD/MM and MM/DD orders)."""
    g = match.groupdict()
    if g["a_y"] is not None:
        # eight digits without separators may start a DT or longer number: only YYYYMMDD
        if not g["a_s"] and (len(g["a_m"]) != 2 or len(g["a_d"]) != 2):
            return []
        return _ymd(g["a_y"], g["a_m"], g["a_d"])
    if g["b_y"] is not None:
        return _ymd(g["b_y"], g["b_2"], g["b_1"]) + _ymd(g["b_y"], g["b_1"], g["b_2"])
    for p in "cde":
        if g[f"{p}_y"] is not None:
            month = _MONTHS.get(g[f"{p}_m"])
            return _ymd(g[f"{p}_y"], month, g[f"{p}_d"]) if month else []
    return _ymd(g["f_y"], g["f_m"], g["f_d"])


def _bounded(first: str, rest: str, word: str) -> str:
    """``first`` + ``rest`` not inside a longer word. The start check is written after the
    first character, so every alternative of the compiled pattern starts with a literal and
    the regex engine skips ahead to candidate characters instead of trying every position
    (a header scan is 3-5x faster than with a leading look-behind)."""
    return rf"{re.escape(first)}(?<!{word}.){rest}(?!{word})"


def _word_class(folded: str) -> str:
    """What may not continue a value around it. An underscore continues a word (a name part
    ``RIS`` is not in ``SIEMENS_RIS``) but not an id: a value holding a digit glued to other
    text by ``_`` (``ACC10001_1.dcm``, ``SERIES_123456``) is still that id."""
    latin = all(c < "\u0250" for c in folded)
    if any(c.isdigit() for c in folded):
        return _LATIN_ALNUM if latin else _ANY_ALNUM
    return _LATIN_WORD if latin else _ANY_WORD


def _latin(tokens: list[str]) -> str:
    """A value of a spaced script: its words in order, any separators (or none) between
    them, bounded by non-word characters."""
    body = _SEP.join(re.escape(t) for t in tokens)
    first = re.escape(tokens[0][0])
    return _bounded(tokens[0][0], body[len(first) :], _word_class("".join(tokens)))


def _value_pattern(folded: str) -> str | None:
    """Pattern of a whole value (id, address, institution, name component)."""
    tokens = re.findall(r"[^\W_]+", folded)
    if not tokens:
        return None
    if _CJK_RE.search(folded):
        return _SEP.join(re.escape(t) for t in tokens)
    compact = "".join(tokens)
    if len(tokens) == 1 and len(compact) >= 6 and any(c.isdigit() for c in compact):
        # an id written with separators the original lacks: 12345678 as 12-345-678
        rest = "".join(f"[ /-]?{re.escape(c)}" for c in compact[1:])
        return _bounded(compact[0], rest, _word_class(compact))
    return _latin(tokens)


@dataclass(frozen=True)
class NameForms:
    """Compiled pieces of the study's person names: ``strong`` parts are needles on their
    own, ``weak`` ones (initials, single kana/hangul syllables) only next to a strong one."""

    strong: frozenset[str]
    weak: frozenset[str]


def _part_strength(folded: str) -> str | None:
    if not folded or folded.strip(".") in _NOT_NAMES:
        return None
    if _HAN_RE.search(folded):
        return "strong"  # one kanji/hanzi/hanja is a whole surname (洪, 王)
    if _CJK_RE.search(folded):
        return "strong" if len(folded) >= 2 else "weak"
    n = _alnum_len(folded)
    if n >= MIN_LEN:
        return "strong"
    return "weak" if n >= 1 else None


# how umlauts and some Nordic letters are typed without them (MÜLLER as MUELLER); folding
# gives the other spelling (MULLER)
_TRANSLITERATIONS = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ø": "oe", "å": "aa"})


def _with_transliterations(names: Iterable[str]) -> list[str]:
    out = []
    for name in names:
        out.append(name)
        lowered = unicodedata.normalize("NFC", name).casefold()
        spelled = lowered.translate(_TRANSLITERATIONS)
        if spelled != lowered:
            out.append(spelled)
    return out


def name_forms(names: Iterable[str]) -> NameForms:
    """Patterns for every part of every component group of each PN value: the parts, each
    component whole, the family and given names together in both orders, the whole group."""
    strong: set[str] = set()
    weak: set[str] = set()

    def add(text: str) -> None:
        folded = fold(text).strip()
        kind = _part_strength(folded)
        pattern = _value_pattern(folded) if kind else None
        if pattern:
            (strong if kind == "strong" else weak).add(pattern)
            if kind == "strong" and not _CJK_RE.search(folded):
                weak.add(_latin([folded[0]]))  # its initial: "J. Doe"

    for name in _with_transliterations(names):
        for group in name.split("="):
            components = [c.strip() for c in group.split("^")]
            for i, component in enumerate(components):
                if i >= 3 and fold(component).strip(" .") in _NOT_NAMES:
                    continue
                for word in re.split(r"[\s\-]+", component):
                    add(word)
                if re.search(r"[\s\-]", component):
                    add(component)
            family, given = [*components, "", ""][:2]
            if family and given:
                for text in (f"{family} {given}", f"{given} {family}"):
                    folded = fold(text)
                    if _alnum_len(folded) >= MIN_LEN or _CJK_RE.search(folded):
                        strong.add(_value_pattern(folded) or "")
            whole = " ".join(c for c in components if c)
            if whole and _alnum_len(fold(whole)) >= MIN_LEN:
                strong.add(_value_pattern(fold(whole)) or "")
    strong.discard("")
    return NameForms(frozenset(strong), frozenset(weak - strong))


def _alternation(patterns: Iterable[str]) -> str:
    return "|".join(sorted(patterns, key=lambda p: (-len(p), p)))


class IdentifierMatcher:
    """The study's identifying values, compiled once (per batch) for fast searching.

    ``dates`` False: dates are retained on purpose (Retain Longitudinal Temporal Information
    with Full Dates); only birth dates stay needles. ``institutions`` True: institution
    names and addresses are needles too (Clean Descriptors), False for the leak check.
    """

    def __init__(self, needles: Needles, *, dates: bool = True, institutions: bool = False):
        forms = name_forms(needles.names)
        values = {p for w in needles.words if (p := _value_pattern(fold(w)))}
        if institutions:
            values |= {p for w in needles.institutions if (p := _value_pattern(fold(w)))}
        # UIDs (one per image: thousands in a big study) are looked up in a set, not
        # compiled into the pattern: an alternation of 1,000 UIDs made a header scan 10x slower
        self.uids: frozenset[str] = frozenset(u.strip().lower() for u in needles.uids if u.strip())
        self._uid_lengths = sorted({u.count(".") + 1 for u in self.uids})
        self._uid_heads = frozenset(u.split(".", 1)[0] for u in self.uids)
        plain = values
        self.dates: frozenset[str] = frozenset(needles.dates if dates else needles.birth_dates)
        self._compact_dates = (
            re.compile(rf"(?<!\d)(?:{'|'.join(sorted(self.dates))})") if self.dates else None
        )
        strong = _alternation(forms.strong)
        sequence_strong = f"(?:{strong})" if strong else None
        any_part = f"(?:{_alternation(forms.strong | forms.weak)})" if strong else None
        weak = f"(?:{_alternation(forms.weak)})" if forms.weak else None
        sep = r"[\s,.^=/·・、-]{0,3}"
        # leak check: any strong name form, id, UID
        self._any = _compile([*plain, *forms.strong])
        # coded strings (CS): defined terms such as PERFUSION are not names; a name there
        # counts only as two parts together (DOE JANE), ids and UIDs as anywhere
        pair = f"{sequence_strong}{sep}(?:{weak}{sep})*{sequence_strong}" if strong else None
        self._coded = _compile([*plain, *([pair] if pair else [])])
        # redaction: a whole run of name parts and initials ("Jane Q. Doe", "J. Doe")
        run = None
        if strong:
            lead = f"(?:{weak}{sep})*" if weak else ""
            run = f"{lead}{sequence_strong}(?:{sep}{any_part})*"
        self._redact = _compile([*plain, *([run] if run else [])])
        # the same, by kind, for typed placeholders (compiled on first use)
        self._by_kind_sources = {
            "id": sorted(p for w in needles.words if (p := _value_pattern(fold(w)))),
            "address": sorted(p for w in needles.institutions if (p := _value_pattern(fold(w))))
            if institutions
            else [],
            "name": [run] if run else [],
        }
        self._by_kind: dict[str, re.Pattern[str] | None] | None = None
        self.codecs: tuple[str, ...] = tuple(sorted({_codec(c) for c in needles.charsets} - {""}))

    @property
    def empty(self) -> bool:
        """Nothing to look for."""
        return self._any is None and not self.dates and not self.uids

    def _uid_spans(self, folded: str, first: bool = False) -> list[tuple[int, int]]:
        """Spans of original UIDs in dotted-number runs: the whole run, or any whole-component
        part of it (``<uid>.1``, ``9.<uid>``), as the check always counted them."""
        spans: list[tuple[int, int]] = []
        if not self.uids:
            return spans
        shortest = self._uid_lengths[0]
        for match in _UID_RUN.finditer(folded):
            parts = match.group().split(".")
            if len(parts) < shortest:
                continue  # a decimal number (DS), a version
            starts = [match.start()]
            for part in parts[:-1]:
                starts.append(starts[-1] + len(part) + 1)
            for i in range(len(parts)):
                if parts[i] not in self._uid_heads:
                    continue
                for n in self._uid_lengths:
                    if i + n <= len(parts) and ".".join(parts[i : i + n]) in self.uids:
                        spans.append((starts[i], starts[i] + len(".".join(parts[i : i + n]))))
                        if first:
                            return spans
        return spans

    def _date_hit(self, folded: str) -> bool:
        return any(
            not self.dates.isdisjoint(_date_candidates(m)) for m in _DATE_RE.finditer(folded)
        )

    def search_folded(self, folded: str, *, coded: bool = False, dates: DateForms = "any") -> bool:
        """True when already-folded text holds a needle. ``coded``: the text is a CS value
        (single name parts there are defined terms); ``dates``: "any" written form of an
        original date counts (free text), "compact" only YYYYMMDD (numbers, UIDs: what the
        check always did there), "none" none (raw bytes, where a date element's shifted
        value cannot be told from another element's original)."""
        pattern = self._coded if coded else self._any
        if pattern is not None and pattern.search(folded):
            return True
        if self.uids and "." in folded and self._uid_spans(folded, first=True):
            return True
        if not self.dates or dates == "none":
            return False
        if dates == "compact":
            return self._compact_dates is not None and bool(self._compact_dates.search(folded))
        return self._date_hit(folded)

    def hits(self, text: str, *, coded: bool = False, dates: DateForms = "any") -> bool:
        """True when ``text`` holds an original identifying value in any written form."""
        return bool(text) and self.search_folded(fold(text), coded=coded, dates=dates)

    def lone_parts(self, folded: str) -> set[str]:
        """What the free-text rule finds in already-folded text: the name parts a CS value
        holds as defined terms (PERFUSION) that the coded rule lets pass."""
        return {m.group(0) for m in self._any.finditer(folded)} if self._any is not None else set()

    def _raw_hit(self, folded: str, exempt: frozenset[str]) -> bool:
        if not exempt:
            return self.search_folded(folded, dates="none")
        if self._any is not None and any(
            m.group(0) not in exempt for m in self._any.finditer(folded)
        ):
            return True
        return bool(self.uids and "." in folded and self._uid_spans(folded, first=True))

    def hits_bytes(self, data: bytes, exempt: frozenset[str] = frozenset()) -> bool:
        """True when raw bytes (a file header) hold a needle encoded in UTF-8, Latin-1 or one
        of the study's character sets (ISO 2022 escape sequences understood). Dates are not
        searched here: raw bytes cannot tell a shifted date from another element's original
        (``LeakScanner.scan_dataset`` checks every date element against its own).

        ``exempt``: folded name parts that the file's own CS values hold as defined terms
        (``LeakScanner.defined_terms``, a patient "Perfusion^..." and ImageType PERFUSION):
        raw bytes cannot tell a code string from free text, and each element was checked
        with the rule of its VR before the file was written."""
        if not data:
            return False
        # ASCII letters with every other byte a separator: a name right after a length byte
        # that reads as a Latin-1 letter (a 200-byte comment: 0xC8 "È") is still bounded
        if self._raw_hit(data.translate(_ASCII_BYTES).decode("ascii"), exempt):
            return True
        if data.isascii():
            return False
        if self._raw_hit(_fold_latin1(data), exempt):
            return True
        for codec in ("utf-8", *self.codecs):
            try:
                text = data.decode(codec, errors="replace")
            except LookupError:
                continue
            if _BEYOND_LATIN1.search(text) and self._raw_hit(fold(text), exempt):
                return True
        return False

    def spans(self, text: str) -> list[tuple[int, int]]:
        """(start, end) in ``text`` of every needle, names as whole runs, merged."""
        folded, offsets = fold_with_offsets(text)
        found: list[tuple[int, int]] = []
        if self._redact is not None:
            found += [m.span() for m in self._redact.finditer(folded) if m.end() > m.start()]
        found += self._uid_spans(folded)
        if self.dates:
            found += [
                m.span()
                for m in _DATE_RE.finditer(folded)
                if not self.dates.isdisjoint(_date_candidates(m))
            ]
        spans: list[tuple[int, int]] = []
        for a, b in sorted(found):
            start, end = offsets[a], offsets[b - 1] + 1
            while end < len(text) and not fold_char(text[end]):
                end += 1  # a combining accent after the last letter goes with it
            if spans and start <= spans[-1][1]:
                spans[-1] = (spans[-1][0], max(end, spans[-1][1]))
            else:
                spans.append((start, end))
        return spans

    def typed_spans(self, text: str) -> list[tuple[int, int, str]]:
        """(start, end, kind) in ``text`` of every needle: "name", "id" (ids, addresses,
        phone numbers, UIDs), "address" (institutions, when enabled), "date"; unmerged."""
        if self._by_kind is None:
            self._by_kind = {k: _compile(v) for k, v in self._by_kind_sources.items()}
        folded, offsets = fold_with_offsets(text)
        found: list[tuple[int, int, str]] = []
        for kind, pattern in self._by_kind.items():
            if pattern is not None:
                found += [
                    (*m.span(), kind) for m in pattern.finditer(folded) if m.end() > m.start()
                ]
        found += [(a, b, "id") for a, b in self._uid_spans(folded)]
        if self.dates:
            found += [
                (*m.span(), "date")
                for m in _DATE_RE.finditer(folded)
                if not self.dates.isdisjoint(_date_candidates(m))
            ]
        out = []
        for a, b, kind in found:
            start, end = offsets[a], offsets[b - 1] + 1
            while end < len(text) and not fold_char(text[end]):
                end += 1
            out.append((start, end, kind))
        return out

    def redact(self, text: str, marker: str = "[removed]") -> str:
        """``text`` with every needle (names in any form, ids, UIDs, dates in common formats,
        institutions when enabled) replaced by ``marker``; the rest is kept as it was."""
        if not text:
            return text
        out, last = [], 0
        for start, end in self.spans(text):
            out += [text[last:start], marker]
            last = end
        out.append(text[last:])
        return "".join(out)


def _byte_tables() -> tuple[bytes, bytes, dict[bytes, bytes]]:
    """``bytes.translate`` tables for raw headers: ASCII letters lowered and every other byte
    a space; Latin-1 folded as ``fold`` does (ß, æ, þ... that fold to two letters replaced
    first)."""
    ascii_table = bytearray(b" " * 256)
    latin_table = bytearray(range(256))
    wide: dict[bytes, bytes] = {}
    for b in range(128):
        ascii_table[b] = latin_table[b] = ord(chr(b).lower())
    for b in range(128, 256):
        folded = fold_char(chr(b))
        if len(folded) == 1 and ord(folded) < 256:
            latin_table[b] = ord(folded)
        else:
            wide[bytes([b])] = folded.encode("latin-1", errors="replace") or b" "
    return bytes(ascii_table), bytes(latin_table), wide


_ASCII_BYTES, _LATIN1_BYTES, _LATIN1_WIDE = _byte_tables()
# text that a Latin-1 reading of the same bytes does not already show
_BEYOND_LATIN1 = re.compile("[\u0100-\ufffc\ufffe-\U0010ffff]|[\u0080-\u00ff]")


def _fold_latin1(data: bytes) -> str:
    """``fold(data.decode("latin-1"))`` at the speed of ``bytes.translate`` (µ and the
    fractions, which fold beyond Latin-1, read as ``?``: no needle holds them)."""
    for byte, folded in _LATIN1_WIDE.items():
        if byte in data:
            data = data.replace(byte, folded)
    return data.translate(_LATIN1_BYTES).decode("latin-1")


def _codec(name: str) -> str:
    """A character set's Python codec, unless unknown or already tried (Latin-1, UTF-8)."""
    try:
        codec = codecs.lookup(name).name
    except LookupError:
        return ""
    return "" if codec in ("iso8859-1", "utf-8", "ascii") else codec


def _compile(patterns: Iterable[str]) -> re.Pattern[str] | None:
    patterns = [p for p in patterns if p]
    return re.compile(_alternation(patterns)) if patterns else None


# ---- OCR-tolerant matching (burned-in text) --------------------------------------------------

_OCR_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
# characters OCR confuses in printed text; compared after mapping to the digit
_CONFUSABLE = str.maketrans({"O": "0", "D": "0", "Q": "0", "I": "1", "L": "1", "|": "1",
                             "Z": "2", "S": "5", "B": "8", "G": "6"})  # fmt: skip


def _compact(text: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", text.upper())


def date_forms(yyyymmdd: str) -> set[str]:
    """A date's common printed forms, without separators (24-MAY-02 -> 24MAY02)."""
    if not (len(yyyymmdd) >= 8 and yyyymmdd[:8].isdigit()):
        return set()
    y, m, d = yyyymmdd[:4], yyyymmdd[4:6], yyyymmdd[6:8]
    if not 1 <= int(m) <= 12:
        return set()
    yy, mon, mi, di = y[2:], _OCR_MONTHS[int(m) - 1], str(int(m)), str(int(d))
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
    """The OCR-tolerant mode: a fuzzy test for identifying words and dates in OCR text.

    Matching ignores case, spaces and punctuation, maps letters OCR mistakes for digits, finds
    dates (YYYYMMDD) in any common printed format and words of 6 or more characters with one
    OCR error. ``ocr_matcher`` builds it from a study's needles."""
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


def ocr_words(needles: Needles) -> set[str]:
    """What of a study's needles may be burned into its pixels, as OCR would read it: every
    part of every person name, ids, institutions and station names (whole, and their words of
    4 or more letters: OCR may read one line of a long address)."""
    words: set[str] = set()
    for name in needles.names:
        words.update(p for p in re.split(r"[\^=\s]+", name) if p)
    for value in (*needles.words, *needles.institutions):
        words.add(value)
        words.update(p for p in value.split() if len(p) >= 4)
    return words


def ocr_matcher(needles: Needles, *, dates: bool = True) -> Callable[[str], bool]:
    """The OCR-tolerant mode of the study's one identifier source (``collect_needles``), for
    the pixel stage's residual check. ``dates`` False: dates are retained on purpose; only
    birth dates stay needles."""
    return identifier_matcher(ocr_words(needles), needles.dates if dates else needles.birth_dates)
