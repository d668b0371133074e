"""The identifier matcher and the leak scanner built on it: false alarms that blocked studies
for good (shifted dates, defined terms, JSON keys) are gone, and every canary is still caught."""

from __future__ import annotations

import copy
import io
import json
from datetime import date, timedelta

import pydicom
import pytest
from conftest import PHI_STRINGS
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from sendit_ops.dicom.anonymize import (
    anonymize_dataset,
    load_recipe,
    recipe_variables,
    uid_remapper,
)
from sendit_ops.dicom.identifiers import IdentifierMatcher, Needles, collect_needles, original_dates
from sendit_ops.dicom.leak_scan import LeakScanner
from sendit_ops.packaging.archive import header_bytes, metadata_row, shared_header
from sendit_ops.pseudonyms.providers import Pseudonym
from sendit_ops.sample_data import PATIENTS, make_image

pytestmark = pytest.mark.unit

RECIPE = load_recipe(None)


def _scanner(ds: Dataset, **kw) -> LeakScanner:
    return LeakScanner(collect_needles(copy.deepcopy(ds)), **kw)


def _shift(value: str, days: int) -> str:
    d = date(int(value[:4]), int(value[4:6]), int(value[6:8])) + timedelta(days)
    return d.strftime("%Y%m%d") + value[8:]


# ---- dates -----------------------------------------------------------------------------------


def _two_dates() -> Dataset:
    """pydicom's JPEG2000.dcm pattern: dates 36 days apart in one study."""
    ds = Dataset()
    ds.PatientName = "DOE^JANE"
    ds.PatientBirthDate = "19710304"
    ds.InstanceCreationDate = "19970911"
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = "19970806"
    ds.AcquisitionDateTime = "19970806101010"
    ds.Modality = "CT"
    return ds


def _shifted(ds: Dataset, days: int) -> Dataset:
    """The dataset de-identified: name removed, every date shifted."""
    out = copy.deepcopy(ds)
    del out.PatientName
    for elem in out.iterall():
        if elem.VR in ("DA", "DT") and elem.value:
            elem.value = _shift(str(elem.value), days)
    return out


def test_a_shifted_date_equal_to_another_original_date_is_not_a_leak():
    ds = _two_dates()
    scanner = _scanner(ds)
    snapshot = original_dates(ds)
    out = _shifted(ds, -36)
    assert out.InstanceCreationDate == "19970806"  # == the original StudyDate etc.
    assert "19970806" in scanner.needles.dates  # ... which is a needle
    assert scanner.scan_dataset(out, original_dates=snapshot) == [] or pytest.fail("false alarm")
    # without the per-image snapshot: the originals pooled per element path over the study
    assert scanner.scan_dataset(out) == []
    # and the row built from it (DicomHeader holds the shifted dates)
    row = metadata_row(shared_header([out]), "codedpatient01", "codedstudy0001")
    assert scanner.scan_mapping(row, "row") == []


@pytest.mark.parametrize("keyword", ["ContentDate", "InstanceCreationDate", "AcquisitionDateTime"])
def test_a_date_element_left_unchanged_is_a_leak(keyword: str):
    ds = _two_dates()
    scanner = _scanner(ds)
    snapshot = original_dates(ds)
    out = _shifted(ds, -36)
    out[keyword].value = ds[keyword].value
    assert [p.split()[-1] for p in scanner.scan_dataset(out, original_dates=snapshot)] == [keyword]
    assert [p.split()[-1] for p in scanner.scan_dataset(out)] == [keyword]


def test_a_shifted_date_time_keeps_no_date_part():
    ds = _two_dates()
    scanner = _scanner(ds)
    out = _shifted(ds, -36)
    out.AcquisitionDateTime = "19970806" + "235959"  # the original date part, another time
    assert [p.split()[-1] for p in scanner.scan_dataset(out)] == ["AcquisitionDateTime"]


