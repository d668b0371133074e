"""DICOM PS3.15 Annex E: the table, the engine, the record, the docs.

- the table in the repo is complete and agrees with an independent copy (dicom-anonymizer);
- a probe dataset holding every attribute of the table (top level and nested in a sequence)
  comes out with each attribute treated as the table and the options say, with the
  expectation derived here independently of the engine's compiled rules;
- no attribute keeps its original value unless an option keeps it;
- the real corpus (pydicom's files, deid-data, pydicom-data) de-identified: the same check
  per element;
- what is recorded (codes, method appended, temporal flag); docs/deid_profile.md is current.
"""

from __future__ import annotations

import copy
import time
from datetime import date, timedelta
from typing import Any

import pydicom
import pytest
from dicom_corpus import DEID_FILES, pydicom_files
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from test_conformance_dciodvfy import pydicom_data_files

from sendit_ops.core.settings import DEFAULT_DEID_OPTIONS, DEID_OPTIONS
from sendit_ops.dicom.annex_e import add_method_codes, compile_profile, load_table
from sendit_ops.dicom.annex_e.docs import DOC, render
from sendit_ops.dicom.annex_e.profile import SAFE_PRIVATE, Context
from sendit_ops.dicom.anonymize import anonymize_dataset, load_profile, load_recipe
from sendit_ops.dicom.identifiers import Needles
from sendit_ops.dicom.leak_scan import LeakScanner
from sendit_ops.dicom.recipe_variables import recipe_variables, uid_remapper
from sendit_ops.pseudonyms.providers import Pseudonym

pytestmark = pytest.mark.unit

TABLE = load_table()
MARK = "[CLEANED]"
JITTER = -21
ALL_FULL = tuple(o for o in DEID_OPTIONS if o != "retain_longitudinal_modified_dates")
ALL_MODIFIED = tuple(o for o in DEID_OPTIONS if o != "retain_longitudinal_full_dates")
OPTION_SETS = {"basic": (), "default": DEFAULT_DEID_OPTIONS, "all-full": ALL_FULL}
OPTION_SETS["all-modified"] = ALL_MODIFIED
CODE_PARTS = {tag_for_keyword(k) for k in ("CodeValue", "CodingSchemeDesignator", "CodeMeaning")}


def clean(text: str) -> str:
    return MARK


def remap(uid: str) -> str:
    return uid_remapper(b"k" * 32)(uid)


# ---- the table ------------------------------------------------------------------------


def test_table_names_its_edition_and_source_and_is_complete():
    assert TABLE.edition == "2024b"
    assert "innolitics/dicom-standard" in TABLE.source["repository"]
    assert len(TABLE.source["commit"]) == 40
    assert len([e for e in TABLE.entries if not e.supplement]) == 621
    assert {e.supplement for e in TABLE.entries if e.supplement} == {"2026c"}
    keywords = {tag_for_keyword(k) for k in ("PatientName", "StudyDate", "ReferringPhysicianName")}
    assert keywords <= set(TABLE.by_tag())
    assert any(e.private for e in TABLE.entries)
    assert {e.label for e in TABLE.masked()} == {"(50XX,XXXX)", "(60XX,3000)", "(60XX,4000)"}


def _dicom_anonymizer_table() -> dict[str, str]:
    """dicom-anonymizer 2.1.0's copy of Table E.1-1 (2026c), as label -> action."""
    from dicomanonymizer.dicom_anonymization_databases import dicomfields_2026c as theirs

    actions = {}
    for category in ("D", "Z", "X", "U", "Z_D", "X_Z", "X_D", "X_Z_D", "X_Z_U_STAR"):
        action = category.replace("_STAR", "*").replace("_", "/")
        for tag in getattr(theirs, f"{category}_TAGS"):
            if len(tag) == 2:
                label = f"({tag[0]:04X},{tag[1]:04X})"
            else:  # (group, element, group mask, element mask)
                group, element, _gmask, emask = tag
                label = (
                    "("
                    + f"{group:04X}"[:2]
                    + "XX,"
                    + ("XXXX" if not emask else f"{element:04X}")
                    + ")"
                )
            assert label not in actions, label
            actions[label] = action
    return actions


