"""Each filter rule, on generated images and on real files."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from sendit_ops.core.errors import ConfigError
from sendit_ops.dicom.filters import (
    FilterRules,
    Verdict,
    judge,
    load_filter_recipe,
    resolve_study_deid,
    skip_reason,
)
from sendit_ops.dicom.io import NotDicomError, read_header
from sendit_ops.sample_data import PATIENTS, make_image

pytestmark = pytest.mark.unit

DEFAULT = FilterRules(load_filter_recipe(None))  # pixel_cleaning "off"
OCR = FilterRules(DEFAULT.recipe, pixel_cleaning="ocr")
RECIPE = FilterRules(DEFAULT.recipe, pixel_cleaning="recipe")


def image(**changes):
    ds = make_image(PATIENTS[0], "ACC1", "20240115", changes.pop("modality", "CT"), 1, 1)
    for key, value in changes.items():
        if value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    return ds


def test_plain_ct_is_kept():
    assert skip_reason(image(), DEFAULT) is None


def test_burned_in_annotation_yes_is_skipped_whatever_the_whitelist():
    assert "BurnedInAnnotation" in skip_reason(image(BurnedInAnnotation="YES"), DEFAULT)


def test_modality_allow_list():
    rules = FilterRules(DEFAULT.recipe, modality_allowlist=("CT", "MR"))
    assert skip_reason(image(), rules) is None
    assert skip_reason(image(modality="US"), rules) == "modality US not in the allow list"


def test_image_type_required():
    rules = FilterRules(DEFAULT.recipe, image_type_required=("AXIAL",))
    assert skip_reason(image(), rules) is None
    reason = skip_reason(image(ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"]), rules)
    assert reason == "ImageType lacks AXIAL"


def test_deid_blacklist_rejects_report_data():
    reason = skip_reason(image(ImageType=["DERIVED", "SECONDARY", "REPORTDATA"]), DEFAULT)
    assert reason.startswith("deid blacklist")


RECON = {
    "Manufacturer": None,
    "ImageType": ["ORIGINAL", "PRIMARY", "RECONSTRUCTION"],
    "Modality": "PT",
}


def test_deid_greylist_needs_pixel_cleaning():
    reason = skip_reason(image(**RECON), DEFAULT)
    assert reason.startswith("deid graylist: needs pixel cleaning")


def test_deid_whitelist_keeps_image_marked_clean():
    assert skip_reason(image(**RECON, BurnedInAnnotation="NO"), DEFAULT) is None


def test_study_deid_recipe_by_name_adds_its_rules():
    chest = FilterRules(load_filter_recipe("dicom.xray.chest"))
    xa = image(modality="XA")
    assert skip_reason(xa, chest).startswith("deid blacklist")
    assert len(resolve_study_deid("dicom.xray.chest")) == 2


def test_study_deid_unknown_name_is_a_config_error():
    with pytest.raises(ConfigError, match="neither a file nor a deid recipe name"):
        load_filter_recipe("dicom.no.such.recipe")


def test_study_deid_as_a_path(tmp_path: Path):
    recipe = tmp_path / "deid.site"
    recipe.write_text("FORMAT dicom\n\n%filter blacklist\n\nLABEL No MR\n  contains Modality MR\n")
    rules = FilterRules(load_filter_recipe(str(recipe)))
    assert skip_reason(image(modality="MR"), rules).startswith("deid blacklist")
    assert skip_reason(image(), rules) is None


def test_corrupt_and_non_dicom_files_are_refused(tmp_path: Path):
    good = Path(get_testdata_file("CT_small.dcm"))
    truncated = tmp_path / "cut.dcm"
    truncated.write_bytes(good.read_bytes()[:300])
    text = tmp_path / "notes.txt"
    text.write_text("not an image\n")
    assert read_header(good).Modality == "CT"
    for bad in (truncated, text):
        with pytest.raises(NotDicomError) as err:
            read_header(bad)
        assert "DICOM" in str(err.value)


def test_real_files_from_pydicom_pass_through_the_filter():
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"), stop_before_pixels=True)
    assert judge(ct, DEFAULT) == judge(ct, OCR) == Verdict()
    # MR_small is a DERIVED/SECONDARY reformat: deid's blacklist refuses it in every mode
    mr = pydicom.dcmread(get_testdata_file("MR_small.dcm"), stop_before_pixels=True)
    assert judge(mr, OCR).skip.startswith("deid blacklist")
    us = pydicom.dcmread(get_testdata_file("US1_UNCR.dcm"), stop_before_pixels=True)
    assert judge(us, OCR) == Verdict(pixels="SOP class US may carry burned-in text")
    assert (
        skip_reason(us, DEFAULT) == "SOP class US may carry burned-in text (pixel cleaning is off)"
    )


@pytest.mark.parametrize("rules", [OCR, RECIPE], ids=["ocr", "recipe"])
def test_with_pixel_cleaning_on_text_images_are_kept_and_marked(rules):
    burned = judge(image(modality="US", BurnedInAnnotation="YES"), rules)
    assert burned == Verdict(pixels="BurnedInAnnotation is YES (burned-in text)")
    gray = judge(image(**RECON), rules)
    assert gray.skip is None and gray.pixels.startswith("deid graylist: needs pixel cleaning")
    assert judge(image(modality="US"), rules).pixels == "SOP class US may carry burned-in text"
    assert judge(image(), rules) == Verdict()  # a plain CT: no pixel stage, no OCR cost
    blacklisted = judge(image(ImageType=["DERIVED", "SECONDARY", "REPORTDATA"]), rules)
    assert blacklisted.skip.startswith("deid blacklist") and blacklisted.pixels is None


def test_a_header_flag_never_proves_an_ultrasound_text_free():
    """BurnedInAnnotation NO matches deid's whitelist, yet US pixels still get checked."""
    us_no = image(modality="US", BurnedInAnnotation="NO")
    assert judge(us_no, OCR).pixels == "SOP class US may carry burned-in text"
    assert "pixel cleaning is off" in skip_reason(us_no, DEFAULT)