@pytest.mark.parametrize(
    "written",
    [
        "06.08.1997",
        "6.8.1997",
        "1997-08-06",
        "1997/08/06",
        "19970806",
        "08/06/1997",
        "06/08/1997",
        "06-AUG-97",
        "06-Aug-1997",
        "6 August 1997",
        "Aug 6, 1997",
        "August 6th 1997",
        "06AUG1997",
        "1997年8月6日",
    ],
)
def test_an_original_date_in_free_text_is_a_leak_in_any_common_format(written: str):
    ds = _two_dates()
    scanner = _scanner(ds)
    out = _shifted(ds, -36)
    out.ImageComments = f"prior exam {written}, compare"
    assert [p.split()[-1] for p in scanner.scan_dataset(out)] == ["ImageComments"]
    assert scanner.redact(out.ImageComments) == "prior exam [removed], compare"


@pytest.mark.parametrize(
    "written", ["07.08.1997", "1997-08-07", "Aug 7, 1997", "8/7/1998", "v1.2.97"]
)
def test_other_dates_and_numbers_in_free_text_are_not(written: str):
    scanner = _scanner(_two_dates())
    assert not scanner.hits(f"prior exam {written}")


def test_the_jpeg2000_file_with_a_36_day_shift_passes_the_leak_check():
    """The issue's case: pydicom's JPEG2000.dcm, jitter -36: ERROR for good before."""
    path = get_testdata_file("JPEG2000.dcm")
    original = pydicom.dcmread(path)
    variables = recipe_variables(
        Pseudonym("codedpatient01", "codedstudy0001", -36), uid_remapper(b"k" * 32)
    )
    out = anonymize_dataset(
        pydicom.dcmread(path), RECIPE, variables, LeakScanner(collect_needles(original))
    )
    assert out.InstanceCreationDate == original.SeriesDate  # the collision happened


def test_full_dates_retained_on_purpose_only_the_birth_date_is_a_needle():
    ds = make_image(PATIENTS[0], "ACC1", "20240115", "CT", 1, 1)
    scanner = _scanner(ds, full_dates=True)
    out = copy.deepcopy(ds)
    del out.PatientName, out.PatientID, out.OtherPatientIDs, out.AccessionNumber, out.StudyID
    del out.PatientAddress, out.PatientTelephoneNumbers, out.RequestAttributesSequence
    del out.ImageComments, out.ReferringPhysicianName, out.PerformingPhysicianName
    del out.OperatorsName, out[0x00290000:0x00300000]
    for elem in out.iterall():
        if elem.VR == "UI" and not str(elem.value).startswith("1.2.840.10008"):
            elem.value = "2.25.1"
    out.file_meta.MediaStorageSOPInstanceUID = "2.25.1"
    out.StudyDescription = "CT 2024-01-15"
    assert scanner.scan_dataset(out) == ["(0010,0030) PatientBirthDate"]
    out.PatientBirthDate = "19710101"
    out.StudyDescription = "born 04.03.1971"
    assert scanner.scan_dataset(out) == ["(0008,1030) StudyDescription"]


# ---- values, never keys or defined terms -----------------------------------------------------


def test_a_name_part_equal_to_a_dicom_keyword_does_not_hit_the_json_keys():
    ds = make_image(PATIENTS[0], "ACC1", "20240115", "CT", 1, 1)
    ds.PatientName = "PATIENTNAME^STUDYDESCRIPTION"
    scanner = _scanner(ds)
    header = {"PatientName": "codedpatient01", "StudyDescription": "CT CHEST", "Modality": "CT"}
    row = metadata_row(header, "codedpatient01", "codedstudy0001")
    assert "PatientName" in row["DicomHeader"] and "StudyDescription" in row
    assert scanner.scan_mapping(row, "metadata row") == []
    # the same words as values are leaks
    header["StudyDescription"] = "CT for patientname"
    row = metadata_row(header, "codedpatient01", "codedstudy0001")
    assert scanner.scan_mapping(row, "metadata row") == [
        "metadata row field DicomHeader",
        "metadata row field StudyDescription",
    ]


