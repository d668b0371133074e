"""Hospitals and health systems named without a facility word: "Mass General Brigham",
"Kaiser Permanente", "Children's of Alabama", "Duke University Health System".

``patterns.addresses`` finds a place by its facility word (Hospital, Medical Center, Klinik);
many institutions are written without one. No gazetteer of institutions ships with sendit's
dependencies (philter-lite's lists are of people's names and ordinary words; Faker's of towns
and companies), so the evidence is the text's own:

- **a place cue** before the span: "from", "at", "to", "via" ("outside study from",
  "transferred to", "prior at"), optionally "the";
- **a run of capitalised words** after it (joined by "of", "the", "&", "and", "for", "de" or
  a hyphen: "University of Michigan Health", "NewYork-Presbyterian");
- **an institution word** in the run: General, Memorial, Health, Clinic, Medical, Regional,
  University, Saint/St., Children's, Presbyterian, Baptist, Methodist, Mercy...;
- **a proper word** in the run, which is not an institution word nor a department or
  clinical word ("Radiology", "Emergency", "Lymph"): "Brigham", "Tampa", "Northwestern".
  In text written all in capitals, where capitals say nothing, the proper word must be a
  word of the name lists (``lexicon``) or unknown to the ordinary-word list.

Without a cue only the unambiguous shapes count: a proper word that is not an ordinary word
before General, Memorial, Methodist, Presbyterian, Baptist, Permanente, Regional, Health,
Healthcare or Medicine, not followed by a lowercase word nor a department word ("Tampa
General", "Novant Health"; not "General anesthesia", "Post General Anesthesia", "Mental
Health", "Nuclear Medicine"), and "Children's of X". Vendors ("GE Healthcare", "Philips
Healthcare") are not institutions of the patient's care.

No gazetteer: an institution named by one word ("at Geisinger") or without any institution
word ("Sharp Grossmont") is not found; a list of institutions (CMS's Hospital General
Information, ~5,000 US names) would be a data file to add and keep, not a dependency.
"""

from __future__ import annotations

import re

from sendit_ops.dicom.free_text.lexicon import VENDORS, Lexicon, _split, lexicon
from sendit_ops.dicom.free_text.model import Finding, Kind
from sendit_ops.dicom.free_text.names import TITLES
from sendit_ops.dicom.identifiers import fold

# words that make a capitalised run an institution (folded)
INSTITUTION_WORDS = _split(
    """
general memorial health healthcare clinic clinics medical medicine regional university
universitario universitaria universitaire universitätsklinikum saint st ste san santa mount
mt children's childrens children presbyterian baptist methodist mercy adventist lutheran
episcopal community county veterans va sinai permanente infirmary hospitals hospital
physicians imaging diagnostics radiology associates partners system systems network care
center centre institute cancer heart women's womens hopkins deaconess charity providence
trinity shriners kindred rehabilitation rehab specialty surgical surgery orthopaedic
orthopedic samaritan nursing living hospice physician radiologic radiological
teleradiology
"""
)
# department, service and clinical words: a run of only these and institution words names
# no place ("from Emergency Department", "at General Anesthesia", "Memorial Day", "ENT
# Clinic"); ``patterns`` asks the same of a facility ("Outside Hospital")
NOT_A_PLACE = _split(
    """
outside osh other same another prior previous external referring local emergency department
dept radiology icu ed er or pacu ward floor unit service services team teams home day days
lymph node nodes anesthesia anaesthesia effect practice practitioner medicine surgery
oncology cardiology neurology internal family public mental primary urgent acute critical
intensive care the a an of and for our your their this that ct mri mr us pet xr cr dx nm
follow up protocol study studies exam report images film films scan scans council society
association college board committee guideline guidelines criteria classification
mdt multidisciplinary tumor tumour ir gi ent ob gyn obgyn nicu picu ccu sicu micu cvicu im fm
id pt ot msk cv vir mfm peds pediatric paediatric adult breast neuro body chest spine trauma
"""
)
_CONNECTORS = frozenset({"of", "the", "and", "&", "for", "de"})
_CUE = re.compile(
    r"(?<![\w])(?:from|at|to|via|@)\s+(?:the\s+)?(?=[A-ZÀ-Þ])",
    re.IGNORECASE,
)
_WORD = re.compile(r"[A-ZÀ-Þ][\w'’]*(?:-[A-ZÀ-Þa-z][\w'’]*)*\.?|&|(?:of|the|and|for|de)\b")
_ANCHOR = re.compile(
    r"(?<![\w'’.-])(?P<prev>[A-ZÀ-Þ][\w'’]*)\s(?P<anchor>General|Memorial|Methodist|"
    r"Presbyterian|Baptist|Permanente|Regional|Health|Healthcare|Medicine)\b(?:\s[A-Z][\w'’]*)*"
)
_CHILDRENS_OF = re.compile(r"(?<!\w)Children['’]s\s+(?:Hospital\s+)?of\s+(?:the\s+)?[A-Z][\w'’.-]*")


