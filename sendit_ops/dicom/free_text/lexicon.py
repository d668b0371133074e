"""Which words are people's names, and which are ordinary words, in the languages of DICOM's
character sets: packaged lists, loaded once per process and folded like the header's names.

- ``philter-lite`` (UCSF's clinical-notes PHI filter, BSD-3) ships the lists its name filter
  uses: ~97,000 first names, ~161,000 last names, and ~195,000 words that are *not* names
  although they look like some (medical terms, English words: "basic", "july", "cross").
  Only its data file is read (``filters/set.toml``): its code needs an NLTK tagger that it
  would download.
- ``Faker`` (MIT) ships first and last names per locale; these add the names of the other
  languages: German, French, Spanish, Italian, Dutch, Polish, Croatian, Czech, Turkish,
  Greek, Russian, Japanese, Chinese, Korean.

A word in a name list is a *candidate*; whether it is taken for a name depends on the
context (``names.py``): "Wells" after "Dr." is a name, "wells" in "no fluid in the wells" is
not. Both lists are folded (``identifiers.fold``: case, accents, width), so ``MÜLLER`` and
``Muller`` are the same word.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sendit_ops.dicom.identifiers import fold

# Faker locales whose name lists are added (the languages DICOM character sets cover)
FAKER_LOCALES = (
    "en_US", "en_GB", "de_DE", "de_AT", "fr_FR", "es_ES", "es_MX", "it_IT", "nl_NL", "pt_PT",
    "pt_BR", "pl_PL", "hr_HR", "cs_CZ", "sv_SE", "tr_TR", "el_GR", "ru_RU", "ja_JP", "zh_CN",
    "ko_KR",
)  # fmt: skip
_QUOTED = re.compile(r'"([^"]*)"')


def _split(text: str) -> frozenset[str]:
    """The words of a block of text (vocabulary lists are written as prose-like blocks)."""
    return frozenset(text.split())


# ordinary words of the other languages that name lists hold too (first names that are also
# words: "Rose", "Dolores", "Pilar"); the English ones come with philter-lite's list. Short on
# purpose: a word here is still a name after a title or a relation ("Frau Rose").
_COMMON_OTHER = _split(
    """
der die das und mit ohne von vom zum zur bei nach seit links rechts re li nativ kontrast
befund aufnahme untersuchung schmerzen sturz kontrolle verlauf zustand patient patientin
le la les de du des et avec sans pour par sur sous droite gauche droit contrôle douleur
el los las del con sin para por sobre derecha izquierda dolor control estudio paciente
il lo gli con senza destra sinistra dolore controllo esame paziente rose dolores pilar
rosa mercedes paz luz sol cruz blanca amparo angeles consuelo
"""
)
# eponyms of radiology: named after people, but the name of a sign, a score, a fracture or a
# imaging vendors and contrast makers, in protocol and series names ("Philips Ingenia")
VENDORS = _split(
    """
philips siemens canon toshiba hitachi fujifilm fuji agfa carestream kodak hologic konica
minolta esaote mindray samsung shimadzu varian elekta planmeca sirona vidar bracco bayer
guerbet bruker mediso spectrum dynamics terarecon vital barco sectra visage nuance
"""
)
# disease ("Cobb angle", "Fleischner criteria", "Bosniak IIF"), not a person in the record;
# the eponyms that are common surnames (Smith, Baker, Wilson) are left out: a name wins
EPONYMS = _split(
    """
alzheimer arnold bankart barrett baastrup bosniak bouchard chiari chilaiditi colles cobb
crohn cushing dandy dupuytren ewing fleischner galeazzi gleason hashimoto heberden sachs
hirschsprung hodgkin hoffa kienbock klatskin krukenberg legg calve perthes lisfranc
maisonneuve meckel menetrier modic monteggia osgood schlatter paget pancoast pellegrini
stieda peyronie pott salter schatzki scheuermann schmorl segond sinding larsen stener
sudeck tillaux tornwaldt virchow wilms zenker tnm hounsfield agatston fazekas spetzler
bethesda lugano recist
"""
)


@dataclass(frozen=True)
class Lexicon:
    """Folded word sets: ``first`` and ``last`` names, and ``common`` words (not names)."""

    first: frozenset[str]
    last: frozenset[str]
    common: frozenset[str]

    def is_name(self, folded: str) -> bool:
        """In a name list (first or last)."""
        return folded in self.first or folded in self.last

    def is_strong_name(self, folded: str) -> bool:
        """In a name list and not an ordinary word: a name without any other cue."""
        return self.is_name(folded) and folded not in self.common

    def is_first_name(self, folded: str) -> bool:
        """A first name that is not an ordinary word ("Quentin", not "June")."""
        return folded in self.first and folded not in self.common


def _philter_sets() -> dict[str, frozenset[str]]:
    """philter-lite's name and not-name sets, read from its data file (one TOML array a
    line; read with a regular expression: tomllib takes 1.8 s for this file, this 0.15 s)."""
    spec = importlib.util.find_spec("philter_lite")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("philter-lite is not installed (sendit's name lists come with it)")
    path = Path(next(iter(spec.submodule_search_locations))) / "filters" / "set.toml"
    sets: dict[str, frozenset[str]] = {}
    with path.open(encoding="utf-8") as f:
        for line in f:
            key, _, rest = line.partition("=")
            if rest:
                sets[key.strip()] = frozenset(fold(w) for w in _QUOTED.findall(rest) if w)
    return sets


def _faker_names() -> tuple[set[str], set[str]]:
    first: set[str] = set()
    last: set[str] = set()
    for locale in FAKER_LOCALES:
        try:
            provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
        except ImportError:
            continue
        for attr in ("first_names", "first_names_male", "first_names_female"):
            first.update(_words(getattr(provider, attr, ())))
        for attr in ("last_names", "last_names_male", "last_names_female"):
            last.update(_words(getattr(provider, attr, ())))
    return first, last


def _words(names: Iterable[object]) -> set[str]:
    """Folded words of a Faker name list (a tuple, or a dict of name -> weight)."""
    out: set[str] = set()
    for name in names:
        for word in re.split(r"[\s-]+", str(name)):
            if len(word) >= 2 or (word and not word.isascii()):
                out.add(fold(word))
    return out


@functools.cache
def lexicon() -> Lexicon:
    """The name lists, loaded on first use (~0.5 s) and kept for the process."""
    sets = _philter_sets()
    first, last = _faker_names()
    common = set(sets.get("nonames", ())) | {fold(w) for w in (*_COMMON_OTHER, *EPONYMS, *VENDORS)}
    # Faker's names are names in their language even when an English word ("Will" is not
    # English there): they count as names but an ordinary English word stays common
    return Lexicon(
        first=frozenset(sets.get("firstnames", frozenset()) | first),
        last=frozenset(sets.get("lastnames", frozenset()) | last),
        common=frozenset(common),
    )
