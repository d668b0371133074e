"""De-identification end to end (issues 15 and 16): names written other ways are cleaned
from kept free text instead of blocking the study, in every script; DICOM defined terms and
keywords equal to a name part do not stop a batch; what leaves is checked byte by byte."""

from __future__ import annotations

import shutil
import tarfile
import unicodedata
from pathlib import Path

import pydicom
import pytest
from conftest import run_in_process
from pydicom.data import get_testdata_file

from sendit_ops.sample_data import Patient, make_image

pytestmark = pytest.mark.emulator  # whole studies through the pipeline (or OCR on real images)


def _study(folder: Path, patient: Patient, charset: str, **values: str) -> None:
    folder.mkdir(parents=True)
    for n in (1, 2):
        ds = make_image(patient, "ACC777", "20240115", "CT", 1, n)
        ds.SpecificCharacterSet = charset
        for keyword, value in values.items():
            setattr(ds, keyword, value)
        ds.save_as(folder / f"{n}.dcm", enforce_file_format=True)


def _delivered(outbox: Path) -> list[pydicom.Dataset]:
    out = []
    for archive in outbox.rglob("*.tar.gz"):
        with tarfile.open(archive) as tar:
            out += [pydicom.dcmread(tar.extractfile(m)) for m in tar if m.isfile()]
    return out


def _folded(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


CASES = {
    # name as written in the header, charset, free text written another way, forms to find
    "latin1": (
        "MÜLLER^JOSÉ",
        "ISO_IR 100",
        {"StudyDescription": "CT CHEST for Jose Muller", "ImageComments": "pt MUELLER, josé"},
        ("muller", "mueller", "jose"),
    ),
    "utf8": (
        "MÜLLER^JOSÉ",
        "ISO_IR 192",
        # (long enough that the cleaned value is not mostly placeholders, which is removed)
        {"StudyDescription": "jose muller chest CT", "SeriesDescription": "Müller axial 5 mm"},
        ("muller", "jose"),
    ),
    "japanese": (
        "Yamada^Tarou=山田^太郎=やまだ^たろう",
        "\\ISO 2022 IR 87",
        {"StudyDescription": "山田 CT", "ImageComments": "たろう やまだ 胸部"},
        ("山田", "たろう", "やまだ", "yamada"),
    ),
    "japanese_utf8": (
        "Yamada^Tarou=山田^太郎=やまだ^たろう",
        "ISO_IR 192",
        {"StudyDescription": "山田太郎 胸部CT", "SeriesDescription": "yamada tarou"},
        ("山田", "太郎", "yamada", "tarou"),
    ),
    "korean": (
        "Hong^Gildong=洪^吉洞=홍^길동",
        "\\ISO 2022 IR 149",
        {"StudyDescription": "홍길동 흉부 CT", "ImageComments": "GILDONG HONG"},
        ("홍길동", "gildong"),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_name_written_otherwise_is_cleaned_and_the_study_delivered(case, tmp_path, make_pipeline):
    name, charset, text, forms = CASES[case]
    _study(tmp_path / "in" / "ACC777", Patient(name, "MRN-777001", "19700101"), charset, **text)
    pipe = make_pipeline()
    record = run_in_process(pipe, tmp_path / "in")["ACC777"]
    assert record.state == "DONE", record.reasons
    images = _delivered(Path(pipe.settings.outbox))
    assert len(images) == 2
    for ds in images:
        kept = " ".join(str(ds.get(k, "")) for k in text)
        assert "[name]" in kept, kept  # the study's own name, as a typed placeholder
        for form in forms:
            assert _folded(form) not in _folded(kept), (form, kept)
        assert "113105" in [c.CodeValue for c in ds.DeidentificationMethodCodeSequence]


def test_a_name_equal_to_a_defined_term_or_keyword_does_not_stop_the_study(tmp_path, make_pipeline):
    """pydicom's eCT_Supplemental.dcm belongs to 'Perfusion^MCA Stroke' and its ImageType
    holds the defined term PERFUSION; a patient named PATIENTNAME meets the row's JSON keys."""
    (tmp_path / "in" / "P1").mkdir(parents=True)
    shutil.copy(get_testdata_file("eCT_Supplemental.dcm"), tmp_path / "in" / "P1" / "1.dcm")
    _study(tmp_path / "in" / "P2", Patient("PATIENTNAME^STUDYDESCRIPTION", "ID77", "19700101"),
           "ISO_IR 100")  # fmt: skip
    pipe = make_pipeline()
    records = run_in_process(pipe, tmp_path / "in")
    assert {k: r.state for k, r in records.items()} == {"P1": "DONE", "P2": "DONE"}, {
        k: r.reasons for k, r in records.items()
    }
