"""What the pipeline writes itself is not input (issue 23): the leak check does not alarm on
its own method text, code meanings, dummies and placeholders, and still checks every value
that came from the input; Clean Descriptors' attribute setting; one identifier source with
its OCR-tolerant mode."""

from __future__ import annotations

import copy
import json

import pytest

from sendit_ops.core.errors import ConfigError, LeakError
from sendit_ops.core.settings import DEFAULT_DEID_OPTIONS, load_settings
from sendit_ops.dicom.annex_e.profile import CLEAN, REMOVE, compile_profile
from sendit_ops.dicom.anonymize import (
    anonymize_dataset,
    load_profile,
    load_recipe,
    recipe_variables,
    uid_remapper,
)
from sendit_ops.dicom.identifiers import collect_needles, ocr_matcher
from sendit_ops.dicom.leak_scan import LeakScanner
from sendit_ops.pseudonyms.providers import Pseudonym
from sendit_ops.sample_data import Patient, make_image

pytestmark = pytest.mark.unit

RECIPE = load_recipe(None)
PSEUDO = Pseudonym("codedpatient01", "codedstudy0001", -21)
DEFAULT = load_profile(DEFAULT_DEID_OPTIONS)


def _image(name: str, **values):
    ds = make_image(Patient(name, "MRN-4242", "19700101"), "ACC1", "20240115", "CT", 1, 1)
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def _anonymize(ds, scanner=None, profile=DEFAULT, clean="study"):
    scanner = scanner or LeakScanner(collect_needles(copy.deepcopy(ds)), kept=profile.kept_needles)
    variables = recipe_variables(PSEUDO, uid_remapper(b"k" * 32))
    cleaner = scanner.descriptors if clean == "study" else clean
    return anonymize_dataset(ds, RECIPE, variables, scanner, profile, clean=cleaner), scanner


@pytest.mark.parametrize(
    "name", ["BASIC^TABITHA", "CLEAN^ANNA", "DATES^PETER", "OPTION^ZOE", "PATIENT^NAME",
             "ANONYMIZED^YES", "MODIFIED^LONGITUDINAL", "Retain^Characteristics"],
)  # fmt: skip
def test_the_pipelines_own_words_do_not_stop_a_patient_of_that_name(name):
    out, scanner = _anonymize(_image(name, StudyDescription=f"CT CHEST for {name.split('^')[0]}"))
    assert out.StudyDescription == "CT CHEST for [name]"
    meanings = [c.CodeMeaning for c in out.DeidentificationMethodCodeSequence]
    assert "Basic Application Confidentiality Profile" in meanings
    # the archive step sees only bytes and rows: the written values are exempt there too
    assert "Basic Application Confidentiality Profile" in scanner.written_values
    raw = b"\x00LO" + " ".join(meanings).encode() + b"\x00"
    assert not scanner.hits_bytes(raw)
    row = {"DicomHeader": json.dumps({"DeidentificationMethod": out.DeidentificationMethod})}
    assert scanner.scan_mapping(row, "row") == []


def test_a_value_from_the_input_is_still_checked_in_the_same_element():
    """An earlier de-identification's method text came with the input: it is checked, while
    sendit's own value appended next to it is not."""
    ds = _image("OPTION^ZOE", DeidentificationMethod="scrubbed for OPTION Zoe by hand")
    with pytest.raises(LeakError) as err:
        _anonymize(ds)
    assert "DeidentificationMethod" in str(err.value) and "ZOE" not in str(err.value).upper()


def test_input_words_around_a_placeholder_are_checked_one_by_one():
    """A cleaner that misses the name is caught; the placeholders a cleaner wrote are not
    what is checked."""
    ds = _image("BASIC^TABITHA", StudyDescription="CT CHEST for Basic")
    with pytest.raises(LeakError):
        _anonymize(ds, clean=lambda text: text)


