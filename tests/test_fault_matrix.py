"""The fault matrix (issue 15): every bad input and crash case ends in a recorded state with
the right reason, other batches unaffected, no duplicate outbox object or row, no partial
upload left behind, and nothing identifying in the output or logs.

Runs go through ``sendit run`` (``cli.main``, in-process, as a user runs it; a subprocess for
the kill -9 cases). Most cases are batches of one input folder run once (module fixture):
each case is a batch, so "the other batches are unaffected" is checked by every case.
Disk-full cases use a small tmpfs (we run as root; a failed mount fails the case).
Results are tabled in docs/pipeline.md ("Fault matrix").
"""

from __future__ import annotations

import io
import json
import logging
import os
import secrets
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
import pytest
from conftest import PHI_STRINGS, SECRET
from pydicom.data import get_testdata_file
from scratch_postgres import database_url, scratch_database
from test_ledger_db import postgres_url  # noqa: F401  (the session's PostgreSQL database)

from sendit_ops.airflow import cli
from sendit_ops.core.discovery import batch_key
from sendit_ops.core.settings import InputFolder
from sendit_ops.sample_data import PATIENTS, make_image, write_study

pytestmark = pytest.mark.live

NAME = "matrix"  # the input folder's name in sendit (batch ids are keyed on it)
# the ledgers the matrix runs on, the whole module once each: "sqlite" (in the work root) and
# "postgresql" (the machine's server, a database made for the session);
# SENDIT_FAULT_MATRIX_LEDGER=sqlite (or postgresql) runs one of them only
LEDGERS = os.environ.get("SENDIT_FAULT_MATRIX_LEDGER", "sqlite,postgresql").split(",")
LEDGER_URL: list[str] = []  # set by the _ledger fixture for the module's current pass


@dataclass
class Outcome:
    """What one `sendit run` left: exit status, output, summary, outbox, records."""

    code: int
    said: str  # stdout + stderr + log records, everything a person would see
    summary: dict
    outbox: Path
    work: Path
    lines: dict[str, dict] = field(default_factory=dict)  # batch id -> summary line

    def line(self, folder: str) -> dict:
        """The summary line of a batch folder (by its batch id)."""
        return self.lines[batch_key(SECRET, NAME, folder)]

    def record(self, folder: str):
        """The ledger record of a batch folder."""
        from sendit_ops.core.settings import load_settings
        from sendit_ops.pipeline.batch import Pipeline

        settings = load_settings(
            {
                "work_root": str(self.work),
                "outbox": str(self.outbox),
                "ledger_url": LEDGER_URL[0] if LEDGER_URL else None,
            }
        )
        dag_id = InputFolder(str(self.outbox), NAME).dag_id
        return Pipeline(settings, SECRET, dag_id).ledger.get(batch_key(SECRET, NAME, folder))


def archives(outbox: Path) -> list[Path]:
    """Every delivered archive in the outbox."""
    return sorted((outbox / "Collection").rglob("*.tar.gz")) if outbox.exists() else []


def rows(outbox: Path) -> list[dict]:
    """Every row of the outbox's table(s)."""
    out = []
    for table in sorted((outbox / "bigquery").rglob("*.jsonl")) if outbox.exists() else []:
        out += [json.loads(x) for x in table.read_text().splitlines() if x.strip()]
    return out


def assert_outbox_consistent(outbox: Path, done: int) -> None:
    """One object and one row per delivered batch; no partial copy left behind."""
    objects, table = archives(outbox), rows(outbox)
    assert len(objects) == done, [p.name for p in objects]
    assert len(table) == done
    assert len({r["CodedAccessionNumberID"] for r in table}) == done
    assert {Path(r["storage_download"]).name for r in table} == {p.name for p in objects}
    assert not [p for p in outbox.rglob("*.part")] if outbox.exists() else True


def assert_nothing_identifying(text: str, folders: list[str]) -> None:
    """No batch folder name (so no path below the input folder either) and no patient
    value in what a person sees. The input folder's own path, given by the user, may
    appear ("running DAG ... on /data/in")."""
    for value in [*folders, *PHI_STRINGS]:
        assert value not in text, f"identifying value {value[:3]}... in the output"


