"""The shipped recipe on real DICOM (pydicom's test files and deid-data)."""

from __future__ import annotations

import copy
from pathlib import Path

import pydicom
import pytest
from dicom_corpus import DEID_FILES, pydicom_files

from sendit_ops.core.errors import LeakError
from sendit_ops.dicom.anonymize import (
    anonymize_dataset,
    load_recipe,
    recipe_variables,
    uid_remapper,
)
from sendit_ops.dicom.identifiers import STANDARD_UID_ROOT, collect_needles
from sendit_ops.dicom.leak_scan import LeakScanner
from sendit_ops.pseudonyms.providers import Pseudonym

pytestmark = pytest.mark.unit

RECIPE = load_recipe(None)
PSEUDO = Pseudonym("codedpatient01", "codedstudy0001", -21)
FILES = [*DEID_FILES, *pydicom_files()]


def anonymized(path: Path, key: bytes = b"k" * 32):
    original = pydicom.dcmread(path, force=True)
    ds = pydicom.dcmread(path, force=True)
    scanner = LeakScanner(collect_needles(original))
    out = anonymize_dataset(ds, RECIPE, recipe_variables(PSEUDO, uid_remapper(key)), scanner)
    return original, out


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.parent.name + "/" + p.name)
def test_recipe_removes_identifiers_and_passes_the_leak_check(path: Path):
    original, out = anonymized(path)
    if "PatientID" in original:
        assert out.PatientID == "codedpatient01"
    if "AccessionNumber" in original:
        assert out.AccessionNumber == "codedstudy0001"
    assert str(out.get("PatientIdentityRemoved")) == "YES"
    assert not any(e.tag.is_private for e in out.iterall())
    assert out.preamble == b"\0" * 128
    # Annex E: person names are removed, emptied (Type 2: ReferringPhysicianName) or dummied
    for elem in out.iterall():
        if elem.VR == "PN" and elem.keyword != "PatientName":
            assert str(elem.value or "") in ("", "ANONYMIZED"), elem.keyword
    assert str(out.get("ReferringPhysicianName", "") or "") == ""
    assert str(out.get("InstitutionName", "") or "") in ("", "ANONYMIZED")
    for keyword in ("OtherPatientIDs", "PatientAddress", "ImageComments"):
        assert keyword not in out
    # UIDs: non-standard ones replaced, standard ones (SOP class) kept
    assert out.SOPClassUID == original.SOPClassUID
    assert out.SOPInstanceUID != original.SOPInstanceUID
    assert out.SOPInstanceUID.startswith("2.25.")
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
    # the pixels are untouched
    assert out.PixelData == original.PixelData


@pytest.mark.parametrize("path", FILES[:12], ids=lambda p: p.name)
def test_dates_are_shifted_by_the_jitter(path: Path):
    from datetime import date, timedelta

    original, out = anonymized(path)
    for keyword in (
        "StudyDate",
        "SeriesDate",
        "AcquisitionDate",
        "ContentDate",
    ):
        value = str(original.get(keyword) or "")
        if len(value) == 8 and value.isdigit():
            expected = date(int(value[:4]), int(value[4:6]), int(value[6:])) + timedelta(-21)
            assert out.get(keyword) == expected.strftime("%Y%m%d"), keyword
    # Annex E: the birth date is emptied (Z) under every option; the age may be kept
    assert str(out.get("PatientBirthDate", "") or "") == ""


def test_uid_remapping_is_consistent_across_files_of_a_study():
    files = sorted((DEID_FILES[0].parent).glob("*.dcm"))
    outs = [anonymized(p)[1] for p in files]
    originals = [pydicom.dcmread(p) for p in files]
    pairs = zip(originals, outs, strict=True)
    study_map = {(o.StudyInstanceUID, a.StudyInstanceUID) for o, a in pairs}
    assert len({o for o, _ in study_map}) == len({a for _, a in study_map})  # a bijection
    again = anonymized(files[0])[1]
    assert again.SOPInstanceUID == outs[0].SOPInstanceUID  # stable for the same key
    other_key = anonymized(files[0], key=b"z" * 32)[1]
    assert other_key.SOPInstanceUID != outs[0].SOPInstanceUID


def test_references_inside_sequences_follow_the_remapping():
    from sendit_ops.sample_data import PATIENTS, make_image

    ds = make_image(PATIENTS[0], "ACC1", "20240115", "CT", 1, 1)
    ref_uid = ds.ReferencedPerformedProcedureStepSequence[0].ReferencedSOPInstanceUID
    remap = uid_remapper(b"k" * 32)
    out = anonymize_dataset(
        ds, RECIPE, recipe_variables(PSEUDO, remap), LeakScanner(collect_needles(copy.deepcopy(ds)))
    )
    ref = out.ReferencedPerformedProcedureStepSequence[0]
    assert ref.ReferencedSOPInstanceUID == remap(ref_uid)
    assert ref.ReferencedSOPClassUID.startswith(STANDARD_UID_ROOT)
    assert "RequestAttributesSequence" not in out


