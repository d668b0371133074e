"""The free-text detector (issue 23) on a labelled corpus and on the shipped test data.

Recall per kind on tests/data/free_text_phi.txt (strings written for these tests, English,
German, French, Spanish, Italian, Japanese, Greek, Russian), and precision as the share of
the PHI-free descriptions of pydicom's test files, pydicom-data, deid-data and the sample
studies that come out unchanged. Both are printed (``pytest -s``) and in docs/deid_profile.md.
"""

from __future__ import annotations

import pytest
from free_text_corpus import CORPUS, load_corpus, score, shipped_descriptions

from sendit_ops.dicom.free_text import Kind, find_phi

pytestmark = pytest.mark.unit

RECALL_FLOOR = 0.98
GATED = ("name", "id", "phone", "address", "date")


def _spans(text: str) -> list[tuple[int, int, str]]:
    return [(f.start, f.end, f.kind.value) for f in find_phi(text)]


def test_corpus_is_big_enough_and_multilingual():
    examples = load_corpus()
    assert len(examples) >= 300
    languages = {e.language for e in examples}
    assert {"en", "de", "fr", "es"} <= languages and len(languages) >= 5
    kinds = {k for e in examples for _, _, k in e.spans}
    assert kinds == {k.value for k in Kind}


def test_recall_per_kind_on_the_corpus():
    result = score(_spans, load_corpus())
    print("\nfree-text detector per kind: recall (found / labelled), precision (findings on PHI)")
    for kind in sorted(result.total):
        found, total = result.found[kind], result.total[kind]
        on, reported = result.on_phi[kind], result.reported[kind]
        print(
            f"  {kind:8s} recall {found:4d} / {total:4d} {result.recall(kind):.3f}   "
            f"precision {on:4d} / {reported:4d} {result.precision(kind):.3f}"
        )
    share = result.extra_chars / max(result.clean_chars, 1)
    print(f"  characters outside the labelled spans taken: {result.extra_chars} / "
          f"{result.clean_chars} ({share:.1%})")  # fmt: skip
    low = {k: round(result.recall(k), 3) for k in GATED if result.recall(k) < RECALL_FLOOR}
    assert not low, f"recall below {RECALL_FLOOR}: {low}; missed: {result.missed[:10]}"
    assert share < 0.02, result.extra[:10]


def test_recall_on_the_held_out_strings():
    """Written after the detector and scored as they were (tests/data/..._holdout.txt); the
    one miss of that first score (a Japanese kinship word, 長男) was fixed after."""
    result = score(_spans, load_corpus(CORPUS.with_name("free_text_phi_holdout.txt")))
    print("\nheld-out strings, recall per kind:")
    for kind in sorted(result.total):
        print(f"  {kind:8s} {result.found[kind]:4d} / {result.total[kind]:4d}")
    assert all(result.recall(k) >= 0.9 for k in GATED), result.missed


def test_precision_on_the_phi_free_descriptions_of_the_shipped_data():
    descriptions = shipped_descriptions()
    assert len(descriptions) >= 50
    changed = [(k, v) for k, v in descriptions if find_phi(v)]
    kept = 1 - len(changed) / len(descriptions)
    print(f"\nPHI-free descriptions kept unchanged: {len(descriptions) - len(changed)} / "
          f"{len(descriptions)} ({kept:.1%})")  # fmt: skip
    for keyword, _ in changed:
        print(f"  changed: a {keyword}")
    assert kept >= 0.95


def test_precision_on_written_phi_free_descriptions():
    """Protocol and series names, eponyms (Cobb, Colles, Hill-Sachs), vendors, doses, scores."""
    lines = CORPUS.with_name("free_text_phi_free.txt").read_text(encoding="utf-8").splitlines()
    texts = [t for t in lines if t.strip() and not t.startswith("#")]
    changed = [t for t in texts if find_phi(t)]
    kept = len(texts) - len(changed)
    print(f"\nwritten PHI-free descriptions kept unchanged: {kept} / {len(texts)}")
    assert len(texts) >= 100 and len(changed) / len(texts) <= 0.05, changed


