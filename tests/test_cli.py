"""The `sendit` command as a user runs it."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from conftest import ROOT

SENDIT = str(ROOT / ".venv" / "bin" / "sendit")


def run(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["SENDIT_HOME"] = str(home)
    return subprocess.run([SENDIT, *args], env=env, capture_output=True, text=True, timeout=600)


def test_sample_then_run_prints_the_summary(tmp_path):
    assert run("sample", str(tmp_path / "in"), home=tmp_path / "h").returncode == 0
    done = run(
        "run",
        "--input",
        str(tmp_path / "in"),
        "--outbox",
        str(tmp_path / "out"),
        home=tmp_path / "h",
    )
    # the demo has batches that end ERROR: the exit status says so (3), by default
    assert done.returncode == 3, done.stderr[-3000:]
    report = re.search(r"^report: (.+)$", done.stdout, re.MULTILINE)
    assert report and "batch(es): DONE" in done.stdout, done.stdout[-3000:]
    states = json.loads((Path(report[1]) / "summary.json").read_text())["states"]
    assert states.get("ERROR") and states.get("EMPTY")
    assert (tmp_path / "h" / "secret_key").stat().st_mode & 0o777 == 0o600
    delivered = len(list((tmp_path / "out" / "Collection").rglob("*.tar.gz")))
    assert delivered == states["DONE"] >= 2
    strict = run(
        "run",
        "--input",
        str(tmp_path / "in"),
        "--outbox",
        str(tmp_path / "out"),
        "--reprocess",
        "--strict",
        home=tmp_path / "h",
    )
    assert strict.returncode == 3


def test_exit_status_is_documented_and_zero_without_errors(tmp_path):
    """``sendit run --help`` documents the exit status; a run whose batches all end DONE or
    EMPTY exits 0."""
    helped = run("run", "--help", home=tmp_path)
    assert "exit status" in helped.stdout and "ERROR" in helped.stdout
    from sendit_ops.sample_data import PATIENTS, write_study

    write_study(tmp_path / "in" / "ACC1", PATIENTS[0], "ACC1", "20240115", "CT", 1, 2)
    done = run(
        "run", "--input", str(tmp_path / "in"), "--outbox", str(tmp_path / "o"), home=tmp_path
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "DONE 1" in done.stdout


def test_secret_key_is_created_0600_without_a_chmod(tmp_path, monkeypatch):
    """Created by os.open(O_CREAT | O_EXCL, 0o600): never chmod'ed, never world-readable,
    and an existing key is kept."""
    from sendit_ops.airflow import cli

    monkeypatch.delenv("AIRFLOW_VAR_SENDIT_SECRET_KEY", raising=False)
    monkeypatch.setattr(os, "chmod", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    monkeypatch.setattr("pathlib.Path.chmod", lambda *a, **k: (_ for _ in ()).throw(OSError))
    old = os.umask(0)  # the most permissive umask: the mode still comes from os.open
    try:
        cli.ensure_secret_key(tmp_path / "h")
    finally:
        os.umask(old)
    key_file = tmp_path / "h" / "secret_key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    key = os.environ["AIRFLOW_VAR_SENDIT_SECRET_KEY"]
    monkeypatch.delenv("AIRFLOW_VAR_SENDIT_SECRET_KEY")
    cli.ensure_secret_key(tmp_path / "h")
    assert os.environ["AIRFLOW_VAR_SENDIT_SECRET_KEY"] == key == key_file.read_text()


def test_bad_arguments_give_one_clear_line(tmp_path):
    missing = run(
        "run", "--input", str(tmp_path / "nope"), "--outbox", str(tmp_path / "o"), home=tmp_path
    )
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1].startswith("sendit: input folder")
    (tmp_path / "in").mkdir()
    bad = run(
        "run",
        "--input",
        str(tmp_path / "in"),
        "--outbox",
        str(tmp_path / "o"),
        "--set",
        "gzip_level=42",
        home=tmp_path,
    )
    assert bad.returncode == 2
    assert "'gzip_level' must be between 0 and 9" in bad.stderr
    assert "Traceback" not in bad.stderr