def test_names_in_other_scripts_are_found_inside_the_json_row():
    """json.dumps writes 山田 as \\u5c71\\u7530: the row's JSON is parsed, not searched raw."""
    ds = make_image(PATIENTS[0], "ACC1", "20240115", "CT", 1, 1)
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "Yamada^Tarou=山田^太郎=やまだ^たろう"
    scanner = _scanner(ds)
    row = metadata_row({"SeriesDescription": "山田 CT"}, "codedpatient01", "codedstudy0001")
    assert "\\u5c71" in row["DicomHeader"]
    assert scanner.scan_mapping(row, "row") == ["row field DicomHeader"]


def test_defined_terms_in_coded_strings_are_not_names():
    """pydicom's eCT_Supplemental.dcm: patient Perfusion^MCA Stroke, ImageType/FrameType
    PERFUSION. It stopped its batch before; a single name part in a CS value is a defined
    term, but the name in free text is still a leak."""
    path = get_testdata_file("eCT_Supplemental.dcm")
    original = pydicom.dcmread(path)
    scanner = LeakScanner(collect_needles(original))
    variables = recipe_variables(
        Pseudonym("codedpatient01", "codedstudy0001", -21), uid_remapper(b"k" * 32)
    )
    out = anonymize_dataset(pydicom.dcmread(path), RECIPE, variables, scanner)
    assert "PERFUSION" in out.ImageType
    row = metadata_row(shared_header([out]), "codedpatient01", "codedstudy0001")
    assert scanner.scan_mapping(row, "row") == []
    out.StudyDescription = "CT perfusion follow-up"
    out.ImageType = ["DERIVED", "PRIMARY", "PERFUSION STROKE"]  # two name parts together
    assert [p.split()[-1] for p in scanner.scan_dataset(out)] == ["ImageType", "StudyDescription"]


def test_names_match_in_any_order_case_and_accent_but_keep_word_boundaries():
    ds = Dataset()
    ds.PatientName = "MÜLLER-STRAßE^JOSÉ ANN^Q"
    ds.OtherPatientNames = "SØREN^ÆLFRED"
    m = IdentifierMatcher(collect_needles(ds))
    for text in (
        "jose muller-strasse",
        "Strasse, José",
        "MULLER STRASSE",
        "Ann",
        "soren aelfred",
        "Aelfred Søren",
    ):
        assert m.hits(text), text
    for text in ("CHANNEL", "ANNEX", "Q", "q-space", "mull", "JOSEPH"):
        assert not m.hits(text), text
    assert m.redact("for Jose Q. Muller-Strasse, CT") == "for [removed], CT"
    assert m.redact("J. Muller moved") == "[removed] moved"


def test_ids_with_or_without_separators():
    ds = Dataset()
    ds.PatientID = "12-345-678"
    ds.OtherPatientIDs = "55512345"
    ds.AccessionNumber = "ACC-0042"
    m = IdentifierMatcher(collect_needles(ds))
    for text in ("12345678", "12 345 678", "id 12-345-678", "555-123-45", "555 12345", "acc0042"):
        assert m.hits(text), text
    for text in ("123456789", "5551234", "ACC-00421"):
        assert not m.hits(text), text


def test_an_id_glued_to_other_text_by_an_underscore_is_still_found():
    """File names and protocol names join words with "_": an id there is a leak, while a
    name part after "_" in a coded value (SIEMENS_RIS for a patient RIS) is not."""
    ds = Dataset()
    ds.PatientName = "RIS^ANNA"
    ds.PatientID = "12-345-678"
    ds.AccessionNumber = "ACC-0042"
    m = IdentifierMatcher(collect_needles(ds))
    for text in ("scan_12345678.dcm", "12-345-678_1", "SERIES_ACC0042", "x_acc-0042_y"):
        assert m.hits(text), text
    for text in ("SIEMENS_RIS", "scan_123456789.dcm", "ACC00421_1"):
        assert not m.hits(text), text