def run_sendit(caplog, capfd, input_dir: Path, outbox: Path, work: Path, *args: str) -> Outcome:
    """``sendit run`` in-process, as the CLI runs it; everything it said captured."""
    caplog.clear()
    capfd.readouterr()
    with caplog.at_level(logging.INFO):
        code = cli.main(
            [
                "run",
                "--input",
                str(input_dir),
                "--outbox",
                str(outbox),
                "--work-root",
                str(work),
                "--name",
                NAME,
                *ledger_args(),
                *args,
            ]
        )
    out, err = capfd.readouterr()
    said = "\n".join([out, err, caplog.text])
    summaries = sorted(work.rglob("runs/*/summary.json"), key=lambda p: p.stat().st_mtime)
    summary = json.loads(summaries[-1].read_text()) if summaries else {}
    lines = {line["batch_id"]: line for line in summary.get("batch_lines", [])}
    return Outcome(code, said, summary, outbox, work, lines)


def ledger_args() -> list[str]:
    """The CLI arguments choosing the ledger database of the matrix."""
    return ["--set", f"ledger_url={LEDGER_URL[0]}"] if LEDGER_URL else []


@pytest.fixture(scope="module", autouse=True, params=LEDGERS)
def _ledger(request) -> str:
    """The ledger database of this pass over the module (PostgreSQL: the machine's server,
    which the project's machines run; its absence fails the test, it is not skipped)."""
    if request.param == "postgresql":
        LEDGER_URL[:] = [request.getfixturevalue("postgres_url")]
    else:
        LEDGER_URL.clear()
    return request.param


@pytest.fixture(autouse=True)
def _embedded_airflow(airflow_db, monkeypatch):
    """The session's migrated Airflow DB serves the CLI (no second migration)."""
    (Path(os.environ["AIRFLOW_HOME"]) / ".sendit-db-ready").touch()
    for var in ("AIRFLOW_VAR_SENDIT_SETTINGS", "AIRFLOW_VAR_SENDIT_INPUT_FOLDERS"):
        monkeypatch.delenv(var, raising=False)


# ---- the corrupt and odd inputs ---------------------------------------------------------


def study(folder: Path, n: int, images: int = 2, size: int = 64) -> list[Path]:
    """A valid study of patient n % 3 (accession = folder name, as C-MOVE writes it)."""
    return write_study(
        folder, PATIENTS[n % 3], folder.name, f"202402{10 + n:02d}", "CT", 1, images, size=size
    )


def pydicom_bytes(name: str) -> bytes:
    """One of pydicom's test files."""
    return Path(get_testdata_file(name)).read_bytes()


def cut_in_pixel_data(folder: Path, _: int) -> None:
    """pydicom's MR_small.dcm cut after 1,988 of its 8,192 pixel bytes."""
    raw = pydicom_bytes("MR_small.dcm")
    fp = io.BytesIO(raw)
    pydicom.dcmread(fp, stop_before_pixels=True)
    folder.mkdir(parents=True)
    (folder / "image.dcm").write_bytes(raw[: fp.tell() + 12 + 1988])  # explicit VR: 12


def cut_in_sequence(folder: Path, _: int) -> None:
    """pydicom's JPEG2000.dcm cut inside its SourceImageSequence (no PixelData at all)."""
    raw = pydicom_bytes("JPEG2000.dcm")
    ds = pydicom.dcmread(io.BytesIO(raw))
    folder.mkdir(parents=True)
    (folder / "image.dcm").write_bytes(raw[: ds["SourceImageSequence"].file_tell + 20])


def huge_declared_length(folder: Path, _: int) -> None:
    """pydicom's MR_small_implicit.dcm with a declared length of 0x7FFFFFF0 on Columns."""
    raw = bytearray(pydicom_bytes("MR_small_implicit.dcm"))
    ds = pydicom.dcmread(io.BytesIO(bytes(raw)))
    at = ds._dict[pydicom.tag.Tag("Columns")].value_tell - 4  # its 4-byte length
    raw[at : at + 4] = struct.pack("<L", 0x7FFFFFF0)
    folder.mkdir(parents=True)
    (folder / "image.dcm").write_bytes(bytes(raw))