def test_a_value_the_recipe_misses_stops_the_image():
    from sendit_ops.sample_data import PATIENTS, make_image

    ds = make_image(PATIENTS[0], "ACC1", "20240115", "CT", 1, 1)
    ds.StudyDescription = "CT CHEST for DOE"  # a name typed into free text that is kept
    with pytest.raises(LeakError) as err:
        anonymize_dataset(
            ds,
            RECIPE,
            recipe_variables(PSEUDO, uid_remapper(b"k" * 32)),
            LeakScanner(collect_needles(copy.deepcopy(ds))),
            clean=lambda text: text,  # Clean Descriptors with a cleaner that misses the name
        )
    assert "StudyDescription" in str(err.value)
    assert "DOE" not in str(err.value)


def test_deid_does_not_keep_datasets_alive():
    """deid caches parsed fields per dataset without bound; sendit releases that cache so
    memory does not grow with the number of files."""
    import gc
    import weakref

    from sendit_ops.sample_data import PATIENTS, make_image

    ds = make_image(PATIENTS[0], "ACC1", "20240115", "CT", 1, 1)
    out = anonymize_dataset(
        ds,
        RECIPE,
        recipe_variables(PSEUDO, uid_remapper(b"k" * 32)),
        LeakScanner(collect_needles(copy.deepcopy(ds))),
    )
    ref = weakref.ref(out)
    del ds, out
    gc.collect()
    assert ref() is None


LOG_CASE = """
import copy
from sendit_ops.dicom.anonymize import (
    anonymize_dataset, load_recipe, recipe_variables, uid_remapper
)
from sendit_ops.sample_data import PATIENTS, make_image
from sendit_ops.core.errors import LeakError
from sendit_ops.dicom.identifiers import collect_needles
from sendit_ops.pseudonyms.providers import Pseudonym
from sendit_ops.dicom.leak_scan import LeakScanner
ds = make_image(PATIENTS[0], "ACC1", "20240115", "CT", 1, 1)
variables = recipe_variables(Pseudonym("p", "s", -3), uid_remapper(b"k" * 32))
del variables["jitter"]  # e.g. a provider answer without a jitter
try:
    anonymize_dataset(ds, load_recipe(None), variables,
                      LeakScanner(collect_needles(copy.deepcopy(ds))))
except LeakError:
    print("stopped by the leak check")
"""


def test_deid_messages_with_header_values_never_reach_the_log():
    """When deid cannot jitter a date it prints the element with its value (to the task log,
    in a task); sendit silences deid's logger, and its leak check stops the image instead.
    A fresh process, because deid binds stdout/stderr when it is imported."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", LOG_CASE], capture_output=True, text=True, timeout=120
    )
    assert "stopped by the leak check" in done.stdout
    out = done.stdout + done.stderr
    assert "20240115" not in out and "JITTER" not in out


def test_private_tags_are_removed_at_every_level_as_pydicom_does():
    """sendit's remove_private_tags gives what pydicom's Dataset.remove_private_tags gives,
    on every test file and on a header with private blocks inside sequence items."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    from sendit_ops.dicom.io import remove_private_tags

    nested = Dataset()
    nested.PatientID = "X"
    item = Dataset()
    item.ReferencedSOPInstanceUID = "1.2.3"
    item.add_new(0x00090010, "LO", "ACME")
    item.add_new(0x00091001, "LO", "secret inside a sequence")
    nested.ReferencedImageSequence = Sequence([item])
    nested.add_new(0x00110010, "LO", "ACME")
    nested.add_new(0x00111001, "LO", "secret at the top")
    datasets = [pydicom.dcmread(p, force=True) for p in FILES] + [nested]
    with_private = 0
    for ds in datasets:
        ours, theirs = copy.deepcopy(ds), copy.deepcopy(ds)
        with_private += any(e.tag.is_private for e in ds.iterall())
        remove_private_tags(ours)
        theirs.remove_private_tags()
        assert not any(e.tag.is_private for e in ours.iterall())
        assert [(e.tag, e.VR, e.value) for e in ours.iterall()] == [
            (e.tag, e.VR, e.value) for e in theirs.iterall()
        ]
    assert with_private >= 5


def test_fast_jitter_dates_equal_deids_own():
    """fast_get_timestamp gives what deid's get_timestamp gives (value or exception), for
    calendar dates over three centuries, month/day edges and values that are not dates."""
    from datetime import date, timedelta

    from sendit_ops.dicom.deid_patches import _original_get_timestamp, fast_get_timestamp

    values = [
        (date(1880, 1, 1) + timedelta(days=d)).strftime("%Y%m%d") for d in range(0, 80000, 29)
    ]
    values += ["20240229", "20230229", "20241301", "20240001", "20240132", "00000101", "00010101"]
    values += [
        "99991231",
        "2024011",
        "2024-01-15",
        "20240115 ",
        "\uff12\uff10\uff12\uff14\uff10\uff11\uff11\uff15",
        "",
        "abcdefgh",
    ]
    checked = 0
    for value in values:
        for jitter in (-3650, -1, 0, 31, "12", None):
            outcomes = []
            for fn in (_original_get_timestamp, fast_get_timestamp):
                try:
                    outcomes.append(fn(value, jitter_days=jitter, format="%Y%m%d"))
                except Exception as exc:  # both must fail the same way
                    outcomes.append(type(exc))
            assert outcomes[0] == outcomes[1], (value, jitter)
            checked += 1
    assert checked > 16000