@pytest.mark.parametrize(
    "text",
    [
        "Neighbour Quentin Zabriskie, 12 Elm Street, tel 555-0142",
        "Second opinion Dr. Xavier Outsider, St. Elsewhere Clinic",
        "MRN 7781234 prior at other site",
    ],
)
def test_the_issues_strings_lose_every_name_address_phone_and_id(text):
    found = find_phi(text)
    left = text
    for f in sorted(found, reverse=True):
        left = left[: f.start] + f.kind.placeholder + left[f.end :]
    for word in (
        "Quentin",
        "Zabriskie",
        "Elm",
        "0142",
        "Xavier",
        "Outsider",
        "Elsewhere",
        "7781234",
    ):
        assert word not in left


def test_a_complete_date_carries_its_value_for_shifting():
    (date,) = [f for f in find_phi("Prior study 14.03.2019 at another site") if f.kind == Kind.DATE]
    assert date.date == (2019, 3, 14)
    (partial,) = [f for f in find_phi("seen in March 2018") if f.kind == Kind.DATE]
    assert partial.date is None


def test_ages_up_to_89_are_kept():
    assert not find_phi("72-year-old male, shortness of breath")
    assert [f.kind for f in find_phi("Patient is 93 years old")] == [Kind.AGE]


def _left(text: str) -> str:
    """``text`` with its findings replaced by their placeholders."""
    for f in sorted(find_phi(text), reverse=True):
        text = text[: f.start] + f.kind.placeholder + text[f.end :]
    return text


@pytest.mark.parametrize(
    ("text", "names"),
    [
        # every name of a list after a person cue, in any case
        ("cc: dr. halvorsen, grace obi", ["halvorsen", "grace", "obi"]),
        ("cc: Dr. Mwangi; Dr. Petit and Ines Carvalho", ["Mwangi", "Petit", "Ines", "Carvalho"]),
        ("discussed with Dr. Ruiz and olga brandt by phone", ["Ruiz", "olga", "brandt"]),
        ("read by simon akers, laura wendt", ["simon", "akers", "laura", "wendt"]),
        ("REVIEWED WITH DR. FINCH AND DR. OKORO", ["FINCH", "OKORO"]),
        ("CC: NAM, SEO-YEON; DIAZ, ANA", ["NAM", "SEO-YEON", "DIAZ", "ANA"]),
        # surname-comma-initials, initials-surname, surname-initials, with their initials
        ("Pt seen by Dr. Varga and Whitcombe, L. J.", ["Varga", "Whitcombe", "L", "J"]),
        ("Read by Asante, K.", ["Asante", "K"]),
        ("Fenwick, D. R.", ["Fenwick", "D", "R"]),
        ("Reviewed with P.K. Raman", ["P", "K", "Raman"]),
        ("Dictated by Lindahl TR", ["Lindahl", "TR"]),
        ("Reviewed by T Walsh and K Obi", ["T Walsh", "K Obi"]),
        ("Hartmann JR, Okafor AB. Radiology 2020", ["Hartmann", "JR", "Okafor", "AB"]),
        # hyphens, apostrophes, capitals, credentials, "per"
        ("Per Dr. Ní Bhriain-Walsh ok to scan", ["Bhriain-Walsh"]),
        ("Spoke with Declan O'Shea-Murphy", ["Declan", "O'Shea-Murphy"]),
        ("DISCUSSED WITH DR ROSA MORENO", ["ROSA", "MORENO"]),
        ("Tech: M. Ambrose RT(R)(CT)", ["Ambrose"]),
        ("Nadia Rahimi, MD and Colm Byrne, DO", ["Nadia", "Rahimi", "Colm", "Byrne"]),
        ("Sonographer: Petra Lund, RDMS", ["Petra", "Lund"]),
        ("per Castellano, add delayed phase", ["Castellano"]),
        ("Bernard T Whitlock, M.D.", ["Bernard", "Whitlock"]),
        ("P. Haig RT(R) and S. Moore RT(R)", ["Haig", "Moore"]),
        ("Techs: Ann Vu, RT(R) / Raj Iyer, RT(CT)", ["Ann", "Vu", "Raj", "Iyer"]),
        ("Per Drs. Brandt and Okeke, proceed", ["Brandt", "Okeke"]),
    ],
)
def test_names_in_lists_initials_and_credentials_are_found(text, names):
    left = _left(text)
    assert not [n for n in names if n in left], left


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("Prior at Tufts Medical", ["Tufts"]),
        ("Outside study from Sarasota Memorial", ["Sarasota"]),
        ("Transferred from Ochsner Health", ["Ochsner"]),
        ("Prior CT at Jackson Memorial, no change", ["Jackson"]),
        ("Images from Children's of Minnesota", ["Minnesota"]),
        ("Comparison from Duke University Health System", ["Duke"]),
        ("Seen at Hackensack Meridian Health in May", ["Hackensack", "Meridian"]),
        ("Prior at Cedars-Sinai", ["Cedars"]),
        ("Outside read, Tampa General.", ["Tampa"]),
        ("TRANSFERRED FROM OCHSNER HEALTH", ["OCHSNER"]),
        ("Prior at NYU Langone Health", ["NYU", "Langone"]),
        ("Pt transferred from Good Samaritan", ["Good Samaritan"]),
        ("Voruntersuchung aus dem Universitätsklinikum Freiburg", ["Freiburg"]),
    ],
)
def test_institutions_without_a_hospital_word_are_found(text, words):
    left = _left(text)
    assert "[address]" in left and not [w for w in words if w in left], left