def study_with_cut_copy(folder: Path, n: int) -> None:
    """A study of 3 images, one of them cut inside its pixel data."""
    files = study(folder, n, images=3)
    files[2].write_bytes(files[2].read_bytes()[:-5000])


def not_dicom_with_preamble(folder: Path, n: int) -> None:
    """A valid study plus a file with a 128-byte preamble, no DICM, then garbage."""
    study(folder, n)
    (folder / "thumbs.dcm").write_bytes(b"\0" * 128 + bytes(range(256)) * 16)


def dangling_symlink(folder: Path, n: int) -> None:
    """A valid study plus a symlink whose target is gone."""
    study(folder, n)
    (folder / "lost.dcm").symlink_to(folder / "never-written.dcm")


def symlink_loop(folder: Path, n: int) -> None:
    """A valid study plus two symlinks pointing at each other."""
    study(folder, n)
    (folder / "a.dcm").symlink_to(folder / "b.dcm")
    (folder / "b.dcm").symlink_to(folder / "a.dcm")


def symlink_outside(folder: Path, n: int) -> None:
    """A valid study plus a symlink to an image of the study kept outside the input folder."""
    study(folder, n)
    outside = folder.parent.parent / "elsewhere" / folder.name
    outside.mkdir(parents=True)
    ds = make_image(PATIENTS[n % 3], folder.name, f"202402{10 + n:02d}", "CT", 1, 9)
    ds.save_as(outside / "extra.dcm", enforce_file_format=True)
    (folder / "extra.dcm").symlink_to(outside / "extra.dcm")


def batch_folder_outside(folder: Path, n: int) -> None:
    """The batch folder itself is a symlink to a study outside the input folder."""
    outside = folder.parent.parent / "elsewhere" / (folder.name + "-real")
    study(outside, n)
    folder.symlink_to(outside)


def unreadable_entry(folder: Path, n: int) -> None:
    """A valid study plus an entry no one can read as a file (a FIFO: root reads anything
    chmod 000, but opening a FIFO would block; it is not a regular file)."""
    study(folder, n)
    os.mkfifo(folder / "image9.dcm")


def hidden_entries(folder: Path, n: int) -> None:
    """A valid study plus hidden sub-folders (``.x``, ``..dots..``) with images in them."""
    study(folder, n)
    for hidden in (".x", "..dots.."):
        study(folder / hidden, n, images=1)


# folder -> (builder, expected state, words the reason or a warning must hold)
CASES = {
    "ACC20001": (None, "DONE", ""),
    "ACC20002": (cut_in_pixel_data, "ERROR", "truncated pixel data: 1,988 of 8,192 bytes"),
    "ACC20003": (cut_in_sequence, "ERROR", "the file ends inside a sequence: no pixel data"),
    "ACC20004": (
        huge_declared_length,
        "ERROR",
        "declared element length 0x7FFFFFF0 runs past the end of the file",
    ),
    "ACC20005": (study_with_cut_copy, "ERROR", "1 file(s) of the study cannot be delivered"),
    "ACC20006": (not_dicom_with_preamble, "DONE", "not a DICOM file"),
    "ACC20007": (dangling_symlink, "ERROR", "dangling symlink"),
    "ACC20008": (symlink_loop, "ERROR", "symlink loop"),
    "ACC20009": (symlink_outside, "ERROR", "symlink leading outside the input folder"),
    "ACC20010": (batch_folder_outside, "ERROR", "symlink leading outside the input folder"),
    "ACC20011": (unreadable_entry, "ERROR", "not a regular file"),
    "ACC20012": (hidden_entries, "DONE", "hidden entr"),
    "ACC20013": (None, "DONE", ""),
}


@pytest.fixture(scope="module")
def matrix(tmp_path_factory, airflow_db, _ledger) -> Iterator[tuple[Path, Path, Path]]:
    """The input folder with one batch per case, plus hidden folders at its top."""
    root = tmp_path_factory.mktemp("matrix")
    inbox = root / "in"
    inbox.mkdir()
    for n, (folder, (build, _, _)) in enumerate(CASES.items()):
        (build or (lambda f, i: study(f, i)))(inbox / folder, n)
    for hidden in (".ACC29998", "..ACC29999.."):
        study(inbox / hidden, 1)
    yield inbox, root / "out", root / "work"