def test_table_agrees_with_dicom_anonymizer():
    """Every row of ours that dicom-anonymizer also has carries the same Basic Profile action.

    Differences, each justified:
    - rows of the 2024b table missing from their 2026c copy: only the private-attributes row
      (they treat private tags in code, not as a table row);
    - rows of their 2026c copy missing from the 2024b table: added to the standard after
      2024b; they are in our table as its 2026c supplement, with the same action.
    """
    theirs = _dicom_anonymizer_table()
    ours = {e.label: e for e in TABLE.entries}
    assert len(theirs) == 655
    only_ours = sorted(set(ours) - set(theirs))
    only_theirs = sorted(set(theirs) - set(ours))
    assert only_ours == ["private"]
    assert only_theirs == []
    different = {
        k: (ours[k].basic, theirs[k]) for k in ours if k in theirs and ours[k].basic != theirs[k]
    }
    assert different == {}
    supplement = {e.label for e in TABLE.entries if e.supplement}
    assert len(supplement) == 35


# ---- the probe --------------------------------------------------------------------------

_DATE = date(2001, 2, 3)


def _value(vr: str, n: int) -> Any:
    """A distinct original value of the VR (n numbers the attribute)."""
    if vr in ("DA",):
        return (_DATE + timedelta(days=n)).strftime("%Y%m%d")
    if vr == "DT":
        return (_DATE + timedelta(days=n)).strftime("%Y%m%d") + "101010"
    if vr == "TM":
        return f"10{n % 60:02d}{n % 59:02d}"
    if vr == "UI":
        return f"1.2.826.0.1.3680043.9.{n}"
    if vr == "AS":
        return f"{n % 900:03d}Y"
    if vr in ("IS", "DS"):
        return str(1000 + n)
    if vr in ("US", "SS", "UL", "SL", "SV", "UV"):
        return 1000 + n
    if vr in ("FL", "FD"):
        return 1000.5 + n
    if vr == "AT":
        return 0x00100010
    if vr in ("OB", "OW", "OD", "OF", "OL", "OV", "UN"):
        return f"ORIG{n:04d}".encode()
    return f"ORIG{n:04d}"


def _vr(tag: int) -> str:
    try:
        return dictionary_VR(tag).split(" ")[0]
    except KeyError:
        return "UN"


FREE_TEXT_INSIDE = tag_for_keyword("Manufacturer")  # not in the table: free text inside items


def _item(n: int) -> Dataset:
    item = Dataset()
    item.CodeValue = "T-123"
    item.CodingSchemeDesignator = "SRT"
    item.CodeMeaning = "Something"
    item.add(DataElement(FREE_TEXT_INSIDE, "LO", f"ORIGSQ{n:04d}"))
    return item


def probe() -> tuple[Dataset, dict[int, Any]]:
    """Every exact-tag attribute of the table with a distinct value, plus an overlay, a
    curve and private elements; the same attributes again inside an unlisted sequence."""
    originals: dict[int, Any] = {}
    ds = Dataset()
    for n, (tag, _entry) in enumerate(sorted(TABLE.by_tag().items())):
        vr = _vr(tag)
        if vr == "SQ":
            ds.add(DataElement(tag, "SQ", Sequence([_item(n)])))
        else:
            ds.add(DataElement(tag, vr, _value(vr, n)))
        originals[tag] = ds[tag].value if vr != "SQ" else None
    ds.add(DataElement(0x60000010, "US", 16))
    ds.add(DataElement(0x60003000, "OW", b"\x01\x02" * 8))
    ds.add(DataElement(0x60004000, "LT", "ORIG-OVERLAY"))
    ds.add(DataElement(0x60020010, "US", 16))  # a second overlay group
    ds.add(DataElement(0x60023000, "OW", b"\x01\x02" * 8))
    ds.add(DataElement(0x50000005, "US", 1))
    ds.add(DataElement(0x501E0005, "US", 1))
    ds.add(DataElement(0x00190010, "LO", "SIEMENS MR HEADER"))
    ds.add(DataElement(0x0019100C, "IS", "1000"))  # B_value: safe
    ds.add(DataElement(0x00191010, "LO", "ORIG-PRIVATE"))  # not safe
    ds.add(DataElement(0x00291010, "LO", "ORIG-PRIVATE2"))
    nested = copy.deepcopy(ds)
    ds.ReferencedSeriesSequence = Sequence([nested])  # not in the table: walked, kept
    return ds, originals