def test_every_canary_of_the_sample_data_is_still_caught():
    """What tests/conftest.py's PHI_STRINGS look for in the outputs, typed into kept free
    text, and what the shipped recipe's own test plants (a family name in StudyDescription)."""
    ds = make_image(PATIENTS[0], "ACC10001", "20240115", "CT", 1, 1)
    scanner = LeakScanner(collect_needles(ds, ["ACC10001"]))
    planted = [v for v in PHI_STRINGS if v in {"DOE", "JANE", "HOUSE", "GREGORY"}]
    planted += ["MRN-100234", "MRN100234", "19710304", "20240115", "ACC10001", "ALT100234"]
    planted += ["555-0100", "12 Elm Street, Springfield", "RP10001"]
    for value in planted:
        assert scanner.hits(f"AXIAL {value}"), value
        assert scanner.hits(f"axial {value.lower()} 2"), value
        out = copy.deepcopy(ds)
        out.SeriesDescription = f"AXIAL {value}"
        assert "(0008,103E) SeriesDescription" in scanner.scan_dataset(out), value


def test_institutions_are_redacted_but_not_leak_check_needles():
    ds = make_image(PATIENTS[0], "ACC1", "20240115", "CT", 1, 1)
    scanner = _scanner(ds)
    text = "CT at Springfield General Hospital for Jane Doe"
    assert scanner.hits("CT at Springfield General Hospital") is False
    assert scanner.redact(text) == "CT at [removed] for [removed]"
    assert IdentifierMatcher(scanner.needles, institutions=True).hits(
        "springfield general hospital"
    )
    kept = _scanner(ds, redact_institutions=False)  # Retain Institution Identity
    assert kept.redact(text) == "CT at Springfield General Hospital for [removed]"


def test_raw_bytes_in_several_encodings():
    ds = Dataset()
    ds.PatientName = "MÜLLER^JOSÉ"
    scanner = LeakScanner(collect_needles(ds))
    for data in (
        b"LO\x08\x00" + "Müller".encode(),  # an element's VR, length, value
        b"LO\x06\x00" + "Müller".encode("latin-1"),
        b"JOSE",
    ):
        assert scanner.hits_bytes(data), data
    assert not scanner.hits_bytes(b"\x00\x01LO CT CHEST \xff\xfe")


def test_needles_persist_as_json_and_old_files_still_load():
    ds = _two_dates()
    ds.SpecificCharacterSet = ["", "ISO 2022 IR 87"]
    needles = collect_needles(ds, ["ACC1"])
    again = Needles.from_dict(json.loads(json.dumps(needles.as_dict())))
    assert again == needles
    assert again.charsets == {"iso2022_jp"} and "PatientName" not in json.dumps(again.as_dict())
    old = {"words": ["DOE", "JANE", "MRN-100234"], "dates": ["19970806"], "uids": ["1.2.3.4"]}
    scanner = LeakScanner(Needles.from_dict(old))
    assert scanner.hits("for Jane") and scanner.hits("MRN100234") and scanner.hits("1997-08-06")
    out = Dataset()
    out.ContentDate = "19970806"  # no per-element originals in an old file: any date counts
    assert scanner.scan_dataset(out) == ["(0008,0023) ContentDate"]


def test_hits_name_places_never_values():
    ds = make_image(PATIENTS[0], "ACC1", "20240115", "CT", 1, 1)
    scanner = _scanner(ds)
    places = scanner.scan_dataset(ds) + scanner.scan_mapping({"x": "Jane Doe"}, "row")
    assert places
    blob = " ".join(places).upper()
    for value in ("DOE", "JANE", "MRN-100234", "20240115", "19710304", "SPRINGFIELD"):
        assert value not in blob


def test_archive_name_and_raw_header_dates_do_not_raise_the_false_alarm():
    """The archive check reads the raw header bytes and the archive name, both holding shifted
    dates: only the StudyDate's own original counts there."""
    ds = _two_dates()
    scanner = _scanner(ds)
    out = _shifted(ds, -36)
    out.file_meta = pydicom.dataset.FileMetaDataset()
    out.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    out.file_meta.MediaStorageSOPClassUID = out.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    out.file_meta.MediaStorageSOPInstanceUID = out.SOPInstanceUID = "2.25.1"
    buf = io.BytesIO()
    out.save_as(buf, enforce_file_format=True)
    raw = header_bytes(buf.getvalue())
    assert b"19970806" in raw  # the shifted InstanceCreationDate == original StudyDate
    assert not scanner.hits_bytes(raw)
    name = f"codedpatient01_{out.StudyDate}_codedstudy0001.tar.gz"
    assert not scanner.hits(name, dates="none") and not scanner.date_kept(
        "StudyDate", out.StudyDate
    )
    assert scanner.date_kept("StudyDate", ds.StudyDate)  # an unshifted study date is caught
    assert scanner.hits_bytes(raw + b"LO\x08\x00DOE JANE")