@pytest.fixture(scope="module")
def first_run(matrix) -> dict:
    """Holder for the one run over the matrix (made by the first test that needs it)."""
    return {}


def matrix_run(first_run, matrix, caplog, capfd) -> Outcome:
    if "outcome" not in first_run:
        inbox, outbox, work = matrix
        first_run["outcome"] = run_sendit(caplog, capfd, inbox, outbox, work)
    return first_run["outcome"]


@pytest.mark.parametrize("folder", list(CASES))
def test_each_case_ends_recorded_with_its_reason(folder, first_run, matrix, caplog, capfd):
    outcome = matrix_run(first_run, matrix, caplog, capfd)
    _, state, words = CASES[folder]
    line = outcome.line(folder)
    assert line["status"] == state, line
    record = outcome.record(folder)
    if words:
        assert words in " ".join([line["reasons"], *record.warnings]), (line, record.warnings)
    if state == "ERROR":
        work = outcome.work / InputFolder("x", NAME).dag_id / "batches" / line["batch_id"]
        assert not (work / "identifiers.json").exists()
        assert not (work / "images.json").exists()


def test_other_batches_unaffected_and_no_duplicates(first_run, matrix, caplog, capfd):
    outcome = matrix_run(first_run, matrix, caplog, capfd)
    expected_done = sum(1 for _, state, _ in CASES.values() if state == "DONE")
    assert outcome.summary["states"] == {
        "DONE": expected_done,
        "ERROR": len(CASES) - expected_done,
    }
    assert outcome.code == cli.EXIT_BATCH_ERRORS  # some batch ended ERROR: the exit says so
    assert_outbox_consistent(outcome.outbox, expected_done)
    # every batch is finished: no identifier list is left in the work root
    assert not list(outcome.work.rglob("identifiers.json"))
    assert not list(outcome.work.rglob("images.json"))
    # the hidden folders at the top are not batches, and are noted without their names
    assert len(outcome.lines) == len(CASES)
    assert "2 hidden entr(y/ies) in the input folder" in outcome.said
    assert_nothing_identifying(
        outcome.said
        + json.dumps(outcome.summary)
        + "".join(p.read_text() for p in outcome.work.rglob("summary.txt")),
        [*CASES, ".ACC29998", "ACC29999"],
    )


def test_rerun_changes_nothing_and_external_links_follow_with_the_setting(
    first_run, matrix, caplog, capfd
):
    """A second run delivers nothing twice; with follow_external_symlinks the two
    external-link batches are delivered (their files read through the links)."""
    matrix_run(first_run, matrix, caplog, capfd)
    inbox, outbox, work = matrix
    again = run_sendit(caplog, capfd, inbox, outbox, work)
    done = sum(1 for _, state, _ in CASES.values() if state == "DONE")
    assert_outbox_consistent(outbox, done)
    assert again.summary["states"].get("ERROR") == len(CASES) - done
    follow = run_sendit(
        caplog,
        capfd,
        inbox,
        outbox,
        work,
        "--batch",
        "ACC20009",
        "--batch",
        "ACC20010",
        "--set",
        "follow_external_symlinks=true",
    )
    assert {line["status"] for line in follow.lines.values()} == {"DONE"}, follow.lines
    assert_outbox_consistent(outbox, done + 2)
    assert follow.record("ACC20009").metrics["images_accepted"] == 3


# ---- a folder deleted mid-run ---------------------------------------------------------------