def test_raw_bytes_still_hold_an_input_name_next_to_the_written_values():
    scanner = LeakScanner(collect_needles(_image("BASIC^TABITHA")))
    scanner.written_values.update({"Basic Application Confidentiality Profile", "[name]"})
    assert not scanner.hits_bytes(b"LO(Basic Application Confidentiality Profile [name]")
    assert scanner.hits_bytes(b"LO(Basic Application Confidentiality Profile BASIC^TABITHA")
    assert scanner.hits_bytes(b"LO\x0eTabitha Basic\x00")


def test_comments_are_removed_unless_listed_and_descriptions_cleaned():
    ds = _image(
        "DOE^JANE",
        StudyDescription="CT CHEST WITH CONTRAST per Dr. Helen Okafor, call 555-0142",
        ImageComments="Neighbour Quentin Zabriskie called about the results",
    )
    out, _ = _anonymize(ds, profile=load_profile(DEFAULT_DEID_OPTIONS, ("StudyDescription",)))
    assert out.StudyDescription == "CT CHEST WITH CONTRAST per Dr. [name], call [phone]"
    assert "ImageComments" not in out
    ds = _image("DOE^JANE", ImageComments="Neighbour Quentin Zabriskie called about the results")
    out, _ = _anonymize(ds, profile=load_profile(DEFAULT_DEID_OPTIONS, ("all",)))
    assert out.ImageComments == "Neighbour [name] called about the results"


def test_the_attribute_setting_is_validated():
    assert load_settings({"clean_descriptor_attributes": "StudyDescription, ImageComments"})
    with pytest.raises(ConfigError, match="clean_descriptor_attributes"):
        load_settings({"clean_descriptor_attributes": ["study description"]})
    with pytest.raises(ConfigError, match="PatientName"):
        compile_profile(DEFAULT_DEID_OPTIONS, ("PatientName",))
    with pytest.raises(ConfigError, match="not DICOM keywords"):
        compile_profile(DEFAULT_DEID_OPTIONS, ("StudyDescriptio",))
    profile = compile_profile(DEFAULT_DEID_OPTIONS, ("StudyDescription",))
    assert profile.rules[0x00081030] == CLEAN and profile.rules[0x00204000] == REMOVE
    assert profile.describe()["clean_descriptor_attributes"] == ["StudyDescription"]
    assert compile_profile(DEFAULT_DEID_OPTIONS, ("all",)).rules[0x00204000] == CLEAN


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (DEFAULT_DEID_OPTIONS, "CT, compare 2019-02-21"),  # shifted by the jitter (-21 days)
        (("clean_descriptors",), "CT, compare [date]"),  # dates removed
        (("clean_descriptors", "retain_longitudinal_full_dates"), "CT, compare 14.03.2019"),
    ],
)
def test_dates_in_descriptions_follow_the_header_dates(options, expected):
    ds = _image("DOE^JANE", StudyDescription="CT, compare 14.03.2019")
    out, _ = _anonymize(ds, profile=load_profile(options))
    assert out.StudyDescription == expected


def test_the_ocr_mode_reads_the_same_needles_as_ocr_prints_them():
    ds = _image("DOE^JANE^Q", InstitutionName="Springfield General", StationName="USROOM4")
    match = ocr_matcher(collect_needles(ds))
    assert (match("DOE JANE") and match("D0E") is False) or match("JANE")
    assert match("MRN-4242") and match("MRN 4242")
    assert match("15-JAN-2024") and match("01/15/24")  # the study date, printed
    assert match("USR00M4")  # a station name, O read as 0
    assert match("SPRINGFIELD")
    assert not match("TIS 0.4 MI 1.1")


def test_written_numbers_are_never_blanked_out_of_bytes_or_rows():
    """The dummies 0, 000000, 19000101 are written too; ids and dates of the input are digits,
    so only written words (and written YYYY-MM-DD dates) are blanked."""
    scanner = LeakScanner(collect_needles(_image("DOE^JANE")))
    scanner.written_values.update({"0", "000000", "19000101", "ANONYMIZED"})
    assert scanner.hits_bytes(b"LO\x0aMRN-4242 ANONYMIZED")
    assert scanner.scan_mapping({"StudyDescription": "prior MRN-4242"}, "row")
