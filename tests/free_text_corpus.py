"""The labelled free-text corpus (tests/data/free_text_phi.txt) and how it is scored.

A PHI span counts as found when every identifying word of it (titles such as "Dr." and
post-nominals such as "MD" are not identifying) lies inside what the detector found, of any
kind: what matters is that it does not leave."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sendit_ops.dicom.free_text.names import NOT_IDENTIFYING
from sendit_ops.dicom.identifiers import fold

CORPUS = Path(__file__).parent / "data" / "free_text_phi.txt"
_MARK = re.compile(r"\[\[(\w+):(.*?)\]\]")
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Example:
    language: str
    text: str
    spans: tuple[tuple[int, int, str], ...]


def load_corpus(path: Path = CORPUS) -> list[Example]:
    """The corpus's strings with their PHI spans (start, end, kind)."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        language, marked = line.split("\t", 1)
        parts: list[str] = []
        spans = []
        last = pos = 0
        for m in _MARK.finditer(marked):
            parts.append(marked[last : m.start()])
            pos += m.start() - last
            spans.append((pos, pos + len(m.group(2)), m.group(1)))
            parts.append(m.group(2))
            pos += len(m.group(2))
            last = m.end()
        parts.append(marked[last:])
        out.append(Example(language, "".join(parts), tuple(spans)))
    return out


def span_found(text: str, span: tuple[int, int, str], found: list[tuple[int, int]]) -> bool:
    """Every identifying word of the span inside a finding."""
    start, end, _ = span
    for m in _WORD.finditer(text, start, end):
        if fold(m.group(0)) in NOT_IDENTIFYING:
            continue
        if not all(any(a <= i < b for a, b in found) for i in range(m.start(), m.end())):
            return False
    return True


@dataclass
class Score:
    total: Counter = field(default_factory=Counter)
    found: Counter = field(default_factory=Counter)
    missed: list[str] = field(default_factory=list)
    # characters outside every PHI span that the detector took (over-redaction)
    extra_chars: int = 0
    clean_chars: int = 0
    extra: list[str] = field(default_factory=list)
    # findings per kind the detector reported, and those that overlap a labelled PHI span
    reported: Counter = field(default_factory=Counter)
    on_phi: Counter = field(default_factory=Counter)

    def recall(self, kind: str) -> float:
        return self.found[kind] / self.total[kind] if self.total[kind] else 1.0

    def precision(self, kind: str) -> float:
        """Share of the detector's findings of ``kind`` that lie on labelled PHI."""
        return self.on_phi[kind] / self.reported[kind] if self.reported[kind] else 1.0


def score(detect, examples: list[Example]) -> Score:
    """Recall per kind of ``detect(text) -> [(start, end) or (start, end, kind), ...]`` on
    the corpus, how much text outside the PHI spans it takes, and (with kinds) precision."""
    s = Score()
    for ex in examples:
        reported = detect(ex.text)
        found = [(f[0], f[1]) for f in reported]
        for f in reported:
            if len(f) > 2:
                s.reported[f[2]] += 1
                if any(f[0] < b and a < f[1] for a, b, _ in ex.spans):
                    s.on_phi[f[2]] += 1
        for span in ex.spans:
            s.total[span[2]] += 1
            if span_found(ex.text, span, found):
                s.found[span[2]] += 1
            else:
                s.missed.append(f"{span[2]}: {ex.text[span[0] : span[1]]!r} in {ex.text!r}")
        gold = [(a, b) for a, b, _ in ex.spans]
        for i, c in enumerate(ex.text):
            if not c.isalnum() or any(a <= i < b for a, b in gold):
                continue
            s.clean_chars += 1
            if any(a <= i < b for a, b in found):
                s.extra_chars += 1
        wrong = [ex.text[a:b] for a, b in found if not any(x < b and a < y for x, y in gold)]
        if wrong:
            s.extra.append(f"{wrong} in {ex.text!r}")
    return s


# ---- the PHI-free descriptions of the shipped test data (precision) ---------------------------


def shipped_descriptions() -> list[tuple[str, str]]:
    """(keyword, value) of every text value under Clean Descriptors (the option's C rows,
    LO/SH/ST/LT/UT/UC) in pydicom's test files, pydicom-data, deid-data and the sample
    studies, less those that hold their own study's identifiers (those are not PHI-free:
    the header cleaner removes them before the detector runs)."""
    import glob
    import importlib.util
    import os
    import tempfile
    import warnings

    import pydicom
    import pydicom.data

    from sendit_ops.dicom.annex_e.profile import CLEAN, compile_profile
    from sendit_ops.dicom.identifiers import IdentifierMatcher, collect_needles
    from sendit_ops.sample_data import make_demo_input

    profile = compile_profile(("clean_descriptors",))
    clean_tags = {t for t, a in profile.rules.items() if a == CLEAN}
    paths = list(pydicom.data.get_testdata_files("*"))
    for module in ("pydicom_data", "deid_data"):
        spec = importlib.util.find_spec(module)
        for location in (spec.submodule_search_locations or []) if spec else []:
            paths += glob.glob(f"{location}/**/*", recursive=True)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # odd files of the test data sets: pydicom complains
        make_demo_input(Path(tmp), size=16)
        paths += glob.glob(f"{tmp}/**/*.dcm", recursive=True)
        values: set[tuple[str, str]] = set()
        for path in sorted(set(paths)):
            if os.path.isdir(path):
                continue
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
                own = IdentifierMatcher(collect_needles(ds), institutions=True)
                for elem in ds.iterall():
                    if elem.tag not in clean_tags or elem.VR not in _TEXT_VRS or not elem.value:
                        continue
                    for value in elem.value if elem.VM > 1 else [elem.value]:
                        if str(value).strip() and not own.hits(str(value)):
                            values.add((elem.keyword, str(value)))
            except Exception:
                continue
    return sorted(values)


_TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC"})