def test_folder_deleted_mid_run(tmp_path, caplog, capfd, monkeypatch):
    """One batch folder deleted after discovery, another after filtering: each ends ERROR
    saying its folder or files are gone; the third is delivered."""
    from sendit_ops.pipeline.batch import Pipeline

    inbox = tmp_path / "in"
    folders = ["ACC21001", "ACC21002", "ACC21003"]
    for n, folder in enumerate(folders):
        study(inbox / folder, n)
    filter_, anonymize = Pipeline.filter, Pipeline.anonymize

    def filter_after_delete(self, keys):
        shutil.rmtree(inbox / "ACC21002", ignore_errors=True)
        return filter_(self, keys)

    def anonymize_after_delete(self, keys):
        shutil.rmtree(inbox / "ACC21003", ignore_errors=True)
        return anonymize(self, keys)

    monkeypatch.setattr(Pipeline, "filter", filter_after_delete)
    monkeypatch.setattr(Pipeline, "anonymize", anonymize_after_delete)
    out = run_sendit(caplog, capfd, inbox, tmp_path / "out", tmp_path / "work")
    assert out.line("ACC21001")["status"] == "DONE"
    assert out.line("ACC21002")["status"] == "ERROR"
    assert "the batch folder is gone" in out.line("ACC21002")["reasons"]
    assert out.line("ACC21003")["status"] == "ERROR"
    assert "gone (moved or deleted during the run)" in out.line("ACC21003")["reasons"]
    assert out.code == cli.EXIT_BATCH_ERRORS
    assert_outbox_consistent(out.outbox, 1)
    assert_nothing_identifying(out.said, folders)


# ---- disk full ------------------------------------------------------------------------------


@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A small tmpfs at ``path`` (we run as root); unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if done.returncode:
        # the disk-full and read-only cases need it: their absence fails, never skips
        pytest.fail(f"cannot mount a tmpfs at {path} (the fault matrix runs as root)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def grow(path: Path, size: str) -> None:
    """Make room: remount the tmpfs bigger."""
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True)


@pytest.mark.parametrize("where", ["outbox", "work root"])
def test_disk_full_is_named_and_a_rerun_converges(where, tmp_path, caplog, capfd):
    """A 2-3 MB disk for the outbox or the work root: the batches that do not fit end ERROR
    "no space left on the <outbox|work root> (need ~N MB)", no partial copy stays in the
    outbox, and once there is room a rerun delivers every batch exactly once."""
    inbox = tmp_path / "in"
    folders = [f"ACC2200{n}" for n in range(1, 5)]
    for n, folder in enumerate(folders):
        study(inbox / folder, n, images=3, size=512)  # ~1.5 MB per study, incompressible
    outbox, work = tmp_path / "out", tmp_path / "work"
    disk = outbox if where == "outbox" else work
    with tmpfs(disk, "2m" if where == "outbox" else "4m"):
        first = run_sendit(caplog, capfd, inbox, outbox, work)
        states = [first.line(f)["status"] for f in folders]
        assert "ERROR" in states, first.lines
        full = [first.line(f)["reasons"] for f in folders if first.line(f)["status"] == "ERROR"]
        assert all(f"no space left on the {where} (need ~" in r for r in full), full
        assert first.code == cli.EXIT_BATCH_ERRORS
        assert_outbox_consistent(outbox, states.count("DONE"))
        grow(disk, "64m")
        second = run_sendit(caplog, capfd, inbox, outbox, work)
        assert second.code == cli.EXIT_OK, second.lines
        assert_outbox_consistent(outbox, len(folders))
        for folder in folders:
            assert first.record(folder) is not None
        assert_nothing_identifying(first.said + second.said, folders)
        if where == "work root":
            batches = work / InputFolder("x", NAME).dag_id / "batches"
            assert not list(batches.rglob("identifiers.json"))


# ---- kill -9 and rerun ---------------------------------------------------------------------


# where a run is killed: when the first file of that stage shows up, plus "delivering" (the
# first outbox object): the four points. Each killed `sendit run` process costs
# ~15 s to start; the rerun takes the dead holder's run lock over at once.
KILL_POINTS = {
    "filtering": "batches/*/images.json",
    "anonymizing": "batches/*/anonymized/*.dcm",
    "packaging": "batches/*/archive/*.tar.gz",
}