def test_a_name_after_a_length_byte_that_reads_as_a_letter_is_still_bounded():
    """A 200-byte comment's length byte is 0xC8, "È" in Latin-1 (folded to "e"): the
    name right after it must still count as a word of its own."""
    ds = make_image(PATIENTS[0], "ACC1", "20240115", "CT", 1, 1)
    scanner = _scanner(ds)
    assert scanner.hits_bytes(b"LT\xc8\x00" + b"DOE moved".ljust(200, b" "))
    assert scanner.hits_bytes(b"LO\xe9\x00" + b"Jane Doe")


def test_thousands_of_uids_are_looked_up_not_alternated():
    uids = {f"1.2.826.0.1.3680043.8.498.{i}" for i in range(3000)}
    m = IdentifierMatcher(Needles(uids=uids))
    for text in (
        "1.2.826.0.1.3680043.8.498.17",
        "ref 1.2.826.0.1.3680043.8.498.2999.1",
        "9.1.2.826.0.1.3680043.8.498.5",
    ):
        assert m.hits(text), text
    for text in ("1.2.826.0.1.3680043.8.498.3000", "2.25.1234567", "1.2.826.0.1.3680043.8.498"):
        assert not m.hits(text), text
    assert m.redact("uid 1.2.826.0.1.3680043.8.498.17 kept") == "uid [removed] kept"


def test_what_the_options_keep_on_purpose_is_not_searched_for():
    """``kept`` takes annex_e's Profile.kept_needles: Retain UIDs / Full Dates / Institution
    Identity keep those values in the output, so they are not leaks there."""
    ds = make_image(PATIENTS[0], "ACC1", "20240115", "CT", 1, 1)
    needles = collect_needles(ds)
    uid = ds.StudyInstanceUID
    assert LeakScanner(needles).hits(f"ref {uid}")
    scanner = LeakScanner(needles, kept={"uids", "dates", "institutions"})
    assert not scanner.hits(f"ref {uid}") and not scanner.hits("exam of 15.01.2024")
    assert scanner.hits("born 04.03.1971") and scanner.hits("Jane Doe")
    assert scanner.redact("Springfield General Hospital") == "Springfield General Hospital"
    assert needles.uids  # the needles themselves are left as they were


def test_building_the_matcher_stays_cheap():
    """Compiled once per batch step; a Unicode-range word class repeated at every needle made
    this 0.7 s for the sample study (now ~10 ms). Generous bound for a shared machine."""
    import re
    import time

    ds = make_image(PATIENTS[0], "ACC10001", "20240115", "CT", 1, 1)
    needles = collect_needles(ds, ["ACC10001"])
    re.purge()
    start = time.perf_counter()
    scanner = LeakScanner(needles)
    scanner.redact("x")
    assert time.perf_counter() - start < 0.25


def test_values_stored_with_explicit_vr_un_are_needles_too():
    """pydicom's explicit_VR-UN.dcm stores PatientName and StudyDate with VR UN: they must be
    searched for like any other name and date."""
    import pydicom
    from pydicom.data import get_testdata_file

    from sendit_ops.dicom.identifiers import original_dates

    path = get_testdata_file("explicit_VR-UN.dcm")
    ds = pydicom.dcmread(path, force=True, stop_before_pixels=True)
    assert ds._dict[0x00100010].VR == "UN"  # raw, before decoding
    needles = collect_needles(ds)
    name = str(pydicom.dcmread(path, force=True).PatientName)
    assert needles.names == {name} and LeakScanner(needles).hits(f"study of {name}")
    fresh = pydicom.dcmread(path, force=True, stop_before_pixels=True)
    assert original_dates(fresh)["00080020"] == str(fresh.StudyDate)