def expected(tag: int, options: tuple[str, ...]) -> str:
    """What Annex E + options ask for an attribute, written independently of the engine:
    K/C of a chosen option first (Modified Dates: shift DA/DT, keep TM), else the Basic
    Profile action with compound actions resolved to the one valid for every type."""
    entry = TABLE.by_tag()[tag]
    vr = _vr(tag)
    chosen = {o: a for o, a in entry.options.items() if o in options}
    if "K" in chosen.values():
        return "keep"
    if chosen.get("retain_longitudinal_modified_dates") == "C" and vr in ("DA", "DT", "TM"):
        return "keep" if vr == "TM" else "shift"
    if any(a == "C" for o, a in chosen.items() if o != "retain_longitudinal_modified_dates"):
        return "items" if vr == "SQ" else "clean"
    basic = entry.basic
    if tag in (tag_for_keyword("ResponsiblePerson"), tag_for_keyword("ResponsibleOrganization")):
        basic = "Z"  # Type 2C in the Patient Module (see profile.EMPTIED_NOT_REMOVED)
    if basic == "X":
        return "remove"
    if vr == "SQ":
        return "empty" if basic == "Z" else "items"
    if basic in ("Z", "X/Z"):
        return "empty"
    if basic in ("U", "X/Z/U*") or vr == "UI":
        return "uid"
    return "dummy"


def _is_empty(value: Any) -> bool:
    return value in (None, "", b"", []) or (isinstance(value, Sequence) and len(value) == 0)


def check(ds: Dataset, originals: dict[int, Any], options: tuple[str, ...], where: str) -> int:
    """Compare each table attribute of ``ds`` with what is expected; return how many."""
    checked = 0
    for tag, original in originals.items():
        want = expected(tag, options)
        name = f"{where}({tag >> 16:04X},{tag & 0xFFFF:04X}) {TABLE.by_tag()[tag].name!r}"
        if want == "clean" and isinstance(original, bytes):
            want = "remove"  # binary: no text to clean, removed (profile docstring)
        if want == "remove":
            assert tag not in ds, name
            checked += 1
            continue
        assert tag in ds, f"{name} missing, expected {want}"
        value = ds[tag].value
        if want == "keep":
            assert value == original or original is None, name
        elif want == "empty":
            assert _is_empty(value), name
        elif want == "dummy":
            assert not _is_empty(value) and value != original, name
        elif want == "uid":
            assert str(value).startswith("2.25.") and value != original, name
        elif want == "shift":
            head = str(original)[:8]
            day = date(int(head[:4]), int(head[4:6]), int(head[6:])) + timedelta(days=JITTER)
            assert str(value) == day.strftime("%Y%m%d") + str(original)[8:], name
        elif want == "clean":
            assert value == MARK, name
        elif want == "items":
            assert isinstance(value, Sequence) and len(value) == 1, name
            inside = value[0][FREE_TEXT_INSIDE].value
            assert (
                inside
                == (
                    MARK
                    if "clean" in str(TABLE.by_tag()[tag].options)
                    and any(
                        a == "C" and o in options for o, a in TABLE.by_tag()[tag].options.items()
                    )
                    else "ANONYMIZED"
                )
                or TABLE.by_tag()[tag].basic == "X/Z/U*"
            ), name
            assert value[0].CodeMeaning == "Something", name  # codes are vocabulary
        checked += 1
    return checked


def no_original_left(ds: Dataset, originals: dict[int, Any], options: tuple[str, ...]) -> None:
    """0 table attributes (any depth) with their original value unless the options keep it."""
    kept = {t for t in originals if expected(t, options) == "keep"}
    for elem in ds.iterall():
        if elem.tag in originals and elem.tag not in kept and originals[elem.tag] is not None:
            assert elem.value != originals[elem.tag], f"original value left in {elem.tag}"
        if elem.tag == FREE_TEXT_INSIDE:
            continue  # free text of items: checked per sequence in check()
        if isinstance(elem.value, str) and "ORIG" in elem.value:
            assert elem.tag in kept, f"original value left in {elem.tag}"


@pytest.mark.parametrize("name", list(OPTION_SETS), ids=str)
def test_probe_every_attribute_top_level_and_nested(name):
    options = OPTION_SETS[name]
    ds, originals = probe()
    done = compile_profile(options).apply(ds, Context(remap, JITTER, clean), log=True)
    top = check(ds, originals, options, "")
    nested = check(ds.ReferencedSeriesSequence[0], originals, options, "nested > ")
    assert top == nested == len(TABLE.by_tag())
    no_original_left(ds, originals, options)
    # repeating groups: curves and overlays removed as whole groups, bitmaps never kept
    assert not any(0x5000 <= t >> 16 <= 0x60FF for t in ds._dict)
    # private: only the safe list, with its creator, and only with retain_safe_private
    private = sorted(int(t) for t in ds._dict if t.is_private)
    if "retain_safe_private" in options:
        assert private == [0x00190010, 0x0019100C]
        assert ("SIEMENS MR HEADER", 0x0019, 0x0C) in SAFE_PRIVATE
    else:
        assert private == []
    assert done.actions  # the log names what was done, by tag


