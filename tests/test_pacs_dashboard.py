"""The dashboard's PACS section: counts by state and the latest studies per configured PACS,
keyed, without a patient value."""

from __future__ import annotations

import json

import pytest
from conftest import SECRET
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sendit_ops.airflow.dashboard import app as dashboard_app
from sendit_ops.airflow.dashboard.app import may_view
from sendit_ops.pacs.keys import item_key, study_key
from sendit_ops.pacs.model import RetrievalResult, StudyState
from sendit_ops.pacs.request_ledger import RequestLedger

pytestmark = pytest.mark.unit


def test_pacs_section_json_and_table(monkeypatch, tmp_path):
    work = tmp_path / "work"
    monkeypatch.setenv(
        "AIRFLOW_VAR_SENDIT_INPUT_FOLDERS",
        json.dumps([{"path": str(tmp_path / "in"), "name": "incoming"}]),
    )
    monkeypatch.setenv("AIRFLOW_VAR_SENDIT_SETTINGS", json.dumps({"work_root": str(work)}))
    monkeypatch.setenv(
        "AIRFLOW_VAR_SENDIT_PACS_SOURCES",
        json.dumps([{"name": "rad", "conn_id": "pacs_rad", "input_folder": "incoming"}]),
    )
    ledger = RequestLedger(work, "rad")
    good, short = study_key(SECRET, "1.2.3.1"), study_key(SECRET, "1.2.3.2")
    for key, acc in ((good, "ACC55501"), (short, "ACC55502")):
        ledger.record_item(item_key(SECRET, "accession", acc), "accession", "FOUND", 1, "", "r1")
        ledger.record_found(key, item_key(SECRET, "accession", acc), 6, "r1")
    ledger.record_item(
        item_key(SECRET, "accession", "ACC55503"), "accession", "NOT_FOUND", 0, "", "r1"
    )
    ledger.record_result(
        RetrievalResult(good, StudyState.RETRIEVED, 6, 6, 3_000_000, 2.5, 1, folder=good), "r1"
    )
    ledger.record_result(
        RetrievalResult(
            short,
            StudyState.INCOMPLETE,
            6,
            5,
            2_500_000,
            9.0,
            3,
            reason="received 5 of 6 instances after 3 attempt(s)",
        ),
        "r1",
    )
    root = FastAPI()
    root.mount("/sendit", dashboard_app)
    dashboard_app.dependency_overrides[may_view] = lambda: None
    try:
        client = TestClient(root)
        (entry,) = client.get("/sendit/api/pacs").json()["pacs"]
        page = client.get("/sendit/pacs").text
    finally:
        dashboard_app.dependency_overrides.pop(may_view, None)
    assert entry["dag_id"] == "sendit_retrieve_rad"
    assert entry["studies"] == {"RETRIEVED": 1, "INCOMPLETE": 1}
    assert entry["items"] == {"FOUND": 2, "NOT_FOUND": 1}
    latest = {r["study"]: r for r in entry["latest"]}
    assert (latest[short]["expected"], latest[short]["received"]) == (6, 5)
    assert latest[good]["megabytes"] == 3.0
    assert "received 5 of 6" in page and "INCOMPLETE" in page
    for text in (json.dumps(entry), page):
        assert "ACC555" not in text and "1.2.3." not in text
