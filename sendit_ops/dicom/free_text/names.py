"""People's names in free text: anyone's, not only the study's own.

A name is recognised from two kinds of evidence (no statistical model, nothing downloaded):

- **context**: a title before it (Dr., Mrs, Herr, Mme, Sra., Dott., д-р, κ.), a
  post-nominal after it (MD, RN), a relation or role before it (wife, son, neighbour,
  referring, Ehefrau, fils, esposa, жена, 妻), a verb of authorship (dictated by, seen by,
  discussed with, besprochen mit), an honorific after it (様, さん, 先生), the DICOM person
  name form (``FAMILY^GIVEN``), initials with a surname (``J. Whitaker``, ``Иванов И.И.``);
- **the word itself**: a first or last name of the packaged lists (``lexicon.py``) that is not
  an ordinary word, next to another name-like word ("Quentin Zabriskie", "GONZALEZ MARIA"),
  or Russian and Greek surname and patronymic endings.

From its first word a name grows over the capitalised words, initials and particles
(van, de, O') that follow, over an inverted given name ("KRAMER, JULIA", "CHO, EUN-JI") and
over initials after a comma or without dots ("Smith, J. R.", "Smith JR"); it does not grow
over a full stop that ends a sentence. Titles are not part of the name: "Dr. [name]" keeps
what kind of person was named.

Once a name is found, the names **listed after it** are taken on weaker evidence, in any
case: "cc: Dr. Okafor, mary jones; Lee, A. and T. Berg" (separators ``,`` ``;`` ``&`` ``/``
and "and"; an item is a name of the lists, initials with a surname, a surname with initials,
or two unknown capitalised words; a first name that is also a word, "May", "Will", only at
the end of the list). A name followed by a disease, sign or device noun is an eponym
("Parkinson disease", "Jones fracture"), not a person of the record.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sendit_ops.dicom.free_text.lexicon import Lexicon, _split, lexicon
from sendit_ops.dicom.free_text.model import Finding, Kind
from sendit_ops.dicom.identifiers import fold

# titles and roles written before a name (folded, without their dot)
TITLES = _split(
    """
dr drs dra doctor doctora prof pr professor mr mrs ms miss mx mister madam sir dame nurse
sister pa np herr herrn frau fr hr oa ca pd mtra mta ärztin arzt oberarzt oberärztin
chefarzt m mme mlle mme me pr docteur sr sra srta don dona dña dott dottssa dottoressa
sig sigra signor signora κος κα κ δρ καθ γ-н г-н г-жа д-р д-ра д-ром доктор проф
"""
)
# titles that are written in capitals in mixed-case text (SR, MR, MS there are structured
# reporting, magnetic resonance, multiple sclerosis)
_CAPS_TITLES = frozenset({"dr", "np", "oa", "ca", "mtra", "mta", "pd"})  # not PA: a view
# written after a name
POST_NOMINALS = _split(
    """
md do phd rn np pa mbbs frcr frcp facr dmd dds lpn crna mph msc bsc med pa-c aprn dnp fnp
mbchb frcpc facc facp facs rdms rvt rdcs cnmt arrt rph pharmd lcsw rrt rt
"""
)
# words before a name: relations, roles, verbs of authorship and a few prepositions
_CUES = _split(
    """
wife husband son daughter mother father brother sister neighbour neighbor friend partner
guardian carer caregiver contact interpreter tech technologist technician radiologist
physician attending referring ordering requesting supervising consultant resident fellow
surgeon gp cc attn per by from to with for call ask spoke discussed seen saw told
informed message patient pt pts dictated transcribed typed signed reviewed read reported
verified approved performed consulted referred relative grandson granddaughter niece
nephew uncle aunt fiancé fiancée spouse widow boyfriend girlfriend colleague ehefrau
ehemann sohn tochter mutter vater bruder schwester nachbar nachbarin freund freundin
partnerin betreuer betreuerin hausarzt hausärztin zuweiser zuweiserin angehörige familie
durch von mit an bei befundet diktiert geschrieben geprüft überwiesen épouse époux mari
femme fils fille père mère frère sœur soeur voisin voisine ami amie tuteur tutrice
infirmière infirmier médecin par avec chez vu adressé adressée esposa esposo marido hijo
hija madre padre hermano hermana vecino vecina amigo amiga tutor enfermera enfermero
médico por con remitido remitida solicitado comentado moglie marito figlio figlia madre
padre fratello sorella vicino amico infermiera medico dal dalla inviato inviata σύζυγος
γείτονας γείτονα γιος κόρη μητέρα πατέρας από жена муж сын дочь мать отец брат сестра
сосед соседка врач консультация направлен направлена лечащий née né nee geb geborene
nata nato nacida nacido daughter-in-law son-in-law mother-in-law father-in-law
brother-in-law sister-in-law family parent parents stepson stepdaughter stepmother stepfather
"""
)
CUES = frozenset(fold(c) for c in _CUES)
# cues strong enough to take the next word even if it is an ordinary word or initials
_AUTHOR = _split(
    """
