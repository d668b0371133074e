"""Query/retrieve against a real PACS (Debian's Orthanc): C-GET, C-MOVE to sendit's own
storage SCP, DICOMweb; result caps; completeness; a PACS stopping mid-study; reruns."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pydicom
import pytest
from conftest import SECRET, run_in_process

from sendit_ops.core.discovery import discover_input
from sendit_ops.delivery import outbox as box
from sendit_ops.pacs.job import RetrieveJob
from sendit_ops.pacs.keys import item_key
from sendit_ops.pacs.model import RetrievePolicy, StudyRequest, StudyState
from sendit_ops.pacs.request_ledger import RequestLedger

pytestmark = pytest.mark.emulator

METHODS = ["c-get", "c-move", "dicomweb"]
FAST = RetrievePolicy(attempts=3, backoff_seconds=0.5, deadline_seconds=120)


def job(pacs, method: str, tmp: Path, policy: RetrievePolicy = FAST, **conn) -> RetrieveJob:
    return RetrieveJob(
        pacs.connection(method, **conn),
        tmp / "work",
        tmp / "incoming",
        SECRET,
        policy,
        run_id="test",
    )


def folders(incoming: Path) -> list[str]:
    return sorted(p.name for p in incoming.iterdir()) if incoming.is_dir() else []


@pytest.mark.parametrize("method", METHODS)
def test_ten_studies_by_accession_become_ten_folders_delivered_and_a_rerun_fetches_nothing(
    pacs, tmp_path, method, make_pipeline
):
    accessions = sorted(pacs.studies)
    assert len(accessions) == 10
    j = job(pacs, method, tmp_path)
    found = j.find(StudyRequest(accessions=tuple(accessions)))
    assert (found.items, found.not_found, found.studies) == (10, 0, 10)
    results = j.retrieve(found.to_fetch)
    assert [r.state for r in results] == [StudyState.RETRIEVED] * 10
    assert all(r.received == r.expected == 6 and r.bytes > 0 for r in results)
    names = folders(tmp_path / "incoming")
    assert len(names) == 10 and not [n for n in names if ".tmp" in n]
    # every instance arrived intact, in its study's folder; nothing names a patient value
    for name in names:
        files = list((tmp_path / "incoming" / name).iterdir())
        uids = {str(pydicom.dcmread(f, stop_before_pixels=True).StudyInstanceUID) for f in files}
        assert len(files) == 6 and len(uids) == 1
        assert not any(a in name for a in accessions)
    # the folder DAG's discovery sees ten finished batches
    seen = discover_input(tmp_path / "incoming", SECRET, "incoming")
    assert len(seen.batches) == 10
    # the ledger keeps every study, keyed, RETRIEVED
    rows = RequestLedger(tmp_path / "work", "testpacs").studies()
    assert sorted(r.state for r in rows) == ["RETRIEVED"] * 10
    assert all(r.received == 6 and r.bytes > 0 and r.seconds >= 0 for r in rows)
    # a second run of the same request finds everything and fetches nothing
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "incoming").rglob("*")}
    again = job(pacs, method, tmp_path)
    found2 = again.find(StudyRequest(accessions=tuple(accessions)))
    assert found2.studies == 10 and found2.to_fetch == []
    assert again.retrieve([r.key for r in results]) == []
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "incoming").rglob("*")} == before
    # the folder's pipeline (what its DAG runs) delivers 10 archives and 10 rows
    records = run_in_process(make_pipeline(), tmp_path / "incoming")
    assert sorted(r.state for r in records.values()) == ["DONE"] * 10
    assert len(list((tmp_path / "outbox").rglob("*.tar.gz"))) == 10
    assert len(box.read_rows(box.table_path(tmp_path / "outbox", "DEMO", "dicom"))) == 10


def test_a_request_resumes_after_a_crash_without_fetching_finished_studies(pacs, tmp_path):
    accessions = tuple(sorted(pacs.studies))
    first = job(pacs, "c-get", tmp_path)
    found = first.find(StudyRequest(accessions=accessions))
    done = iter(range(100))
    # the worker dies after 4 studies (stop asked before each), and in the middle of the 5th
    results = first.retrieve(found.to_fetch, stop=lambda: next(done) >= 4)
    assert len(results) == 4
    crashed = found.to_fetch[4]
    first.ledger.record_started(crashed, "test")
    half = tmp_path / "incoming" / f"{crashed}.tmp"
    half.mkdir()
    (half / "x.dcm.123.part").write_bytes(b"half an instance")
    finished = {
        p: p.stat().st_mtime_ns for p in (tmp_path / "incoming").rglob("*") if ".tmp" not in str(p)
    }
    # the rerun of the whole request
    again = job(pacs, "c-get", tmp_path)
    found2 = again.find(StudyRequest(accessions=accessions))
    assert len(found2.to_fetch) == 6 and crashed in found2.to_fetch
    rest = again.retrieve(found2.to_fetch)
    assert [r.state for r in rest] == [StudyState.RETRIEVED] * 6
    names = folders(tmp_path / "incoming")
    assert len(names) == 10 and not [n for n in names if ".tmp" in n]
    assert len(list((tmp_path / "incoming" / crashed).iterdir())) == 6
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # untouched


@pytest.mark.parametrize("method", ["c-get", "dicomweb"])
def test_unknown_accession_is_not_found_and_makes_no_folder(pacs, tmp_path, method, caplog):
    caplog.set_level(logging.DEBUG)  # even at DEBUG, no library logs a patient value
    j = job(pacs, method, tmp_path)
    known = sorted(pacs.studies)[0]
    found = j.find(StudyRequest(accessions=("NO-SUCH-ACC", known)))
    assert (found.not_found, found.studies) == (1, 1)
    j.retrieve(found.to_fetch)
    assert len(folders(tmp_path / "incoming")) == 1
    led = RequestLedger(tmp_path / "work", "testpacs")
    assert led.item_counts() == {"NOT_FOUND": 1, "FOUND": 1}
    # the item is known by its keyed hash only
    from sqlalchemy import text

    with led.engine.connect() as conn:
        keys = [r[0] for r in conn.execute(text("SELECT item_key FROM pacs_items"))]
    assert item_key(SECRET, "accession", "NO-SUCH-ACC") in keys
    assert not [k for k in keys if "ACC" in k]
    assert caplog.text and "NO-SUCH-ACC" not in caplog.text and known not in caplog.text
    assert pacs.study_uid(known) not in caplog.text


@pytest.mark.parametrize("method", ["c-get", "c-move", "dicomweb"])
def test_a_date_query_larger_than_the_result_cap_finds_every_study(pacs, tmp_path, method):
    assert pacs.orthanc.limit_find_results == 4  # fewer than the 10 studies in January
    found = job(pacs, method, tmp_path).find(StudyRequest(date_from="20240101", date_to="20240131"))
    assert found.studies == 10 and found.splits >= 2
    ct = job(pacs, method, tmp_path / "ct").find(
        StudyRequest(date_from="20240101", date_to="20240131", modality="CT")
    )
    assert ct.studies == 5


def test_a_study_missing_instances_ends_incomplete_with_both_counts(make_pacs, tmp_path):
    server = make_pacs()
    (acc,) = server.load(tmp_path / "corpus", 1)
    j = job(server, "c-get", tmp_path)
    found = j.find(StudyRequest(accessions=(acc,)))
    # the PACS reported 6 instances; one goes missing before the retrieval
    server.orthanc.delete_instance(
        str(pydicom.dcmread(server.studies[acc][0], stop_before_pixels=True).SOPInstanceUID)
    )
    (result,) = j.retrieve(found.to_fetch)
    assert result.state == StudyState.INCOMPLETE
    assert (result.expected, result.received, result.attempts) == (6, 5, 3)
    assert "5 of 6" in result.reason
    # never handed on: the folder stays .tmp, which discovery skips
    assert folders(tmp_path / "incoming") == [f"{result.key}.tmp"]
    (row,) = RequestLedger(tmp_path / "work", "testpacs").studies()
    assert (row.state, row.expected, row.received) == ("INCOMPLETE", 6, 5)
    # unless a setting allows a short study to be handed on
    allow = RetrievePolicy(attempts=1, backoff_seconds=0.1, allow_incomplete=True)
    (handed,) = job(server, "c-get", tmp_path, allow).retrieve(found.to_fetch)
    assert handed.state == StudyState.INCOMPLETE and "handed on" in handed.reason
    assert folders(tmp_path / "incoming") == [result.key]
    # asked again, it stays INCOMPLETE (the folder handed on is short), never RETRIEVED
    (later,) = job(server, "c-get", tmp_path, allow).retrieve(found.to_fetch)
    assert (later.state, later.received, later.expected) == (StudyState.INCOMPLETE, 5, 6)


@pytest.mark.parametrize("method", METHODS)
def test_pacs_stopped_mid_retrieval_is_retried_and_the_study_completes_once(
    make_pacs, tmp_path, method
):
    server = make_pacs()
    # 120 images of 512x512 16-bit (~63 MB): more than the kernel's socket buffers can hold
    # (here up to 32 MB received + 4 MB sent), so a PACS stopped after the first files has
    # not sent the rest; with 8 MB, DICOMweb's one response per study could lie whole in
    # the buffers before the stop, and no retry was needed (a CI run failed so)
    (acc,) = server.load(tmp_path / "corpus", 1, images=30, series=4, size=512)
    policy = RetrievePolicy(attempts=5, backoff_seconds=1.0, deadline_seconds=120)
    j = job(server, method, tmp_path, policy)
    found = j.find(StudyRequest(accessions=(acc,)))
    (key,) = found.to_fetch
    tmp_folder = tmp_path / "incoming" / f"{key}.tmp"
    seen: dict[str, object] = {}

    def stop_in_the_middle():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            n = len(list(tmp_folder.glob("*.dcm"))) if tmp_folder.is_dir() else 0
            if n >= 5:
                server.orthanc.kill()
                seen["at"] = n
                # what the folder DAG would see while the PACS is down: nothing
                seen["discovered"] = len(
                    discover_input(tmp_path / "incoming", SECRET, "in").batches
                )
                time.sleep(1.5)
                server.orthanc.start()
                return
            time.sleep(0.005)

    killer = threading.Thread(target=stop_in_the_middle)
    killer.start()
    (result,) = j.retrieve(found.to_fetch)
    killer.join()
    assert 5 <= seen["at"] < 120, seen  # it was stopped in the middle of the study
    assert seen["discovered"] == 0
    assert result.state == StudyState.RETRIEVED, result
    assert result.attempts >= 2 and result.received == result.expected == 120
    assert folders(tmp_path / "incoming") == [key]
    assert len(list((tmp_path / "incoming" / key).iterdir())) == 120


def test_a_pacs_that_answers_pending_forever_times_out_and_the_study_fails_with_a_reason(
    tmp_path,
):
    """A PACS (here a pynetdicom SCP) that keeps a C-FIND and a C-GET pending and never
    finishes: the DIMSE timeout ends each attempt; the study ends FAILED, no folder handed on."""
    from pydicom.dataset import Dataset
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import (
        StudyRootQueryRetrieveInformationModelFind,
        StudyRootQueryRetrieveInformationModelGet,
    )

    from devtools.orthanc_server import free_port
    from sendit_ops.core.errors import TransientError
    from sendit_ops.pacs.dimse import FindSession
    from sendit_ops.pacs.model import FoundStudy, PacsConnection
    from sendit_ops.pacs.retrieve import retrieve_study

    release = threading.Event()

    def on_find(event):
        match = Dataset()
        match.QueryRetrieveLevel = "STUDY"
        match.StudyInstanceUID = "1.2.3.4"
        yield 0xFF00, match
        release.wait(30)  # "pending" forever (until the test ends)

    def on_get(event):
        yield 3  # three sub-operations announced, none ever sent
        release.wait(30)

    scp = AE(ae_title="STUCK")
    scp.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
    scp.add_supported_context(StudyRootQueryRetrieveInformationModelGet)
    port = free_port()
    server = scp.start_server(
        ("127.0.0.1", port),
        block=False,
        evt_handlers=[(evt.EVT_C_FIND, on_find), (evt.EVT_C_GET, on_get)],
    )
    try:
        conn = PacsConnection("stuck", port=port, called_ae="STUCK", timeout=2)
        started = time.monotonic()
        with pytest.raises(TransientError, match="lost during a C-FIND"), FindSession(conn) as s:
            s.find(AccessionNumber="X")
        assert time.monotonic() - started < 15
        study = FoundStudy("pstuck0000000000", "i0", "1.2.3.4", "", 3)
        result = retrieve_study(
            conn,
            study,
            tmp_path / "incoming",
            SECRET,
            RetrievePolicy(attempts=2, backoff_seconds=0.1, deadline_seconds=30),
            tmp_path,
        )
        assert result.state == StudyState.FAILED and result.attempts == 2
        assert "lost during a C-GET" in result.reason
        assert folders(tmp_path / "incoming") == ["pstuck0000000000.tmp"]
    finally:
        release.set()
        server.shutdown()


@pytest.mark.parametrize("method", METHODS)
def test_real_files_by_study_uid_arrive_as_stored_in_every_transfer_syntax(
    make_pacs, tmp_path, method
):
    """Files of the test corpus (pydicom's: JPEG 2000, JPEG lossless and baseline, JPEG-LS,
    RLE, big endian), asked for by Study Instance UID: each arrives in the transfer syntax it
    was stored in, its pixel data byte for byte (no transcoding, nothing degraded)."""
    from pydicom.data import get_testdata_file

    names = [  # one SOP Instance UID each (some of pydicom's files share one)
        "MR2_J2KR.dcm",
        "JPGLosslessP14SV1_1s_1f_8b.dcm",
        "OBXXXX1A_rle.dcm",
        "emri_small_jpeg_ls_lossless.dcm",
        "color3d_jpeg_baseline.dcm",
        "SC_rgb_expb.dcm",
        "CT_small.dcm",
    ]
    files = [Path(get_testdata_file(n)) for n in names]
    originals = {}
    for f in files:
        ds = pydicom.dcmread(f)
        originals[str(ds.SOPInstanceUID)] = (ds.file_meta.TransferSyntaxUID, ds.PixelData)
    server = make_pacs()
    assert server.orthanc.upload(files) == len(files)
    uids = sorted(
        {str(pydicom.dcmread(f, stop_before_pixels=True).StudyInstanceUID) for f in files}
    )
    j = job(server, method, tmp_path)
    found = j.find(StudyRequest(study_uids=tuple(uids)))
    assert found.not_found == 0 and found.studies == len(uids)
    results = j.retrieve(found.to_fetch)
    assert {r.state for r in results} == {StudyState.RETRIEVED}
    got = {}
    for f in (tmp_path / "incoming").rglob("*.dcm"):
        ds = pydicom.dcmread(f)
        got[str(ds.SOPInstanceUID)] = (ds.file_meta.TransferSyntaxUID, ds.PixelData)
    assert set(got) == set(originals)
    for sop, (ts, pixels) in originals.items():
        assert got[sop][0] == ts, f"{ts.name} arrived as {got[sop][0].name}"
        assert got[sop][1] == pixels
