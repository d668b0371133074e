"""The `sendit` command as a user runs it."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT

pytestmark = pytest.mark.live

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
    # a first run on a fresh home prepares Airflow's database quietly: Airflow's own info
    # lines (DAG bundles, dag runs, task states) are not an operator's summary
    assert "[info" not in done.stdout + done.stderr, (done.stdout + done.stderr)[:3000]
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


STANFORD = {
    "accessToken": "access-0123456789",
    "refreshToken": "refresh-0123456789",
    "token_uri": "https://dasher.example.org/api/token",
    "client_id": "sendit",
}


def test_import_stanford_without_token_uri_is_one_clear_line(tmp_path):
    """A .stanford file lacking a field: one line naming it, exit 2, no traceback."""
    creds = tmp_path / ".stanford"
    creds.write_text(json.dumps({k: v for k, v in STANFORD.items() if k != "token_uri"}))
    done = run(
        "import-stanford", str(creds), "--base-url", "https://dasher.example.org/api", home=tmp_path
    )
    assert done.returncode == 2 and done.stdout == ""
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sendit: ") and "'token_uri'" in lines[0]
    # nor without a base URL, nor an unreadable file
    creds.write_text(json.dumps(STANFORD))
    no_url = run("import-stanford", str(creds), home=tmp_path)
    assert no_url.returncode == 2 and "--base-url" in no_url.stderr
    assert len(no_url.stderr.strip().splitlines()) == 1
    absent = run("import-stanford", str(tmp_path / "nope"), "--base-url", "x", home=tmp_path)
    assert absent.returncode == 2 and "cannot read" in absent.stderr
    assert "Traceback" not in absent.stderr + no_url.stderr


def test_import_stanford_prints_a_connection_airflow_reads_from_the_environment(
    tmp_path, monkeypatch
):
    """What docs/dasher.md pastes into AIRFLOW_CONN_DASHER_DEFAULT: Airflow's JSON form without
    a conn_id (a mapping {conn_id: ...} or a "conn_id" key makes Airflow report that the
    connection "isn't defined"). Read back by `airflow connections get`, by the Task SDK's
    parser, and accepted by the DasherHook."""
    creds = tmp_path / ".stanford"
    creds.write_text(json.dumps(STANFORD))
    url = "https://dasher.example.org/api"
    done = run("import-stanford", str(creds), "--base-url", url, home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 1  # one line: fits an .env file too
    conn = json.loads(done.stdout)
    assert "conn_id" not in conn and conn["conn_type"] == "dasher" and conn["host"] == url

    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    env.update(AIRFLOW_HOME=str(tmp_path / "airflow"), AIRFLOW_CONN_DASHER_DEFAULT=done.stdout)
    airflow = str(ROOT / ".venv" / "bin" / "airflow")
    got = subprocess.run(
        [airflow, "connections", "get", "dasher_default", "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert got.returncode == 0, got.stderr[-2000:]
    shown = json.loads(next(x for x in got.stdout.splitlines() if x.startswith("[{")))[0]
    assert (shown["conn_type"], shown["host"], shown["login"], shown["password"]) == (
        "dasher",
        url,
        "sendit",
        STANFORD["accessToken"],
    )
    assert shown["extra_dejson"]["token_uri"] == STANFORD["token_uri"]

    from airflow.sdk.definitions.connection import Connection

    from sendit_ops.airflow.dasher_hook import DasherHook

    parsed = Connection.from_json(done.stdout, conn_id="dasher_default")
    assert parsed.extra_dejson["refresh_token"] == STANFORD["refreshToken"]
    monkeypatch.setenv("AIRFLOW_CONN_DASHER_DEFAULT", done.stdout)
    client = DasherHook("dasher_default").get_client()
    assert client.base_url == url
