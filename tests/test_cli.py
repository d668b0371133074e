"""The `sendit` command as a user runs it."""

from __future__ import annotations

import os
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
    assert done.returncode == 0, done.stderr[-3000:]
    assert "7 batch(es): DONE 3, EMPTY 2, ERROR 2" in done.stdout
    assert (tmp_path / "h" / "secret_key").stat().st_mode & 0o777 == 0o600
    assert len(list((tmp_path / "out" / "Collection").rglob("*.tar.gz"))) == 3
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