@pytest.mark.parametrize(
    "text",
    [
        "Hounsfield units 40 in the lesion",
        "Gleason 4+3, PI-RADS 4",
        "Eval for Parkinson disease",
        "Foley catheter in place, Swan-Ganz catheter tip in the right pulmonary artery",
        "Mass effect on the lateral ventricle",
        "Procedure under General anesthesia",
        "Status post General Anesthesia",
        "Jones fracture of the fifth metatarsal",
        "Sister Mary Joseph nodule",
        "Transferred from Outside Hospital ICU",
        "Prior from Emergency Department",
        "FROM REGIONAL LYMPH NODES",
        "GE Healthcare Discovery MR750, Philips Healthcare Ingenia",
        "Discussed with ED attending and ICU team",
        "cc: referring physician, Oncology",
        "Read by attending and resident",
        "Compared with prior from the General Medical Council guidelines",
        "Per Fleischner criteria, no follow up",
        "Prior from ENT Clinic, Breast Imaging Center",
        "Mental Health consult, Nuclear Medicine bone scan",
        "Discussed at Tumor Board",
        "Pain in RLQ, Murphy sign",
        "Seen with Wood lamp, Homer Wright rosettes, Virchow triad",
        "RT knee pain, Knee RT 3 views, XR FOOT RT",
    ],
)
def test_eponyms_departments_and_vendors_are_kept(text):
    assert not find_phi(text), [(text[f.start : f.end], f.kind.value) for f in find_phi(text)]


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        # the list ends where the names end; the following words of the sentence stay
        ("cc: Dr. Lee, Will follow up", "Will follow up"),
        ("Seen by Dr. Kim, May need MRI", "May need MRI"),
        ("Discussed with Dr. Smith, findings unchanged", "findings unchanged"),
        ("Read by Smith CT today", "CT today"),
        ("Seen by Dr. Hale. Mass in the right upper lobe", "Mass in the right"),
        ("Signed: Ilse Brandauer, M.D.", "[name], M.D."),  # a credential, not initials
        ("Reviewed with PA Morgan and NP Kaur", "PA [name] and NP [name]"),
        ("Tochter Anja Krüger, Telefon 0171 2345678", "Telefon"),
        ("From Dr. Li Wei at Pacific Heart Institute", "From Dr. [name] at [address]"),
    ],
)
def test_a_list_of_names_stops_at_the_sentence(text, kept):
    assert kept in _left(text)