def test_without_a_cleaner_what_would_be_cleaned_is_treated_as_the_basic_profile_says():
    options = DEFAULT_DEID_OPTIONS
    ds, originals = probe()
    compile_profile(options).apply(ds, Context(remap, JITTER, None))
    description = tag_for_keyword("StudyDescription")
    assert description not in ds  # X in the Basic Profile; C only with a cleaner
    no_original_left(ds, originals, options)


# ---- the real corpus ---------------------------------------------------------------------

CORPUS = [*DEID_FILES, *pydicom_files(), *pydicom_data_files()]


@pytest.mark.parametrize("name", ["basic", "default"], ids=str)
def test_corpus_every_table_attribute_treated_as_the_profile_says(name):
    """Each table attribute found in the corpus files (any depth) was removed, emptied,
    replaced, shifted, cleaned or kept as expected; no original value left unless kept."""
    options = OPTION_SETS[name]
    profile = compile_profile(options)
    rules = TABLE.by_tag()
    seen = 0
    for path in CORPUS:
        original = pydicom.dcmread(path, force=True)
        ds = copy.deepcopy(original)
        done = profile.apply(ds, Context(remap, JITTER, clean), log=True)
        before = {(p, int(t)): a for p, t, a in done.actions}
        for (where, tag), action in before.items():
            if tag in rules:
                seen += 1
                want = expected(tag, options)
                assert _done_matches(action, want), (path.name, where, hex(tag), action, want)
        for elem in ds.iterall():  # top-level and nested: nothing original left unless kept
            if elem.tag in rules and expected(int(elem.tag), options) not in ("keep", "items"):
                originals = [e.value for e in original.iterall() if e.tag == elem.tag]
                if elem.value not in (None, "", b"") and not isinstance(elem.value, Sequence):
                    assert elem.value not in originals, (path.name, str(elem.tag))
    assert seen > 300


def _done_matches(action: str, want: str) -> bool:
    return {
        "remove": {"X"},
        "empty": {"Z"},
        "dummy": {"D", "Z", "U"},  # D|Z: an empty element stays empty
        "uid": {"U"},
        "keep": {"K"},
        "shift": {"shift", "Z"},  # an unreadable date is emptied
        "clean": {"C", "X", "clean-items"},
        "items": {"dummy-items", "clean-items", "keep-items", "Z"},
    }[want] >= {action} or (want == "dummy" and action in ("D", "Z"))


# ---- the record -------------------------------------------------------------------------


def _anonymized(options: tuple[str, ...], cleaner=clean) -> Dataset:
    ds = pydicom.dcmread(CORPUS[0], force=True)
    ds.DeidentificationMethod = "an earlier tool"
    variables = recipe_variables(Pseudonym("p01", "s01", JITTER), uid_remapper(b"k" * 32))
    return anonymize_dataset(
        ds, load_recipe(None), variables, LeakScanner(Needles()), load_profile(options), cleaner
    )


def test_record_codes_method_appended_and_temporal_flag():
    out = _anonymized(DEFAULT_DEID_OPTIONS)
    assert out.PatientIdentityRemoved == "YES"
    first, ours = list(out.DeidentificationMethod)
    assert first == "an earlier tool"
    assert "Annex E" in ours
    codes = [
        (i.CodingSchemeDesignator, i.CodeValue) for i in out.DeidentificationMethodCodeSequence
    ]
    assert codes == [("DCM", "113100"), ("DCM", "113105"), ("DCM", "113107"), ("DCM", "113108")]
    assert out.LongitudinalTemporalInformationModified == "MODIFIED"
    assert _anonymized(ALL_FULL).LongitudinalTemporalInformationModified == "UNMODIFIED"
    assert _anonymized(()).LongitudinalTemporalInformationModified == "REMOVED"
    # no cleaner: Clean Descriptors was not done, so it is not claimed
    no_clean = _anonymized(DEFAULT_DEID_OPTIONS, None).DeidentificationMethodCodeSequence
    assert "113105" not in [i.CodeValue for i in no_clean]


def test_add_method_codes_keeps_existing_items_and_adds_each_code_once():
    out = _anonymized(DEFAULT_DEID_OPTIONS)
    before = len(out.DeidentificationMethodCodeSequence)
    add_method_codes(out, [("113101", "Clean Pixel Data Option"), ("113100", "again")])
    add_method_codes(out, [("113101", "Clean Pixel Data Option")])
    values = [i.CodeValue for i in out.DeidentificationMethodCodeSequence]
    assert len(values) == before + 1 and values.count("113101") == 1


def test_docs_table_is_current():
    assert DOC.read_text() == render(), "run: python -m sendit_ops.dicom.annex_e.docs"