dictated transcribed typed signed reviewed reported verified befundet diktiert
geschrieben validé dicté revisado dictado firmado
"""
)
# words joining the items of a list of names
_AND = _split("and und et y e")
# abbreviations of radiology text that follow a surname without being initials
_ABBREVIATIONS = _split(
    """
ct mr mri us xr cr dx nm pet spect ed er icu or ap pa lat rt lt bil ok re cc fyi asap
llq luq rlq ruq ivc svc cbd lad rca lcx pe dvt ln mm cm ml iv im po prn wnl nad hx dx
"""
)
PARTICLES = _split(
    """
van von der den de del della di da dos das du des la le al el bin ibn ben ter ten mac st
"""
)
# weak cues: only a word of the name lists is taken after them
_PREPOSITIONS = _split(
    """
by from to with for per von mit an bei durch par avec chez por con dal dalla από
"""
)
# what is not identifying inside a name span (the corpus's scoring ignores these words)
NOT_IDENTIFYING = TITLES | POST_NOMINALS | {"le", "el", "la", "med", "familie"}

_TOKEN = re.compile(r"[^\W\d_]+(?:['’\-][^\W\d_]+)*\.?")
_CYRILLIC_GREEK = re.compile(r"[\u0370-\u03ff\u0400-\u04ff]")
_SLAVIC_GREEK_SURNAME = re.compile(
    r"(?:ович|евич|овна|евна|ична|инична|ов|ова|ев|ева|ёв|ёва|ин|ина|ын|ына|ский|ская|цкий|"
    r"цкая|ых|их|енко|ук|юк|ым|ым|ому|ой|ым|ыми|όπουλος|οπούλου|ίδης|ίδου|άκης|άκη|άδης|"
    r"ιάδης|άτος|ίου|όγλου|ιάννη|άννης|ίνης|ίδη|όπουλου)$"
)
_PN = re.compile(r"(?<![\w^])[^\W\d_][\w'’-]*\^[^\W\d_][\w'’-]*(?:\^[\w'’.-]*){0,3}")
_CJK_NAME = r"[\u4e00-\u9fff\u3400-\u4dbf\u3040-\u309f\u30a0-\u30ff\u3005]"  # 々 repeats
_HONORIFICS = "(?:様|さま|さん|先生|医師|氏|君|くん|ちゃん|殿|教授)"
_CJK_SUFFIX = re.compile(
    rf"(?P<n>{_CJK_NAME}{{1,6}}(?:[ \u3000]{_CJK_NAME}{{1,5}})?)\s?{_HONORIFICS}"
)
_CJK_PREFIX = re.compile(
    r"(?:妻|夫|息子|娘|長男|長女|次男|次女|義父|義母|孫|隣人|紹介医|担当医?|主治医|父|母|兄|弟|姉|妹|"
    r"家族|依頼医)"
    rf"[\s:：　]*(?P<n>{_CJK_NAME}{{1,5}})"
)
_CJK_STOP = set("のはがをにでとへもや、。")
_HONORIFIC = re.compile(rf"{_HONORIFICS}.*$")


@dataclass(frozen=True)
class _Tok:
    start: int
    end: int
    word: str  # without a trailing dot
    dot: bool
    folded: str

    @property
    def cap(self) -> bool:
        return self.word[:1].isupper()

    @property
    def upper(self) -> bool:
        return self.word.isupper()

    @property
    def initial(self) -> bool:
        return len(self.word) == 1 and self.word.isupper()


def _tokens(text: str) -> list[_Tok]:
    out = []
    for m in _TOKEN.finditer(text):
        raw = m.group(0)
        dot = raw.endswith(".")
        word = raw[:-1] if dot else raw
        out.append(_Tok(m.start(), m.start() + len(word), word, dot, fold(word)))
    return out


def _gap(text: str, a: _Tok, b: _Tok, allowed: str = " \t.,:;()'\"-") -> bool:
    """The characters between two tokens are few separators (same phrase)."""
    between = text[a.end : b.start]
    return len(between) <= 3 and all(c in allowed for c in between)


class _Names:
    def __init__(self, text: str, lex: Lexicon):
        self.text = text
        self.lex = lex
        self.toks = _tokens(text)
        letters = [c for c in text if c.isalpha() and (c.isupper() or c.islower())]
        self.caps_text = len(letters) >= 3 and not any(c.islower() for c in letters)
        self.found: list[Finding] = []

    # ---- word tests ---------------------------------------------------------------------

    def common(self, t: _Tok) -> bool:
        return t.folded in self.lex.common or t.folded in CUES or t.folded in TITLES

    def namelike(self, t: _Tok, after_cue: bool = False) -> bool:
        """Could be part of a name here."""
        if t.folded in TITLES or t.folded in POST_NOMINALS:
            return False
        if self.caps_text or (t.upper and len(t.word) > 1):
            # capitals carry no information: the lists decide (or a cue and not a common word)
            if self.lex.is_strong_name(t.folded):
                return True
            return after_cue and not self.common(t) and len(t.word) > 3
        if not t.cap:
            return after_cue and self.lex.is_strong_name(t.folded)
        if _CYRILLIC_GREEK.search(t.word) and (
            _SLAVIC_GREEK_SURNAME.search(t.word.lower()) or self.lex.is_name(t.folded)
        ):
            return True
        if after_cue:
            return self.lex.is_name(t.folded) or not self.common(t)
        return not self.common(t) or self.lex.is_strong_name(t.folded)

    # ---- spans --------------------------------------------------------------------------

    def grow(self, i: int, after_cue: bool = False) -> int:
        """Index of the last token of the name starting at token ``i``."""
        j = i
        while j + 1 < len(self.toks) and j - i < 4:
            a, b = self.toks[j], self.toks[j + 1]
            if not _gap(self.text, a, b, " -.'’"):
                break
            if a.dot and not a.initial and a.folded not in PARTICLES and b.start > a.end + 1:
                break  # "Dr. Hale. Mass noted": a full stop ends the sentence, not the name
            if b.initial or (
                b.folded in PARTICLES
                and j + 2 < len(self.toks)
                and self.toks[j + 2].cap
                and _gap(self.text, b, self.toks[j + 2], " '’")
            ):
                j += 1
                continue
            if b.folded in POST_NOMINALS or b.folded in TITLES or b.folded in CUES:
                break
            surname_after_first = (
                not self.caps_text and b.cap and not b.upper and self.lex.is_first_name(a.folded)
            ) or (
                # "discussed with gregory house": lowercase, a first name then a surname of
                # the lists, after a cue
                after_cue
                and not a.cap
                and not b.cap
                and self.lex.is_first_name(a.folded)
                and b.folded in self.lex.last
            )
            if not (surname_after_first or self.namelike(b, after_cue)):
                break
            j += 1
        # an inverted given name ("KRAMER, JULIA", "Okonjo-Iweala, Ngozi") or initials
        # ("Smith, J. R.", "Jones, M.", "Lee, J.R."); after a cue any capitalised given
        # name that is not an ordinary word ("PARK, MIN-JI")
        if j + 1 < len(self.toks):
            a, b = self.toks[j], self.toks[j + 1]
            between = self.text[a.end : b.start]
            if between.strip() == "," and len(between) <= 2:
                if b.initial and b.dot and not self.dotted_credential(j + 1):
                    j = self.initials(j + 1)
                elif self.given(b, after_cue) and not self.starts_name(j + 1):
                    j = self.initials(j + 1, first=False)
        # initials written without dots after a surname reached from a cue: "Smith JR"
        if (
            after_cue
            and not self.caps_text
            and j + 1 < len(self.toks)
            and self.toks[j].cap
            and not self.toks[j].upper
            and self.dotless_initials(j + 1)
        ):
            j += 1
        return j

    def initials(self, k: int, first: bool = True) -> int:
        """Index of the last of the initials that follow token ``k`` (``k`` itself an
        initial when ``first``)."""
        while (
            k + 1 < len(self.toks)
            and self.toks[k + 1].initial
            and (self.toks[k].dot or not first)
            and _gap(self.text, self.toks[k], self.toks[k + 1], " .")
        ):
            k += 1
        return k

    def given(self, t: _Tok, after_cue: bool) -> bool:
        """A given name after "SURNAME, ": a first name of the lists (after a cue, even one
        that is also a word: "LOPEZ, ANA"), or a hyphenated given name whose parts are first
        names or short syllables, not all of them words ("Jean-Luc", "MIN-JI"); not a
        credential ("PA-C") nor the next word of a sentence ("Krüger, Telefon")."""
        if not t.cap or t.folded in POST_NOMINALS or t.folded in TITLES:
            return False
        if self.lex.is_first_name(t.folded):
            return True
        if after_cue and t.folded in self.lex.first and self.ends_phrase(t):
            return True  # "LOPEZ, ANA" (not "Kim, May need MRI")
        parts = [p for p in t.folded.split("-") if p]
        return (
            len(parts) > 1
            and all(self.lex.is_first_name(p) or (len(p) <= 5 and p.isalpha()) for p in parts)
            and not all(p in self.lex.common for p in parts)
        )

    def ends_phrase(self, t: _Tok) -> bool:
        """Nothing but a list separator or the end of the text after ``t``."""
        rest = self.text[t.end + (1 if t.dot else 0) :].lstrip()
        return not rest or rest[:1] in ",;)/&" or fold(rest.split()[0]) in _AND

    def starts_name(self, k: int) -> bool:
        """Token ``k`` begins a name of its own: a name word follows it ("amara diallo, tom
        reyes": "tom" is not Diallo's given name but the next person's)."""
        if k + 1 >= len(self.toks):
            return False
        a, b = self.toks[k], self.toks[k + 1]
        return (
            self.text[a.end : b.start] == " "
            and not b.initial
            and b.folded not in CUES | TITLES | POST_NOMINALS
            and self.lex.is_name(b.folded)
            and (b.cap == a.cap)
        )

    def dotless_initials(self, k: int) -> bool:
        """Two or three capitals after a surname, ending the phrase: "Smith JR", "Okafor AB"
        (not "Smith CT today": an abbreviation of the text continues it)."""
        t = self.toks[k]
        if not (
            t.upper
            and 2 <= len(t.word) <= 3
            and t.folded not in POST_NOMINALS | TITLES | _ABBREVIATIONS
            and self.text[self.toks[k - 1].end : t.start] == " "
        ):
            return False
        rest = self.text[t.end :]
        return self.ends_phrase(t) or (rest[:1] == "." and rest[1:2] in ("", " "))

    def add(self, i: int, j: int) -> None:
        start, end = self.toks[i].start, self.toks[j].end
        if self.toks[j].initial and self.toks[j].dot:
            end += 1
        self.found.append(Finding(start, end, Kind.NAME))

    def add_listed(self, i: int, j: int) -> None:
        """A name, and the names listed after it: once a cue or the words have shown that
        this is a name, "cc: Dr. Okafor, mary jones; Lee, J. R. and T. Berg" is a list of
        people, and each item is taken on weaker evidence than a name alone (any case)."""
        self.add(i, j)
        for _ in range(8):
            k = self.list_next(j)
            item = self.list_item(k) if k is not None else None
            if item is None:
                return
            self.add(*item)
            j = item[1]

    def list_next(self, j: int) -> int | None:
        """Index of the token after a list separator (``,`` ``;`` ``&`` ``/`` "and")
        following token ``j``, or None."""
        toks, n = self.toks, len(self.toks)
        # credentials after the name are passed over: "J. Roe RT(R) and K. Lee, MD"
        while (
            j + 1 < n
            and _gap(self.text, toks[j], toks[j + 1], " ,()")
            and (
                (toks[j + 1].folded in POST_NOMINALS and toks[j + 1].upper)
                or (
                    toks[j + 1].upper
                    and self.text[toks[j + 1].start - 1 : toks[j + 1].start] == "("
                )
            )
        ):
            j += 1
        if j + 1 >= n:
            return None
        a, b = toks[j], toks[j + 1]
        sep = self.text[a.end + (1 if a.dot else 0) : b.start].replace(")", "")
        if b.folded in _AND and sep.strip(" ,") == "" and sep and j + 2 < n:
            if self.text[b.end : toks[j + 2].start] == " ":
                return j + 2
            return None
        if len(sep) <= 3 and sep.strip() in (",", ";", "&", "/", "+"):
            return j + 1
        return None

    def list_item(self, k: int) -> tuple[int, int] | None:
        """First and last token of the listed name at token ``k`` (after its titles), or
        None."""
        toks, n = self.toks, len(self.toks)
        titled = False
        while (
            k + 1 < n
            and toks[k].folded in TITLES
            and (len(toks[k].word) > 1 or toks[k].dot)
            and _gap(self.text, toks[k], toks[k + 1])
        ):
            k, titled = k + 1, True
        t = toks[k]
        if t.folded in CUES or t.folded in PARTICLES or t.folded in POST_NOMINALS:
            return None
        if t.folded in TITLES and not t.initial:
            return None
        end = self.item_end(k, titled)
        return None if end is None else (k, end)

    def item_end(self, k: int, titled: bool) -> int | None:
        """Last token of a listed name whose first token (after titles) is ``k``."""
        toks, n, lex = self.toks, len(self.toks), self.lex
        t = toks[k]
        if titled:
            return self.grow(k, after_cue=True) if self.title_target(t) else None
        nxt = toks[k + 1] if k + 1 < n else None
        if t.initial:  # J. R. Smith, J.R. Smith, K Obi
            m = self.initials(k) + 1 if t.dot else k + 1
            if not t.dot and (m >= n or self.text[t.end : toks[m].start] != " "):
                return None
            if (
                m < n
                and toks[m].cap
                and len(toks[m].word) > 1
                and (not self.common(toks[m]) or lex.is_name(toks[m].folded))
            ):
                return self.grow(m, after_cue=True)
            return None
        if self.inverted(k):
            return self.grow(k, after_cue=True)
        if (  # "Smith JR, Lee AB"
            t.cap and not t.upper and lex.is_name(t.folded) and k + 1 < n
        ) and self.dotless_initials(k + 1):
            return k + 1
        if not t.cap:  # lowercase: a name of the lists, alone if not a word, or a pair
            if lex.is_strong_name(t.folded):
                return self.grow(k, after_cue=True)
            if (
                nxt is not None
                and not nxt.cap
                and self.text[t.end : nxt.start] == " "
                and lex.is_name(t.folded)
                and lex.is_name(nxt.folded)
                and (t.folded in lex.first or nxt.folded in lex.last)
                and not (self.common(t) and self.common(nxt))
            ):
                return max(self.grow(k, after_cue=True), k + 1)
            return None
        if self.caps_text or t.upper:
            if lex.is_strong_name(t.folded) or (
                lex.is_name(t.folded)
                and nxt is not None
                and self.text[t.end : nxt.start] == " "
                and lex.is_strong_name(nxt.folded)
            ):
                return self.grow(k, after_cue=True)
            return None
        # capitalised: a name of the lists that is not a word; a first name that is a word
        # ("Grace", "May") only alone at the end of the list or before a surname; two
        # unknown capitalised words ("Anja Krüger, Telefon 0171...": a German noun is
        # capitalised too)
        pair = (
            nxt is not None
            and self.text[t.end : nxt.start] == " "
            and nxt.cap
            and lex.is_strong_name(nxt.folded)
        )
        if (
            lex.is_strong_name(t.folded)
            or (t.folded in lex.first and (self.ends_phrase(t) or pair))
        ) or (
            not self.common(t)
            and nxt is not None
            and self.text[t.end : nxt.start] == " "
            and nxt.cap
            and self.namelike(nxt)
        ):
            return self.grow(k, after_cue=True)
        return None

    def inverted(self, k: int) -> bool:
        """Token ``k`` is a surname written before a comma and a given name or initials:
        "Smith, J. R.", "PARK, MIN-JI"."""
        toks = self.toks
        if k + 1 >= len(toks):
            return False
        t, b = toks[k], toks[k + 1]
        between = self.text[t.end : b.start]
        if not (t.cap and len(t.word) > 1 and between.strip() == "," and len(between) <= 2):
            return False
        if t.folded in TITLES or t.folded in CUES or t.folded in POST_NOMINALS:
            return False
        if not (self.lex.is_name(t.folded) or not self.common(t)):
            return False
        return (b.initial and b.dot) or self.given(b, after_cue=True)

    # ---- rules --------------------------------------------------------------------------

    def run(self) -> list[Finding]:
        toks = self.toks
        n = len(toks)
        for i, t in enumerate(toks):
            nxt = toks[i + 1] if i + 1 < n else None
            # a title before a name: Dr. X, Frau Y, M. Z (one-letter titles need their dot)
            if (
                nxt is not None
                and t.folded in TITLES
                and (len(t.word) > 1 or t.dot)
                and (self.caps_text or not t.upper or t.folded in _CAPS_TITLES)
                and _gap(self.text, t, nxt)
            ):
                k = i + 1
                while k < n and toks[k].folded in TITLES and k - i < 3:
                    k += 1  # Frau Dr., Prof. Dr., Dr. med.
                if k < n and toks[k].folded == "med" and k + 1 < n:
                    k += 1
                j = k
                while j + 1 < n and toks[j].folded in PARTICLES and j - k < 3:
                    j += 1  # Dr. van der Berg, Dr. de la Cruz
                if j > k and toks[j].cap and _gap(self.text, toks[j - 1], toks[j]):
                    self.add_listed(k, self.grow(j, after_cue=True))
                    continue
                if k < n and _gap(self.text, toks[k - 1], toks[k]) and self.title_target(toks[k]):
                    self.add_listed(k, self.grow(k, after_cue=True))
                    continue
            # a relation, role or verb before a name
            if nxt is not None and t.folded in CUES and _gap(self.text, t, nxt):
                k = i + 1
                if (
                    nxt.folded in ("by", "von", "par", "por", "with", "mit", "to")
                    and k + 1 < n
                    and _gap(self.text, nxt, toks[k + 1])
                ):
                    k += 1
                while (
                    k + 1 < n
                    and toks[k].folded in TITLES
                    and (len(toks[k].word) > 1 or toks[k].dot)  # "by M Jones": an initial
                    and _gap(self.text, toks[k], toks[k + 1])
                ):
                    k += 1  # "relayed to PA Morgan": a title between the cue and the name
                cand = toks[k]
                if (
                    cand.folded not in TITLES | CUES | PARTICLES
                    and (
                        self.namelike(cand, after_cue=True)
                        or self.inverted(k)
                        or (
                            (t.folded in _AUTHOR or toks[k - 1].folded in _AUTHOR)
                            and cand.upper
                            and 2 <= len(cand.word) <= 4
                        )
                    )
                    and self.worth(cand, t)
                ):
                    self.add_listed(k, self.grow(k, after_cue=True))
                    continue
                # an initial without its dot, then a surname: "read by M Jones"
                if (
                    cand.initial
                    and k + 1 < n
                    and self.text[cand.end : toks[k + 1].start] == " "
                    and toks[k + 1].cap
                    and len(toks[k + 1].word) > 1
                    and self.lex.is_name(toks[k + 1].folded)
                    and not self.common(toks[k + 1])
                ):
                    self.add_listed(k, self.grow(k + 1, after_cue=True))
                    continue
            # a name by its words: a first name with another name-like word, or two names
            if nxt is not None and _gap(self.text, t, nxt, " ,") and self.pair(t, nxt):
                start = i
                if i > 0 and toks[i - 1].initial and _gap(self.text, toks[i - 1], t, " ."):
                    start = i - 1
                self.add_listed(
                    start, self.grow(i + 1 if "," not in self.text[t.end : nxt.start] else i)
                )
                continue
            # initials and a surname: J. Whitaker, J. K. Mbeki
            if t.initial and t.dot and nxt is not None and _gap(self.text, t, nxt, " ."):
                k = i + 1
                while k < n and toks[k].initial and toks[k].dot:
                    k += 1
                if k < n and toks[k].cap and len(toks[k].word) > 2 and not self.common(toks[k]):
                    self.add_listed(i, self.grow(k))
                    continue
            # a surname and initials without dots, ending a phrase: "Smith JR", "Lee AB."
            if (
                not self.caps_text
                and t.cap
                and not t.upper
                and len(t.word) > 2
                and nxt is not None
                and self.lex.is_strong_name(t.folded)
                and self.dotless_initials(i + 1)
            ):
                self.add_listed(i, i + 1)
                continue
            # a surname and initials: Иванов И.И., Smith J., Smith, J. R.
            if (
                t.cap
                and len(t.word) > 2
                and nxt is not None
                and nxt.initial
                and nxt.dot
                and _gap(self.text, t, nxt, " ,")
                and (self.lex.is_name(t.folded) or _SLAVIC_GREEK_SURNAME.search(t.word.lower()))
                and not self.common(t)
            ):
                self.add_listed(i, self.grow(i))
                continue
            # a lone Slavic or Greek surname form in mixed-case text (not the first word)
            if (
                not self.caps_text
                and i > 0
                and t.cap
                and not t.upper
                and len(t.word) > 2
                and _CYRILLIC_GREEK.search(t.word)
                and _SLAVIC_GREEK_SURNAME.search(t.word.lower())
                and not self.common(t)
            ):
                self.add(i, self.grow(i))
                continue
        self.post_nominals()
        self.dicom_names()
        self.cjk()
        return self.found

    def title_target(self, t: _Tok) -> bool:
        if self.caps_text or t.upper:
            return len(t.word) > 1 and not (
                t.folded in self.lex.common and not self.lex.is_name(t.folded)
            )
        return t.cap or not self.common(t)

    def worth(self, cand: _Tok, cue: _Tok) -> bool:
        """After a weak cue (a preposition), only a word of the name lists, or an unknown
        capitalised word after a role word, is taken."""
        if cue.folded in _PREPOSITIONS:
            return self.lex.is_name(cand.folded) and (
                not self.common(cand) or cand.folded in self.lex.first
            )
        return True

    def pair(self, a: _Tok, b: _Tok) -> bool:
        lex = self.lex
        if "," in self.text[a.end : b.start]:
            # "Brown, Thomas": a known surname, a comma, a first name
            return (
                a.cap
                and (lex.is_name(a.folded) or not self.common(a))
                and lex.is_first_name(b.folded)
                and b.cap
                and not self.common(a)
            )
        if self.caps_text or (a.upper and b.upper):
            return (
                lex.is_name(a.folded)
                and lex.is_name(b.folded)
                and (lex.is_first_name(a.folded) or lex.is_first_name(b.folded))
                and len(a.word) > 2
                and len(b.word) > 2
            )
        if not (a.cap and b.cap):
            return False
        if lex.is_first_name(a.folded) and (self.namelike(b) or lex.is_name(b.folded)):
            return True
        return lex.is_strong_name(a.folded) and lex.is_strong_name(b.folded)

    def post_nominals(self) -> None:
        """Capitalised words before MD, RN, PhD ("Amir Haddad, MD")."""
        toks = self.toks
        for k, t in enumerate(toks):
            if k == 0 or not ((t.folded in POST_NOMINALS and t.upper) or self.dotted_credential(k)):
                continue
            j = k - 1
            if not _gap(self.text, toks[j], t, " ,") or not (toks[j].cap or toks[j].initial):
                continue  # "Morgan and NP Kaur": "and" is not the end of a name
            if t.folded == "rt" and self.text[t.end : t.end + 1] != "(":
                continue  # RT is a credential as RT(R), RT(CT); alone it is "right"
            i = j
            while (
                i > 0
                and j - i < 3
                and _gap(self.text, toks[i - 1], toks[i], " .-'")
                and (
                    (
                        toks[i - 1].cap
                        and (
                            not self.common(toks[i - 1])
                            or self.lex.is_first_name(toks[i - 1].folded)
                        )
                    )
                    or toks[i - 1].initial
                    # "Owen M Gallagher, M.D.", "Amy Chu, RT(R)": a first name that is also
                    # a word, before a middle initial or a surname
                    or (
                        toks[i - 1].cap
                        and toks[i - 1].folded in self.lex.first
                        and (toks[i].initial or self.lex.is_name(toks[i].folded))
                    )
                )
            ):
                i -= 1
            if toks[i].cap and (not self.common(toks[i]) or self.lex.is_name(toks[i].folded)):
                self.found.append(Finding(toks[i].start, toks[j].end, Kind.NAME))

    def dotted_credential(self, k: int) -> bool:
        """Tokens from ``k`` spell a post-nominal with dots: "M.D.", "Ph.D.", "R.N."."""
        word, j = "", k
        while j < len(self.toks) and self.toks[j].dot and len(self.toks[j].word) <= 2:
            word += self.toks[j].word
            if j + 1 < len(self.toks) and self.toks[j + 1].start != self.toks[j].end + 1:
                break
            j += 1
        return len(word) >= 2 and fold(word) in POST_NOMINALS

    def dicom_names(self) -> None:
        """``FAMILY^GIVEN^MIDDLE`` when a part is a name (``abdomen^liver`` is not)."""
        for m in _PN.finditer(self.text):
            parts = [fold(p) for p in m.group(0).split("^") if p]
            if any(self.lex.is_name(p) and p not in self.lex.common for p in parts) or (
                any(self.lex.is_name(p) for p in parts[:2])
                and not all(p in self.lex.common for p in parts)
            ):
                self.found.append(Finding(m.start(), m.end(), Kind.NAME))

    def cjk(self) -> None:
        """Japanese (and Chinese, Korean) names before an honorific or after a relation."""
        for pattern in (_CJK_SUFFIX, _CJK_PREFIX):
            for m in pattern.finditer(self.text):
                start, end = m.span("n")
                honorific = _HONORIFIC.search(self.text, start, end)
                if honorific:
                    end = honorific.start()
                while start < end and self.text[start] in _CJK_STOP:
                    start += 1
                # only the name's own characters before an honorific: after a particle
                # or punctuation the name starts
                for k in range(end - 1, start - 1, -1):
                    if self.text[k] in _CJK_STOP:
                        start = k + 1
                        break
                if end > start:
                    self.found.append(Finding(start, end, Kind.NAME))


# nouns after which a person's name is the name of a disease, sign, fracture, device or
# method ("Parkinson disease", "Sister Mary Joseph nodule", "Jones fracture", "Foley
# catheter"): an eponym, not a person of the record
_EPONYM_NOUNS = re.compile(
    r"(?:['’]s)?\s+(?:disease|syndrome|sign|fracture|lesion|tumou?r|sarcoma|lymphoma|"
    r"carcinoma|catheter|classification|criteria|score|scale|angle|line|lines|node|nodule|"
    r"cyst|ring|tear|pouch|space|injury|deformity|phenomenon|effect|units?|procedure|"
    r"approach|maneuver|manoeuvre|view|position|test|equation|index|grade|stage|palsy|"
    r"anomaly|malformation|hernia|diverticulum|aneurysm|thyroiditis|disorder|tube|"
    r"shunt|valve|stent|filter|needle|operation|repair|technique|method|protocol|lamp|"
    r"rosettes?|triad|reflex|formula|law|"
    r"krankheit|syndrom|fraktur|maladie|enfermedad|morbo)\b",
    re.IGNORECASE,
)


def _eponymous(text: str, f: Finding) -> bool:
    """A name followed by a disease, sign or device noun, and not after a title."""
    before = text[: f.start].rstrip()
    titled = re.search(r"(?:^|\W)(?:dr|mr|mrs|ms|prof|nurse)\.?$", before, re.IGNORECASE)
    return titled is None and _EPONYM_NOUNS.match(text, f.end) is not None


def names(text: str) -> list[Finding]:
    """People's names in ``text`` (see the module docstring)."""
    if not any(c.isalpha() for c in text):
        return []
    return [f for f in _Names(text, lexicon()).run() if not _eponymous(text, f)]