@pytest.mark.parametrize("modality", ["XC", "ES", "VL", "OT", "US"])
def test_pixel_cleaning_off_refuses_every_image_that_may_carry_text(modality):
    ds = image()
    ds.Modality = modality
    if modality == "US":
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.3.1"  # US multi-frame
    reason = skip_reason(ds, DEFAULT)
    assert reason and reason.endswith("(pixel cleaning is off)")
    assert judge(ds, OCR).skip is None and judge(ds, OCR).pixels


def test_secondary_capture_sop_class_and_odd_burned_in_values():
    sc = image()
    sc.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    assert judge(sc, OCR).pixels == "SOP class SC may carry burned-in text"
    odd = image(BurnedInAnnotation="MAYBE")
    assert judge(odd, OCR).pixels == "BurnedInAnnotation is not NO"
    screen = image(modality="XA", ImageType=["DERIVED", "SECONDARY", "SCREEN SAVE"])
    assert (
        judge(screen, OCR).pixels
        == "ImageType SECONDARY/DERIVED/SCREEN/SAVE may carry burned-in text"
    )


def test_memoized_decisions_equal_deids_own_on_real_files():
    """The memo key (the values of every field the rules name) decides as deid itself does,
    file by file, whatever was judged before (pydicom's and deid-data's files, shuffled)."""
    import random

    from dicom_corpus import DEID_FILES, pydicom_files

    from sendit_ops.dicom.filters import _deid_rules

    rules = FilterRules(load_filter_recipe("dicom.xray.chest"))
    paths = [*pydicom_files(), *DEID_FILES]
    random.Random(7).shuffle(paths)
    decisions = set()
    for path in paths:
        ds = read_header(path)
        memoized = skip_reason(ds, rules)
        if memoized is None or memoized.startswith("deid"):
            own = _deid_rules(read_header(path), rules.recipe)
            assert memoized == own, path.name
            decisions.add(own)
    assert len(decisions) > 1  # the corpus exercises more than one decision
