"""The pieces of the batch steps that need no DICOM: the anonymize step's decision on held
images (a pure function) and the work-file records one step hands the next."""

from __future__ import annotations

import json

import pytest

from sendit_ops.core.lifecycle import State
from sendit_ops.dicom.identifiers import Needles
from sendit_ops.pipeline.steps.anonymize import REJECT, RELEASE, held_verdict
from sendit_ops.pipeline.study_scan import AcceptedImage
from sendit_ops.pipeline.work_files import BatchFiles, FilteredStudy, HeaderSummary
from sendit_ops.pseudonyms.providers import Pseudonym, StudyIdentity

pytestmark = pytest.mark.unit


# ---- held_verdict: what a batch does with its held images ----------------------------------


def test_nothing_held_goes_on_to_package():
    verdict = held_verdict(held=0, delivered=5, decision=None, pixel_hold="study")
    assert verdict.state is None and not verdict.reason and not verdict.warning


def test_a_held_image_holds_the_study_until_a_reviewer_decides():
    verdict = held_verdict(held=2, delivered=3, decision=None, pixel_hold="study")
    assert verdict.state == State.HELD
    assert verdict.reason.startswith("2 image(s) held for review")


def test_with_pixel_hold_image_the_study_goes_without_its_held_images():
    verdict = held_verdict(held=1, delivered=3, decision=None, pixel_hold="image")
    assert verdict.state is None
    assert verdict.warning == "1 image(s) held for review, delivered without them"


def test_a_rejected_study_goes_without_the_rejected_images():
    verdict = held_verdict(held=1, delivered=3, decision=REJECT, pixel_hold="study")
    assert verdict.state is None
    assert verdict.warning == "1 image(s) rejected by a reviewer, delivered without them"


@pytest.mark.parametrize(
    ("decision", "pixel_hold", "who"),
    [(REJECT, "study", "rejected by a reviewer"), (None, "image", "held back")],
)
def test_a_study_left_with_no_image_is_empty(decision, pixel_hold, who):
    verdict = held_verdict(held=3, delivered=0, decision=decision, pixel_hold=pixel_hold)
    assert verdict.state == State.EMPTY
    assert verdict.reason == f"every image was {who} (burned-in text)"


def test_a_release_does_not_hold_again():
    # released images come back cleaned (not held); any still held leave without a hold
    verdict = held_verdict(held=1, delivered=2, decision=RELEASE, pixel_hold="study")
    assert verdict.state is None and "held for review" in verdict.warning


def test_an_empty_batch_is_empty_even_with_nothing_held():
    verdict = held_verdict(held=0, delivered=0, decision=None, pixel_hold="study")
    assert verdict.state == State.EMPTY


# ---- work files: typed records, the formats of earlier releases ----------------------------


def _study() -> FilteredStudy:
    needles = Needles(words={"ACC1", "MRN7"}, dates={"20240101"}, names={"DOE^JANE"})
    needles.element_dates["00080020"] = {"20240101"}
    identity = StudyIdentity("MRN7", "ACC1", entity_timestamp="1970-01-01T00:00:00")
    return FilteredStudy(identity, needles)


def test_the_records_round_trip(tmp_path):
    files = BatchFiles(tmp_path)
    images = [AcceptedImage("/in/a/1.dcm", "1", "2", "2024-01-01T10:00:00", None, "us")]
    files.write_filtered(images, _study())
    assert files.read_images() == images
    assert files.read_study() == _study()
    pseudonym = Pseudonym("e" * 16, "i" * 16, -12, None)
    files.write_pseudonym(pseudonym)
    assert files.read_pseudonym() == pseudonym
    header = HeaderSummary("20231220", {"Modality": "CT"}, frozenset({"ORIGINAL"}), frozenset())
    files.write_header(header)
    assert files.read_header() == header
    files.archive.mkdir()
    files.write_row({"CodedPatientID": "e" * 16})
    assert files.read_row() == {"CodedPatientID": "e" * 16}


def test_the_file_formats_are_those_earlier_releases_wrote(tmp_path):
    """A batch left half way by an older version resumes: same names, same keys."""
    files = BatchFiles(tmp_path)
    files.write_filtered([], _study())
    written = json.loads((tmp_path / "identifiers.json").read_text())
    assert set(written) == {"identity", "needles"}
    assert written["identity"]["entity_id"] == "MRN7"
    assert written["needles"]["names"] == ["DOE^JANE"]
    # header.json of a release before the two lists: they read as empty
    (tmp_path / "header.json").write_text(json.dumps({"study_date": "2024", "shared": {}}))
    assert files.read_header() == HeaderSummary("2024", {}, frozenset(), frozenset())


def test_identifier_lists_are_deleted_in_one_place(tmp_path):
    files = BatchFiles(tmp_path)
    files.write_filtered([], _study())
    files.write_pseudonym(Pseudonym("e", "i", 0))
    files.anonymized.mkdir()
    files.drop_identifiers()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["anonymized", "pseudonym.json"]
    files.drop_copies()
    assert [p.name for p in tmp_path.iterdir()] == ["pseudonym.json"]


# ---- name_leaks: an original value in a name is reported without the value ----------------


def test_a_member_name_holding_an_original_value_is_named_by_position_not_by_value():
    from pathlib import Path

    from sendit_ops.dicom.leak_scan import LeakScanner
    from sendit_ops.pipeline.steps.package import PackagePlan, name_leaks

    scanner = LeakScanner(Needles(words={"ACC987654"}))
    plan = PackagePlan(
        name="e1_20240101_i1.tar.gz",
        members=[("i1/1_1.dcm", Path("a")), ("i1/ACC987654.dcm", Path("b"))],
        row={},
    )
    header = HeaderSummary(study_date="", shared={}, defined_terms=frozenset(), written=frozenset())
    leaks = name_leaks(scanner, plan, header)
    assert leaks == ["member name 2 of 2"]
    assert not any("ACC987654" in leak for leak in leaks)