def sendit_process(inbox: Path, outbox: Path, work: Path, home: Path) -> subprocess.Popen:
    """`sendit run` as a separate process (the session's Airflow DB, already migrated)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_VAR_SENDIT_S")}
    env.update(SENDIT_HOME=str(home), AIRFLOW_VAR_SENDIT_SECRET_KEY=SECRET.decode())
    args = ["--input", str(inbox), "--outbox", str(outbox), "--work-root", str(work)]
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sendit_ops.airflow.cli",
            "run",
            *args,
            "--name",
            NAME,
            *ledger_args(),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def kill_when(proc: subprocess.Popen, root: Path, pattern: str, timeout: float = 120) -> bool:
    """kill -9 the run as soon as a file matching ``pattern`` shows up (False when the run
    ended first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if next(root.glob(pattern), None) is not None or (
            pattern.startswith("Collection") and next(root.rglob("*.tar.gz"), None)
        ):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.02)
    proc.wait()
    return False


def test_kill_9_at_several_points_then_rerun_converges(tmp_path, caplog, capfd):
    """A run killed with SIGKILL while filtering, its rerun killed while anonymizing, the
    next while packaging, the next while delivering, then a last run: every batch delivered
    once, one object and one row each, no partial upload, nothing identifying said (the
    killed processes' output included)."""
    inbox, outbox, work = tmp_path / "in", tmp_path / "out", tmp_path / "work"
    folders = [f"ACC2300{n}" for n in range(1, 7)]
    for n, folder in enumerate(folders):
        study(inbox / folder, n, images=3, size=256)
    dag_root = work / InputFolder("x", NAME).dag_id
    said, killed = [], []
    points = [*KILL_POINTS.items(), ("delivering", "Collection")]
    for point, pattern in points:
        proc = sendit_process(inbox, outbox, work, tmp_path / "home")
        root = outbox if pattern == "Collection" else dag_root
        if kill_when(proc, root, pattern):
            killed.append(point)
        said.append(proc.stdout.read() if proc.stdout else "")
        for leftover in [*root.glob(pattern)] if pattern != "Collection" else []:
            # the next kill point must be reached anew: forget the marker files
            leftover.unlink(missing_ok=True)
    assert len(killed) >= 3, (
        f"runs ended before their kill points (killed: {killed})\n" + "\n".join(said)[-4000:]
    )
    last = run_sendit(caplog, capfd, inbox, outbox, work)
    assert last.code == cli.EXIT_OK, (killed, last.lines, last.said[-3000:])
    states = {last.line(f)["status"] for f in folders if batch_key(SECRET, NAME, f) in last.lines}
    assert states <= {"DONE"}
    assert_outbox_consistent(outbox, len(folders))
    assert_nothing_identifying("\n".join([*said, last.said]), folders)
    # identifier lists go before the DONE transaction: no kill point leaves them behind
    assert not list(work.rglob("identifiers.json"))


# ---- the ledger's own faults ---------------------------------------------------------------


def lose_ledger(work: Path) -> None:
    """The ledger is gone: the SQLite file deleted, or the PostgreSQL tables dropped (every
    table the migrations make, the query/retrieve ones too)."""
    from sqlalchemy import create_engine

    from sendit_ops.core.ledger import dispose_engines
    from sendit_ops.core.ledger.schema import VERSION_TABLE, metadata
    from sendit_ops.pacs import request_ledger

    dispose_engines()
    if not LEDGER_URL:
        for path in work.glob("ledger.sqlite*"):
            path.unlink()
        return
    engine = create_engine(LEDGER_URL[0])
    with engine.begin() as conn:
        tables = [*metadata.sorted_tables, *request_ledger.metadata.sorted_tables]
        for name in [t.name for t in tables] + [VERSION_TABLE]:
            conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{name}" CASCADE')
    engine.dispose()