def _key(word: str) -> str:
    """A word folded, without a trailing dot or possessive ("Men's" is "men")."""
    return re.sub(r"['’]s$", "", fold(word.rstrip(".")))


def _parts(word: str) -> list[str]:
    return [_key(p) for p in re.split(r"-", word) if p]


class _Institutions:
    """The institutions of one text (its capitals decide how much capitals say)."""

    def __init__(self, text: str, lex: Lexicon):
        self.text = text
        self.lex = lex
        letters = [c for c in text if c.isalpha() and (c.isupper() or c.islower())]
        self.caps_text = len(letters) >= 3 and not any(c.islower() for c in letters)

    def run_at(self, pos: int) -> list[re.Match[str]]:
        """The capitalised words (and connectors between them) from ``pos``."""
        words: list[re.Match[str]] = []
        while len(words) < 8:
            m = _WORD.match(self.text, pos)
            if m is None or (not words and m.group(0).lower() in _CONNECTORS):
                break
            if _key(m.group(0)) in TITLES and _key(m.group(0)) not in INSTITUTION_WORDS:
                break  # "from Dr. Li at ...": a person, not a place
            words.append(m)
            if self.text[m.end() : m.end() + 1] != " ":
                break
            pos = m.end() + 1
        while words and words[-1].group(0).lower() in _CONNECTORS:
            words.pop()
        return words

    def proper(self, word: str) -> bool:
        """A word that names this place, not what kind of place it is."""
        parts = _parts(word)
        if not parts or all(p in INSTITUTION_WORDS or p in NOT_A_PLACE for p in parts):
            return False
        if any(p in VENDORS or p == "ge" for p in parts):
            return False
        if not self.caps_text and word.isupper() and len(word) > 1:
            return True  # an acronym in mixed-case text: "UCLA Health", "OHSU"
        if self.caps_text:
            return any(
                self.lex.is_name(p) or p not in self.lex.common
                for p in parts
                if p not in INSTITUTION_WORDS and p not in NOT_A_PLACE
            )
        return True

    def institution(self, words: list[str]) -> bool:
        """Two or more words, one of them an institution word and one a proper word."""
        content = [w for w in words if w.lower() not in _CONNECTORS]
        if sum(len(_parts(w)) for w in content) < 2:  # "NewYork-Presbyterian" counts two
            return False
        has_word = any(p in INSTITUTION_WORDS for w in content for p in _parts(w))
        return has_word and any(self.proper(w) for w in content)

    def cued(self) -> list[Finding]:
        """Institutions after "from", "at", "to", "via": the longest run of capitalised words
        that holds an institution word and a proper word, less trailing department words."""
        out = []
        for cue in _CUE.finditer(self.text):
            words = self.run_at(cue.end())
            # the longest prefix that is an institution (a run may continue into a sentence)
            for n in range(len(words), 0, -1):
                if self.institution([w.group(0) for w in words[:n]]):
                    while (
                        n > 1
                        and _key(words[n - 1].group(0)) in NOT_A_PLACE
                        and _key(words[n - 1].group(0)) not in INSTITUTION_WORDS
                    ):
                        n -= 1  # "SAINT LUKE ED": the department is not the place's name
                    end = words[n - 1].end()
                    last = _key(words[n - 1].group(0))
                    if self.text[end - 1] == "." and last not in ("st", "mt", "ste"):
                        end -= 1  # the sentence's full stop, not an abbreviation's
                    out.append(Finding(words[0].start(), end, Kind.ADDRESS))
                    break
        return out

    def uncued(self) -> list[Finding]:
        """ "Tampa General", "Houston Methodist Hospital" (a proper word that is not an
        ordinary word, then an anchor, not followed by a lowercase word), "Children's of X"."""
        out: list[Finding] = [
            Finding(m.start(), m.end(), Kind.ADDRESS) for m in _CHILDRENS_OF.finditer(self.text)
        ]
        if self.caps_text:
            return out
        for m in _ANCHOR.finditer(self.text):
            prev = m.group("prev")
            key = _key(prev)
            if not self.proper(prev) or key in self.lex.common:
                continue  # "Post General Anesthesia", "Mass General" (cued only)
            tail = re.findall(r"[\w'’]+", self.text[m.end("anchor") : m.end()])
            if any(_key(w) in NOT_A_PLACE for w in tail):
                continue
            if re.match(r"\s+[a-z]", self.text[m.end() :]):
                continue  # "Xyz General anesthesia": an adjective, not a place
            out.append(Finding(m.start(), m.end(), Kind.ADDRESS))
        return out


def institutions(text: str) -> list[Finding]:
    """Institutions named without a facility word (see the module docstring)."""
    if not any(c.isupper() for c in text):
        return []
    finder = _Institutions(text, lexicon())
    return [*finder.cued(), *finder.uncued()]