# ---- cost ------------------------------------------------------------------------------


def test_profile_costs_little_per_file():
    """The profile walk on CT_small stays well under the cost of reading the file."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file("CT_small.dcm")
    profile = compile_profile(DEFAULT_DEID_OPTIONS)
    context = Context(remap, JITTER, clean)
    start = time.perf_counter()
    for _ in range(50):
        profile.apply(pydicom.dcmread(path), context)
    per_file = (time.perf_counter() - start) / 50
    assert per_file < 0.05


def test_options_name_what_the_leak_check_must_not_look_for():
    assert compile_profile(DEFAULT_DEID_OPTIONS).kept_needles == frozenset()
    assert compile_profile(ALL_FULL).kept_needles == {"dates", "uids", "institutions"}
    assert compile_profile(ALL_MODIFIED).kept_needles == {"uids", "institutions"}
    with pytest.raises(ValueError):
        compile_profile(("retain_longitudinal_full_dates", "retain_longitudinal_modified_dates"))
    with pytest.raises(ValueError):
        compile_profile(("retain_everything",))


def test_a_name_in_kept_descriptors_is_cleaned_and_the_image_delivered():
    """Clean Descriptors with the leak check's own redactor as the cleaner: the study's
    description and comments keep their meaning, the name typed into them is replaced, and
    the leak check passes (before: the study ended in ERROR)."""
    from sendit_ops.dicom.identifiers import collect_needles
    from sendit_ops.sample_data import PATIENTS, make_image

    ds = make_image(PATIENTS[0], "ACC1", "20240115", "CT", 1, 1)
    ds.StudyDescription = "CT CHEST for Jane Doe"
    ds.ImageComments = "doe, jane: compare with prior"
    scanner = LeakScanner(collect_needles(copy.deepcopy(ds)))
    variables = recipe_variables(Pseudonym("p01", "s01", JITTER), uid_remapper(b"k" * 32))
    out = anonymize_dataset(
        ds,
        load_recipe(None),
        variables,
        scanner,
        load_profile(DEFAULT_DEID_OPTIONS),
        scanner.redact,
    )
    assert out.StudyDescription.startswith("CT CHEST for ")
    assert "jane" not in out.StudyDescription.lower() and "doe" not in out.ImageComments.lower()
    assert "compare with prior" in out.ImageComments
    assert "113105" in [i.CodeValue for i in out.DeidentificationMethodCodeSequence]


def test_file_meta_keeps_no_source_ae_title():
    """(0002,0016) Source Application Entity Title names the sending station (19 of the
    corpus files have one): the output's meta is sendit's own."""
    paths = [
        p
        for p in CORPUS
        if "SourceApplicationEntityTitle" in pydicom.dcmread(p, force=True).file_meta
    ]
    assert paths
    variables = recipe_variables(Pseudonym("p01", "s01", JITTER), uid_remapper(b"k" * 32))
    for path in paths[:5]:
        out = anonymize_dataset(
            pydicom.dcmread(path, force=True), load_recipe(None), variables, LeakScanner(Needles())
        )
        assert "SourceApplicationEntityTitle" not in out.file_meta
        assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID


def test_describe_names_the_table_edition_and_options():
    described = compile_profile(DEFAULT_DEID_OPTIONS).describe()
    assert described == {
        "annex_e_table": "2024b",
        "deid_options": [
            "clean_descriptors",
            "retain_longitudinal_modified_dates",
            "retain_patient_characteristics",
        ],
    }


@pytest.mark.parametrize("name", list(OPTION_SETS), ids=str)
def test_type_1_device_serial_number_of_enhanced_equipment_gets_a_dummy(name):
    """DeviceSerialNumber is X/Z/D; the Enhanced General Equipment Module (enhanced CT, MR,
    ... IODs) makes it Type 1: it keeps a (dummy) value, never removed or emptied; Retain
    Device Identity keeps it. Manufacturer and model are not in the table: kept."""
    options = OPTION_SETS[name]
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"  # Enhanced CT Image Storage
    ds.Manufacturer = "ACME"
    ds.ManufacturerModelName = "Scanner 9"
    ds.DeviceSerialNumber = "SN-4711"
    ds.SoftwareVersions = "1.0"
    compile_profile(options).apply(ds, Context(remap, JITTER, clean))
    if "retain_device_identity" in options:
        assert ds.DeviceSerialNumber == "SN-4711"
    else:
        assert ds.DeviceSerialNumber == "ANONYMIZED"
    assert (ds.Manufacturer, ds.ManufacturerModelName) == ("ACME", "Scanner 9")
