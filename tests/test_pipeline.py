"""The batch pipeline in-process: states and reasons, determinism, hand-off, leaks, outbox."""

from __future__ import annotations

import os
import tarfile
import warnings
from pathlib import Path

import pydicom
import pytest
from conftest import PHI_STRINGS, SECRET, run_in_process

from sendit_ops.core.discovery import find_batches, is_in_progress, select_batches
from sendit_ops.delivery import outbox as box
from sendit_ops.sample_data import PATIENTS, write_study

pytestmark = pytest.mark.emulator  # whole studies through the pipeline (or OCR on real images)


def outbox_files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted((root / "Collection").rglob("*.tar.gz"))
    }


def test_demo_batches_end_in_the_right_states_with_reasons(demo_input, make_pipeline):
    pipe = make_pipeline()
    records = run_in_process(pipe, demo_input)
    states = {name: r.state for name, r in records.items()}
    assert states == {
        "ACC10001": "DONE",
        "ACC10002": "DONE",
        "ACC10003": "ERROR",
        "ACC10004": "DONE",
        "ACC10005": "EMPTY",
        "ACC10006": "ERROR",
        "ACC10007": "ERROR",
        "ACC10009": "DONE",
        "ACC10010": "HELD",
    }
    assert "ACC10008.tmp" not in records
    # flagged BurnedInAnnotation YES without text (ACC10004): read whole, nothing masked;
    # unflagged text in ultrasound (ACC10009) and in a CT localizer (ACC10001): masked,
    # verified, delivered; every image was screened
    for name, masked in (("ACC10004", 0), ("ACC10009", 2), ("ACC10001", 1)):
        assert records[name].metrics["images_pixel_cleaned"] == masked, name
        assert len(records[name].outputs.masked) == masked, name
        assert records[name].outputs.held == []
        m = records[name].metrics
        assert m["images_pixel_screened"] == m["images_accepted"], name
    (localizer,) = records["ACC10001"].outputs.masked
    assert 0 < localizer["masked_share"] < 0.1 and localizer["boxes"]
    # a screen full of text: masking it would cover more than pixel_mask_max_share (10 %)
    (screen,) = records["ACC10010"].outputs.held
    assert "more than pixel_mask_max_share" in screen["held_reason"] and screen["thumbnail"]
    assert screen["masked_share"] > 0.1 and records["ACC10010"].outputs.files == []
    assert records["ACC10005"].reasons == ["the batch folder has no files"]
    assert records["ACC10006"].reasons == ["filter: images have 2 different study dates"]
    assert "AccessionNumber" in records["ACC10007"].reasons[0]
    # a study with a corrupt file is not delivered incomplete; the non-DICOM file is noted
    assert "cannot be delivered" in records["ACC10003"].reasons[0]
    assert "not a DICOM file" in " ".join(records["ACC10003"].warnings)
    m = records["ACC10001"].metrics
    assert (m["images_found"], m["images_accepted"], m["series"]) == (7, 7, 3)
    assert set(records["ACC10001"].times) >= {
        "filter",
        "pseudonymize",
        "anonymize",
        "package",
        "deliver",
    }


def test_outbox_layout_rows_and_no_phi_anywhere(demo_input, make_pipeline, tmp_path):
    pipe = make_pipeline()
    run_in_process(pipe, demo_input)
    outbox = Path(pipe.settings.outbox)
    archives = outbox_files(outbox)
    assert len(archives) == 4
    rows = box.read_rows(box.table_path(outbox, "DEMO", "dicom"))
    assert len(rows) == 4
    for row in rows:
        name = f"{row['CodedPatientID']}_"
        assert any(f"/Entity/{row['CodedPatientID']}/{name}" in a for a in archives)
        assert row["ContentType"] == "application/gzip"
        assert row["Modality"] in {"CT", "MR", "US"}
    # the same patient (ACC10004, ACC10009) has the same coded id
    assert len({r["CodedPatientID"] for r in rows}) == 3
    # no identifying value in object names, rows, or any byte of the archive members
    blob = "\n".join(archives) + "\n" + (box.table_path(outbox, "DEMO", "dicom")).read_text()
    for path in (outbox / "Collection").rglob("*.tar.gz"):
        with tarfile.open(path) as tar:
            for member in tar:
                blob += member.name + tar.extractfile(member).read().decode("latin-1")
    for phi in PHI_STRINGS:
        assert phi.upper() not in blob.upper(), phi


