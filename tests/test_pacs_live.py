"""A real Airflow (api-server, scheduler, dag-processor, triggerer on PostgreSQL) retrieving
from a real PACS (Orthanc): a REST-triggered request of 5 accession numbers is retrieved,
handed on, de-identified and delivered to the outbox, with the PACS's pool bounding how
many retrieve tasks (each one association) run at once."""

from __future__ import annotations

import json
import os
import secrets
import time
from datetime import datetime

import pytest
from conftest import ROOT

from devtools.airflow_stack import AirflowStack, create_database
from sendit_ops.delivery import outbox as box
from sendit_ops.pacs.request_ledger import RequestLedger

pytestmark = pytest.mark.live

POOL_SLOTS = 2


def _max_overlap(tis: list[dict]) -> int:
    events = []
    for ti in tis:
        start = datetime.fromisoformat(ti["start_date"])
        end = datetime.fromisoformat(ti["end_date"])
        events += [(start, 1), (end, -1)]
    running = peak = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):
        running += step
        peak = max(peak, running)
    return peak


def test_rest_retrieve_of_five_accessions_is_delivered_end_to_end_within_the_pool(
    tmp_path_factory, pacs
):
    root = tmp_path_factory.mktemp("live-pacs")
    (root / "incoming").mkdir()
    settings = {"work_root": str(root / "work"), "outbox": str(root / "outbox")}
    conn = {
        "conn_type": "dicom_pacs",
        "host": "127.0.0.1",
        "port": pacs.orthanc.dicom_port,
        "schema": pacs.orthanc.aet,
        "login": "SENDIT",
        "extra": {"method": "c-get", "timeout": 15},
    }
    env = {
        "AIRFLOW_VAR_SENDIT_INPUT_FOLDERS": json.dumps(
            [{"path": str(root / "incoming"), "name": "fromPACS"}]
        ),
        "AIRFLOW_VAR_SENDIT_SETTINGS": json.dumps(settings),
        "AIRFLOW_VAR_SENDIT_SECRET_KEY": os.environ["AIRFLOW_VAR_SENDIT_SECRET_KEY"],
        "AIRFLOW_VAR_SENDIT_PACS_SOURCES": json.dumps(
            [
                {
                    "name": "live",
                    "conn_id": "pacs_live",
                    "input_folder": "fromPACS",
                    "pool": "pacs_live",
                    "associations": 5,
                    "chunk_size": 1,
                }
            ]
        ),
        "AIRFLOW_CONN_PACS_LIVE": json.dumps(conn),
        "SENDIT_HOME": str(root / "home"),
    }
    db = create_database(f"sendit_pacs_{secrets.token_hex(4)}", migrated=True)
    stack = AirflowStack(root / "airflow", ROOT / "dags", db, env=env).start()
    try:
        made = stack.api(
            "POST",
            "/api/v2/pools",
            json={
                "name": "pacs_live",
                "slots": POOL_SLOTS,
                "description": "associations with the live PACS",
            },
        )
        assert made.status_code in (200, 201), made.text
        stack.wait_dag("sendit_retrieve_live")
        stack.wait_dag("sendit_fromPACS")
        wanted = sorted(pacs.studies)[:5]
        run_id = stack.trigger("sendit_retrieve_live", {"accession_numbers": wanted})
        assert stack.wait_run("sendit_retrieve_live", run_id, timeout=400) == "success"
        tis = [
            t
            for t in stack.task_instances("sendit_retrieve_live", run_id)
            if t["task_id"] == "retrieve"
        ]
        assert len(tis) == 5 and {t["state"] for t in tis} == {"success"}
        assert {t["pool"] for t in tis} == {"pacs_live"}
        overlap = _max_overlap(tis)
        print(f"retrieve tasks running at once, at most: {overlap} (pool slots {POOL_SLOTS})")
        assert overlap <= POOL_SLOTS
        # the map index and the XCom name no accession number
        summary = stack.xcom("sendit_retrieve_live", run_id, "summarize")
        assert summary["states"] == {"RETRIEVED": 5} and summary["images"] == 30
        assert not [a for a in wanted if a in json.dumps(summary) + json.dumps(tis)]
        # hand_on started the folder's DAG: de-identified and delivered to the outbox
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline:
            runs = stack.runs("sendit_fromPACS")
            if runs and runs[-1]["state"] in ("success", "failed"):
                break
            time.sleep(3)
        assert runs and runs[-1]["state"] == "success", runs
        rows = box.read_rows(box.table_path(root / "outbox", "DEMO", "dicom"))
        assert len(rows) == 5
        assert not [a for a in wanted if a in json.dumps(rows)]
        assert RequestLedger(root / "work", "live").study_counts() == {"RETRIEVED": 5}
    finally:
        stack.stop()