def test_a_lost_ledger_is_said_and_changed_studies_are_replaced_on_reprocess(
    tmp_path, caplog, capfd
):
    """The ledger lost, a study then changed: the loss is said (not silently started over);
    the unchanged study's archive is recognised and kept (adopted); the changed one is
    refused with the way out, and a --reprocess run replaces it, recorded in its batch.
    Never a permanent ERROR."""
    inbox, outbox, work = tmp_path / "in", tmp_path / "out", tmp_path / "work"
    folders = ["ACC23001", "ACC23002"]
    for n, folder in enumerate(folders):
        study(inbox / folder, n)
    first = run_sendit(caplog, capfd, inbox, outbox, work)
    assert first.code == cli.EXIT_OK, first.lines
    lose_ledger(work)
    study(inbox / "ACC23002", 1, images=3)  # one image more: another archive, same name

    second = run_sendit(caplog, capfd, inbox, outbox, work)
    assert "the ledger was lost or replaced" in second.said
    assert second.line("ACC23001")["status"] == "DONE"  # identical archive: kept
    changed = second.line("ACC23002")
    assert changed["status"] == "ERROR" and "--reprocess" in changed["reasons"]
    assert_outbox_consistent(outbox, 2)

    third = run_sendit(caplog, capfd, inbox, outbox, work, "--reprocess")
    assert third.code == cli.EXIT_OK, third.lines
    assert_outbox_consistent(outbox, 2)
    record = third.record("ACC23002")
    assert any("the ledger did not know" in w for w in record.warnings)
    assert len(next(outbox.rglob("*.tar.gz")).read_bytes()) > 0
    assert_nothing_identifying(second.said + third.said, folders)


def test_an_unreachable_ledger_fails_fast_with_one_line_and_no_password(tmp_path, caplog, capfd):
    inbox = tmp_path / "in"
    study(inbox / "ACC23101", 1)
    url = "postgresql+psycopg2://sendit:s3cretpw@127.0.0.1:1/ledger"
    started = time.monotonic()
    caplog.clear()
    capfd.readouterr()
    args = ["run", "--input", str(inbox), "--outbox", str(tmp_path / "out"), "--name", NAME]
    args += ["--work-root", str(tmp_path / "work"), "--set", f"ledger_url={url}"]
    code = cli.main(args)
    out, err = capfd.readouterr()
    assert code == cli.EXIT_USAGE  # the configuration exit status
    assert time.monotonic() - started < 60
    line = [x for x in err.splitlines() if x.startswith("sendit: ")]
    assert len(line) == 1 and "127.0.0.1:1/ledger cannot be reached" in line[0], err
    assert "correct 'ledger_url'" in line[0]
    assert "s3cretpw" not in out + err + caplog.text and "Traceback" not in err


def run_cli(capfd, inbox: Path, tmp_path: Path, url: str, *args: str) -> tuple[int, str, float]:
    """``sendit run`` on the ledger at ``url``: exit status, stderr, seconds taken."""
    capfd.readouterr()
    started = time.monotonic()
    argv = ["run", "--input", str(inbox), "--outbox", str(tmp_path / "out"), "--name", NAME]
    argv += ["--work-root", str(tmp_path / "work"), "--set", f"ledger_url={url}", *args]
    code = cli.main(argv)
    out, err = capfd.readouterr()
    return code, out + err, time.monotonic() - started


def test_a_read_only_ledger_fails_fast_with_one_line(tmp_path, caplog, capfd):
    """SQLite: the work root remounted read-only. PostgreSQL: a scratch database set
    read-only (``default_transaction_read_only``), then a user that may only read it. Each
    time: the configuration exit status at once, one line naming the ledger (the URL
    without its password) and the fix, no traceback."""
    if LEDGER_URL:
        read_only_postgres(tmp_path, caplog, capfd)
    else:
        read_only_sqlite(tmp_path, caplog, capfd)