def test_two_runs_give_identical_archives_and_rows_without_duplicates(demo_input, make_pipeline):
    first = make_pipeline(run_id="r1")
    run_in_process(first, demo_input)
    outbox = Path(first.settings.outbox)
    archives = outbox_files(outbox)
    table = box.table_path(outbox, "DEMO", "dicom")
    rows = table.read_text()
    # a plain rerun skips the delivered batches
    again = run_in_process(make_pipeline(run_id="r2"), demo_input)
    assert not [r for r in again.values() if r.state == "DONE"]
    # a reprocess recreates byte-identical archives and rows: nothing new, nothing duplicated
    redo = run_in_process(make_pipeline(run_id="r3"), demo_input, reprocess=True)
    assert sum(r.state == "DONE" for r in redo.values()) == 4
    assert all(r.outputs.delivered_to == "outbox" for r in redo.values() if r.state == "DONE")
    assert outbox_files(outbox) == archives
    assert table.read_text() == rows
    # and a fresh work root and outbox with the same key gives the same bytes
    other = make_pipeline(
        run_id="r4", work_root=str(outbox.parent / "w2"), outbox=str(outbox.parent / "o2")
    )
    run_in_process(other, demo_input)
    assert list(outbox_files(outbox.parent / "o2").values()) == list(archives.values())


def test_tmp_folder_is_handed_off_only_after_rename(tmp_path, make_pipeline):
    inbox = tmp_path / "in"
    write_study(inbox / "ACC1.tmp2343", PATIENTS[0], "ACC1", "20240115", "CT", 1, 2)
    assert is_in_progress("ACC1.tmp2343") and is_in_progress("x.tmp") and not is_in_progress("a.b")
    pipe = make_pipeline()
    assert run_in_process(pipe, inbox) == {}
    (inbox / "ACC1.tmp2343").rename(inbox / "ACC1")
    assert run_in_process(pipe, inbox)["ACC1"].state == "DONE"


def test_interval_selection_and_requested_batches(tmp_path):
    inbox = tmp_path / "in"
    for n, stamp in ((1, 1_700_000_000), (2, 1_700_100_000)):
        files = write_study(inbox / f"ACC{n}", PATIENTS[0], f"ACC{n}", "20240115", "CT", 1, 1)
        for p in [*files, inbox / f"ACC{n}"]:
            os.utime(p, (stamp, stamp))
    found = find_batches(inbox, SECRET, "in")

    def pick(**kw):
        return [
            b.folder_name for b in select_batches(found, delivered={}, reprocess=False, **kw)[0]
        ]

    assert pick(requested=None, interval=(1_699_999_000, 1_700_050_000)) == ["ACC1"]
    assert pick(requested=None, interval=None) == ["ACC1", "ACC2"]
    assert pick(requested=["ACC2"], interval=None) == ["ACC2"]
    assert pick(requested=[found[0].key], interval=None) == ["ACC1"]
    chosen, notes = select_batches(
        found,
        requested=None,
        interval=None,
        reprocess=False,
        delivered={found[0].key: found[0].fingerprint},
    )
    assert [b.folder_name for b in chosen] == ["ACC2"] and "already delivered" in notes[0]


def test_changed_content_is_processed_again(tmp_path, make_pipeline):
    inbox = tmp_path / "in"
    write_study(inbox / "ACC1", PATIENTS[0], "ACC1", "20240115", "CT", 1, 2)
    pipe = make_pipeline()
    assert run_in_process(pipe, inbox)["ACC1"].state == "DONE"
    write_study(inbox / "ACC1", PATIENTS[0], "ACC1", "20240115", "CT", 2, 2)  # more images
    record = run_in_process(make_pipeline(run_id="r2"), inbox)["ACC1"]
    assert record.state == "DONE" and record.metrics["images_accepted"] == 4


def test_planted_identifier_stops_the_batch_and_nothing_is_delivered(tmp_path, make_pipeline):
    inbox = tmp_path / "in"
    files = write_study(inbox / "ACC1", PATIENTS[0], "ACC1", "20240115", "CT", 1, 2)
    ds = pydicom.dcmread(files[1])
    # an MRN typed into free text that Annex E keeps (Manufacturer is not in Table E.1-1;
    # SeriesDescription, used before, is now removed or cleaned by the profile)
    ds.Manufacturer = f"ACME {PATIENTS[0].mrn}"
    ds.save_as(files[1])
    pipe = make_pipeline()
    record = run_in_process(pipe, inbox)["ACC1"]
    assert record.state == "ERROR"
    assert "Manufacturer" in record.reasons[0]
    assert PATIENTS[0].mrn not in " ".join(record.reasons)
    assert not (Path(pipe.settings.outbox) / "Collection").exists()


def test_source_folders_are_never_modified(demo_input, make_pipeline):
    before = {
        p: (p.stat().st_mtime_ns, p.read_bytes()) for p in demo_input.rglob("*") if p.is_file()
    }
    run_in_process(make_pipeline(), demo_input)
    after = {
        p: (p.stat().st_mtime_ns, p.read_bytes()) for p in demo_input.rglob("*") if p.is_file()
    }
    assert before == after


