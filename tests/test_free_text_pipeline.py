"""Clean Descriptors end to end (issue 23): free text loses other people's names, addresses,
phones, ids and dates; the leak check no longer stops patients whose names are words the
pipeline writes itself (BASIC, CLEAN, DATES, OPTION, PATIENT, NAME)."""

from __future__ import annotations

import shutil
import tarfile
from datetime import date, timedelta
from pathlib import Path

import pydicom
import pytest
from conftest import run_in_process
from pydicom.data import get_testdata_file

from sendit_ops.sample_data import Patient, make_image

pytestmark = pytest.mark.emulator  # whole studies through the pipeline


def _study(folder: Path, patient: Patient, charset: str = "ISO_IR 100", **values: str) -> None:
    folder.mkdir(parents=True)
    for n in (1, 2):
        ds = make_image(patient, folder.name, "20240115", "CT", 1, n)
        ds.SpecificCharacterSet = charset
        for keyword, value in values.items():
            setattr(ds, keyword, value)
        ds.save_as(folder / f"{n}.dcm", enforce_file_format=True)


def _delivered(outbox: Path, accession_folder: str | None = None) -> list[pydicom.Dataset]:
    out = []
    for archive in sorted(outbox.rglob("*.tar.gz")):
        with tarfile.open(archive) as tar:
            out += [pydicom.dcmread(tar.extractfile(m)) for m in tar if m.isfile()]
    return out


@pytest.mark.parametrize(
    "name", ["Basic^Tabitha", "BAŠIĆ^MARKO", "CLEAN^ANNA", "DATES^PETER", "OPTION^ZOE",
             "PATIENT^CHARACTERISTICS", "ANONYMIZED^YES"],
)  # fmt: skip
def test_patients_named_like_the_pipelines_own_words_are_delivered(name, tmp_path, make_pipeline):
    _study(tmp_path / "in" / "ACC1", Patient(name, "MRN-555001", "19700101"), "ISO_IR 192")
    pipe = make_pipeline()
    record = run_in_process(pipe, tmp_path / "in")["ACC1"]
    assert record.state == "DONE", record.reasons
    for ds in _delivered(Path(pipe.settings.outbox)):
        assert str(ds.PatientName) != name  # replaced (the pseudonym)
        meanings = " ".join(c.CodeMeaning for c in ds.DeidentificationMethodCodeSequence)
        assert "Basic Application Confidentiality Profile" in meanings  # the words are there


def test_the_ultrasound_of_name_patient_name_is_delivered(tmp_path, make_pipeline):
    """pydicom-data's gdcm-US-ALOKA-16.dcm, as is: patient NAME^PATIENT^NAME."""
    (tmp_path / "in" / "US1").mkdir(parents=True)
    shutil.copy(get_testdata_file("gdcm-US-ALOKA-16.dcm"), tmp_path / "in" / "US1" / "1.dcm")
    assert (
        str(pydicom.dcmread(tmp_path / "in" / "US1" / "1.dcm").PatientName) == "NAME^PATIENT^NAME"
    )
    pipe = make_pipeline()
    record = run_in_process(pipe, tmp_path / "in")["US1"]
    assert record.state == "DONE", record.reasons
    (ds,) = _delivered(Path(pipe.settings.outbox))
    assert "NAME" not in str(ds.PatientName).upper()


ISSUE_TEXT = {
    "PatientComments": "Neighbour Quentin Zabriskie, 12 Elm Street, tel 555-0142, found her "
    "on the floor after a fall, unable to stand",
    "StudyComments": "Second opinion Dr. Xavier Outsider, St. Elsewhere Clinic",
    "PerformedProcedureStepDescription": "MRN 7781234 prior at other site",
}
FORBIDDEN = ("Quentin", "Zabriskie", "Elm", "0142", "Xavier", "Outsider", "Elsewhere", "7781234")


def test_other_peoples_information_leaves_the_kept_descriptions(tmp_path, make_pipeline):
    _study(tmp_path / "in" / "ACC2", Patient("DOE^JANE", "MRN-555002", "19700101"), **ISSUE_TEXT)
    # the site opts in to comments (by default they are removed)
    pipe = make_pipeline(clean_descriptor_attributes=["all"])
    record = run_in_process(pipe, tmp_path / "in")["ACC2"]
    assert record.state == "DONE", record.reasons
    for ds in _delivered(Path(pipe.settings.outbox)):
        kept = " | ".join(str(ds.get(k, "")) for k in ISSUE_TEXT)
        assert not [w for w in FORBIDDEN if w in kept], kept
        assert ds.PatientComments.startswith("Neighbour [name], [address], tel [phone], found")
        assert ds.StudyComments == ""  # mostly placeholders: removed
        assert ds.PerformedProcedureStepDescription == "MRN [id] prior at other site"


def test_comments_are_removed_by_default_and_descriptions_kept(tmp_path, make_pipeline):
    _study(tmp_path / "in" / "ACC3", Patient("DOE^JANE", "MRN-555003", "19700101"),
           StudyDescription="CT CHEST per Dr. Helen Okafor", **ISSUE_TEXT)  # fmt: skip
    pipe = make_pipeline()
    assert run_in_process(pipe, tmp_path / "in")["ACC3"].state == "DONE"
    for ds in _delivered(Path(pipe.settings.outbox)):
        assert str(ds.StudyDescription) == "CT CHEST per Dr. [name]"
        assert "PatientComments" not in ds and "StudyComments" not in ds
        assert ds.PerformedProcedureStepDescription == "MRN [id] prior at other site"


def test_dates_in_free_text_are_shifted_like_the_header(tmp_path, make_pipeline):
    _study(tmp_path / "in" / "ACC4", Patient("DOE^JANE", "MRN-555004", "19700101"),
           StudyDescription="CT CHEST, compare 14.03.2019")  # fmt: skip
    pipe = make_pipeline()
    assert run_in_process(pipe, tmp_path / "in")["ACC4"].state == "DONE"
    for ds in _delivered(Path(pipe.settings.outbox)):
        shift = date(int(ds.StudyDate[:4]), int(ds.StudyDate[4:6]), int(ds.StudyDate[6:])) - date(
            2024, 1, 15
        )
        expected = (date(2019, 3, 14) + timedelta(days=shift.days)).isoformat()
        assert str(ds.StudyDescription) == f"CT CHEST, compare {expected}"
