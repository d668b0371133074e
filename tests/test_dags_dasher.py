"""End-to-end dag.test() runs with DASHER (the dev server, a separate process) as provider."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import PHI_STRINGS

from devtools.dasher_server import DasherState
from sendit_ops.delivery import outbox as box
from sendit_ops.pseudonyms.dasher_client import stanford_to_connection

pytestmark = pytest.mark.live


def configure(monkeypatch, dasher, demo_input: Path, root: Path) -> dict:
    settings = {
        "work_root": str(root / "work"),
        "outbox": str(root / "outbox"),
        "pseudonym_provider": "dasher",
    }
    monkeypatch.setenv(
        "AIRFLOW_VAR_SENDIT_INPUT_FOLDERS", json.dumps([{"path": str(demo_input), "name": "demo"}])
    )
    monkeypatch.setenv("AIRFLOW_VAR_SENDIT_SETTINGS", json.dumps(settings))
    monkeypatch.setenv(
        "AIRFLOW_CONN_DASHER_DEFAULT", json.dumps(stanford_to_connection(dasher.creds(), ""))
    )
    return settings


def run_dag(conf=None):
    from sendit_ops.airflow.dag_factory import build_all_dags

    return build_all_dags()["sendit_demo"].test(run_conf=conf or {})


def test_dasher_pseudonyms_reach_the_outputs_and_tokens_rotate_across_runs(
    airflow_db, dasher, demo_input, tmp_path, monkeypatch, capfd
):
    settings = configure(monkeypatch, dasher, demo_input, tmp_path)
    initial = dasher.creds()
    dasher.expire()  # the connection's access token is stale: the first call must refresh
    refreshes = dasher.stats()["refreshes"]
    run_dag()
    rows = box.read_rows(box.table_path(Path(settings["outbox"]), "DEMO", "dicom"))
    expected = DasherState(b"dasher-dev", 1).suid("demo", "Stanford MRN", "MRN100234")
    assert len(rows) == 4
    assert expected in {r["CodedPatientID"] for r in rows}
    jitter = DasherState(b"dasher-dev", 1).jitter("demo", "Stanford MRN", "MRN100234")
    from datetime import date, timedelta

    shifted = (date(2024, 1, 15) + timedelta(jitter)).strftime("%Y%m%d")
    assert any(
        f"{expected}_{shifted}_" in p.name for p in Path(settings["outbox"]).rglob("*.tar.gz")
    )
    assert dasher.stats()["refreshes"] == refreshes + 1
    # the next run (new task processes) uses the rotated tokens kept in the Variable
    run_dag({"reprocess": True})
    assert dasher.stats()["refreshes"] == refreshes + 1
    logs = "".join(capfd.readouterr())
    for secret in (initial["accessToken"], initial["refreshToken"]):
        assert secret not in logs
    for phi in PHI_STRINGS:
        assert phi not in logs, phi


def test_malformed_dasher_answers_put_batches_in_error_with_no_outputs(
    airflow_db, dasher, demo_input, tmp_path, monkeypatch, capfd
):
    settings = configure(monkeypatch, dasher, demo_input, tmp_path)
    # reuse the tokens the previous test rotated (the connection's are dead by now)
    dasher.fault("malformed", 100)
    try:
        run = run_dag()
    finally:
        dasher.clear()
    assert str(run.state).endswith("failed")
    summary = json.loads(next(Path(settings["work_root"]).rglob("summary.json")).read_text())
    errors = [b for b in summary["batch_lines"] if b["status"] == "ERROR"]
    assert len(errors) == 8  # the demo's 3 filter errors + the 5 batches DASHER would name
    assert sum("no 'results'" in b["reasons"] for b in errors) == 5
    assert not (Path(settings["outbox"]) / "Collection").exists()
    logs = "".join(capfd.readouterr())
    for phi in PHI_STRINGS:
        assert phi not in logs, phi


def test_missing_dasher_connection_fails_before_any_batch(
    airflow_db, demo_input, tmp_path, monkeypatch, capfd
):
    settings = {
        "work_root": str(tmp_path / "work"),
        "outbox": str(tmp_path / "outbox"),
        "pseudonym_provider": "dasher",
        "dasher_conn_id": "dasher_missing",
    }
    monkeypatch.setenv(
        "AIRFLOW_VAR_SENDIT_INPUT_FOLDERS", json.dumps([{"path": str(demo_input), "name": "demo"}])
    )
    monkeypatch.setenv("AIRFLOW_VAR_SENDIT_SETTINGS", json.dumps(settings))
    run = run_dag()
    assert str(run.state).endswith("failed")
    assert "the DASHER connection 'dasher_missing' does not exist" in "".join(capfd.readouterr())
    assert not (tmp_path / "work" / "sendit_demo" / "batches").exists()