def test_outbox_refuses_to_overwrite_a_different_object(tmp_path):
    src = tmp_path / "a.tar.gz"
    src.write_bytes(b"one")
    sha = box.sha256_file(src)
    assert box.put_object(tmp_path / "box", "x/a.tar.gz", src, sha) == "created"
    assert box.put_object(tmp_path / "box", "x/a.tar.gz", src, sha) == "exists"
    other = tmp_path / "b.tar.gz"
    other.write_bytes(b"two")
    with pytest.raises(box.DeliveryError, match="different archive"):
        box.put_object(tmp_path / "box", "x/a.tar.gz", other, box.sha256_file(other))


def test_conflicting_object_makes_the_batch_error(tmp_path, make_pipeline):
    inbox = tmp_path / "in"
    write_study(inbox / "ACC1", PATIENTS[0], "ACC1", "20240115", "CT", 1, 1)
    pipe = make_pipeline(keep_work_files=True)
    record = run_in_process(pipe, inbox)["ACC1"]
    target = Path(pipe.settings.outbox) / record.outputs.object_name
    target.write_bytes(b"someone else's file")
    redo = run_in_process(make_pipeline(run_id="r2"), inbox, reprocess=True)["ACC1"]
    assert redo.state == "ERROR" and "different archive" in redo.reasons[-1]
    assert target.read_bytes() == b"someone else's file"


def test_changed_study_replaces_only_its_own_previous_archive(tmp_path, make_pipeline):
    inbox = tmp_path / "in"
    write_study(inbox / "ACC1", PATIENTS[0], "ACC1", "20240115", "CT", 1, 2)
    first = run_in_process(make_pipeline(), inbox)["ACC1"]
    write_study(inbox / "ACC1", PATIENTS[0], "ACC1", "20240115", "CT", 2, 2)
    pipe = make_pipeline(run_id="r2")
    second = run_in_process(pipe, inbox)["ACC1"]
    assert second.outputs.object_name == first.outputs.object_name
    assert second.outputs.sha256 != first.outputs.sha256
    target = Path(pipe.settings.outbox) / second.outputs.object_name
    assert box.sha256_file(target) == second.outputs.sha256
    assert len(box.read_rows(box.table_path(Path(pipe.settings.outbox), "DEMO", "dicom"))) == 1


def test_invalid_header_values_are_not_echoed_into_logs_or_warnings(
    tmp_path, make_pipeline, caplog, capfd
):
    """pydicom warns about an invalid value *with the value*; none may reach a task log."""
    inbox = tmp_path / "in"
    files = write_study(inbox / "ACC1", PATIENTS[0], "ACC1", "20240115", "CT", 1, 2)
    birth, name = "1970-05-06", "QUIRKY^" + "Z" * 70  # not a DICOM date; PN part too long
    for path in files:
        ds = pydicom.dcmread(path)
        ds.PatientBirthDate = birth
        ds.OtherPatientNames = name
        ds.save_as(path)
    caplog.set_level("DEBUG")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        record = run_in_process(make_pipeline(), inbox)["ACC1"]
    assert record.state == "DONE", record.reasons
    out, err = capfd.readouterr()
    said = " ".join([caplog.text, out, err, *(str(w.message) for w in caught)])
    for value in (birth, name[:20], "QUIRKY"):
        assert value not in said


def test_fingerprint_covers_every_file_and_keeps_its_definition(tmp_path):
    """The content fingerprint is sha256 over (relative path, size, mtime_ns) of the files
    ``list_files`` gives, in its order (records made earlier keep matching); a file rewritten
    in place, nested or not, changes it; hidden files do not."""
    import hashlib

    from sendit_ops.core.discovery import list_files, scan_batch

    batch = tmp_path / "B"
    for rel in ("a/x.dcm", "a-b/x.dcm", "a b/y.dcm", "z.dcm", "a/sub/1.dcm", "A/1", "é/1"):
        (batch / rel).parent.mkdir(parents=True, exist_ok=True)
        (batch / rel).write_bytes(rel.encode())
    (batch / "link").symlink_to(batch / "a")  # a symlinked folder is not followed

    def reference() -> str:
        digest = hashlib.sha256()
        for p in list_files(batch):
            st = p.stat()
            digest.update(f"{p.relative_to(batch)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return digest.hexdigest()

    found = scan_batch(SECRET, "in", batch)
    assert found.fingerprint == reference() and found.n_files == 7
    (batch / ".hidden").write_bytes(b"x")
    assert scan_batch(SECRET, "in", batch).fingerprint == found.fingerprint
    target = batch / "a" / "sub" / "1.dcm"
    target.write_bytes(b"rewritten in place")
    changed = scan_batch(SECRET, "in", batch)
    assert changed.fingerprint != found.fingerprint and changed.fingerprint == reference()