def read_only_postgres(tmp_path: Path, caplog, capfd) -> None:
    from sendit_ops.core.ledger import dispose_engines

    inbox = tmp_path / "in"
    study(inbox / "ACC23202", 1)
    name = f"sendit_ro_{os.getpid()}_{secrets.token_hex(3)}"
    # trust authentication on this machine: the password is accepted and must never be shown
    url = database_url(name, password="s3cretpw")
    reader = database_url(name, f"{name}_reader", "s3cretpw")
    seen = []
    with scratch_database(name, roles=[f"{name}_reader"]) as admin:
        code, said, _ = run_cli(capfd, inbox, tmp_path, url)
        assert code == cli.EXIT_OK, said[-2000:]
        dispose_engines()
        admin.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
        code, said, seconds = run_cli(capfd, inbox, tmp_path, url, "--reprocess")
        seen.append(said)
        lines = [x for x in said.splitlines() if x.startswith("sendit: ledger ")]
        assert code == cli.EXIT_USAGE, said[-2000:]
        assert seconds < 60
        assert len(lines) == 1, said[-2000:]
        assert f"//postgres:***@127.0.0.1:5432/{name} cannot be written" in lines[0]
        assert "the database is read-only" in lines[0] and "correct 'ledger_url'" in lines[0]

        dispose_engines()
        admin.execute(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
        admin.execute(f'CREATE ROLE "{name}_reader" LOGIN')
        admin.execute(f'GRANT CONNECT ON DATABASE "{name}" TO "{name}_reader"')
        import psycopg2  # the grants on tables are made inside the scratch database

        inside = psycopg2.connect(dbname=name, host="127.0.0.1", port=5432, user="postgres")
        inside.autocommit = True
        with inside.cursor() as cur:
            cur.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{name}_reader"')
        inside.close()
        code, said, seconds = run_cli(capfd, inbox, tmp_path, reader, "--reprocess")
        seen.append(said)
        lines = [x for x in said.splitlines() if x.startswith("sendit: ledger ")]
        assert code == cli.EXIT_USAGE, said[-2000:]
        assert seconds < 60 and len(lines) == 1, said[-2000:]
        assert f"//{name}_reader:***@127.0.0.1:5432/{name} cannot be written" in lines[0]
        assert "may not write the ledger's tables" in lines[0]
    everything = "".join(seen) + caplog.text
    assert "s3cretpw" not in everything and "Traceback" not in everything


def read_only_sqlite(tmp_path: Path, caplog, capfd) -> None:
    inbox, outbox, work = tmp_path / "in", tmp_path / "out", tmp_path / "work"
    study(inbox / "ACC23201", 1)
    with tmpfs(work, "16m"):
        assert run_sendit(caplog, capfd, inbox, outbox, work).code == cli.EXIT_OK
        from sendit_ops.core.ledger import dispose_engines

        dispose_engines()
        subprocess.run(["mount", "-o", "remount,ro", str(work)], check=True)
        try:
            capfd.readouterr()
            later = run_sendit(caplog, capfd, inbox, outbox, work, "--reprocess")
        finally:
            subprocess.run(["mount", "-o", "remount,rw", str(work)], check=True)
    assert later.code == cli.EXIT_USAGE
    said = [x for x in later.said.splitlines() if x.startswith("sendit: ledger ")]
    assert len(said) == 1 and str(work / "ledger.sqlite") in said[0], later.said
    assert "cannot be written" in said[0] and "writable" in said[0]


def test_two_first_runs_on_a_fresh_home_prepare_airflow_once(tmp_path):
    """Two `sendit run` at once on a fresh home: the metadata database is prepared under a
    lock, once; neither run fails ("bad arguments" was one of them, 2 times in 3)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    procs = []
    for n in range(2):
        inbox = tmp_path / f"in{n}"
        study(inbox / f"ACC2330{n}", n)
        env_n = {**env, "SENDIT_HOME": str(tmp_path / "home")}
        args = ["run", "--input", str(inbox), "--outbox", str(tmp_path / f"out{n}")]
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "sendit_ops.airflow.cli", *args],
                env=env_n,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-1500:] for _, e in outs]
    said = "".join(o for o, _ in outs)
    assert said.count("preparing the Airflow metadata database") == 1


def test_a_dicomdir_in_a_study_folder_is_skipped_with_a_warning(tmp_path, caplog, capfd):
    from pydicom.fileset import FileSet

    inbox = tmp_path / "in"
    files = study(inbox / "ACC23401", 1)
    fs = FileSet()
    fs.add(files[0])
    fs.write(tmp_path / "media")
    shutil.copy(tmp_path / "media" / "DICOMDIR", inbox / "ACC23401" / "DICOMDIR")
    outcome = run_sendit(caplog, capfd, inbox, tmp_path / "out", tmp_path / "work")
    line = outcome.line("ACC23401")
    assert line["status"] == "DONE", line
    warnings = outcome.record("ACC23401").warnings
    assert any("Media Storage Directory Storage" in w and "skipped" in w for w in warnings)
    assert_outbox_consistent(tmp_path / "out", 1)
