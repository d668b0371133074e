"""The retrieve DAG through Airflow (dag.test) against a real PACS (Orthanc): the request
form, the Connection types, then the input folder's DAG delivering what arrived."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ROOT

from sendit_ops.delivery import outbox as box
from sendit_ops.pacs.request_ledger import RequestLedger

pytestmark = pytest.mark.live


def pacs_env(monkeypatch, tmp_path: Path, pacs, method: str = "c-get", **source) -> dict:
    settings = {"work_root": str(tmp_path / "work"), "outbox": str(tmp_path / "outbox")}
    (tmp_path / "incoming").mkdir(exist_ok=True)
    monkeypatch.setenv(
        "AIRFLOW_VAR_SENDIT_INPUT_FOLDERS",
        json.dumps([{"path": str(tmp_path / "incoming"), "name": "incoming"}]),
    )
    monkeypatch.setenv("AIRFLOW_VAR_SENDIT_SETTINGS", json.dumps(settings))
    monkeypatch.setenv(
        "AIRFLOW_VAR_SENDIT_PACS_SOURCES",
        json.dumps(
            [
                {
                    "name": "testpacs",
                    "conn_id": "pacs_test",
                    "input_folder": "incoming",
                    "trigger_folder_dag": False,
                    "backoff_seconds": 0.5,
                    **source,
                }
            ]
        ),
    )
    if method == "dicomweb":
        conn = {
            "conn_type": "dicomweb",
            "host": pacs.orthanc.dicomweb_url,
            "extra": {"max_find_results": pacs.orthanc.limit_find_results},
        }
    else:
        conn = {
            "conn_type": "dicom_pacs",
            "host": "127.0.0.1",
            "port": pacs.orthanc.dicom_port,
            "schema": pacs.orthanc.aet,
            "login": "SENDIT",
            "extra": {"method": method, "move_port": pacs.move_port, "timeout": 15},
        }
    monkeypatch.setenv("AIRFLOW_CONN_PACS_TEST", json.dumps(conn))
    return settings


def test_one_retrieve_dag_per_pacs_with_its_pool_and_window(monkeypatch, tmp_path, pacs):
    from airflow.dag_processing.dagbag import DagBag

    pacs_env(
        monkeypatch,
        tmp_path,
        pacs,
        pool="pacs_test",
        associations=3,
        window="19:00-07:00",
        schedule="0 19 * * *",
    )
    bag = DagBag(str(ROOT / "dags"))
    assert bag.import_errors == {}
    dag = bag.dags["sendit_retrieve_testpacs"]
    assert [t.task_id for t in dag.topological_sort()] == [
        "wait_for_window",
        "find",
        "retrieve",
        "summarize",
        "check",
    ]
    retrieve = dag.get_task("retrieve")
    assert retrieve.pool == "pacs_test" and retrieve.max_active_tis_per_dag == 3
    assert retrieve.retries == 2 and retrieve.retry_exponential_backoff
    assert set(dag.params.keys()) == {
        "accession_numbers",
        "study_uids",
        "date_from",
        "date_to",
        "modality",
        "request_file",
    }
    assert "sendit_incoming" in bag.dag_ids


@pytest.mark.parametrize("method", ["c-get", "dicomweb"])
def test_retrieve_dag_fetches_by_accession_and_the_folder_dag_delivers(
    airflow_db, monkeypatch, tmp_path, pacs, method, capfd
):
    from sendit_ops.airflow.dag_factory import build_all_dags
    from sendit_ops.airflow.retrieve_dag import build_retrieve_dags

    settings = pacs_env(monkeypatch, tmp_path, pacs, method)
    wanted = sorted(pacs.studies)[:3]
    dag = build_retrieve_dags()["sendit_retrieve_testpacs"]
    run = dag.test(run_conf={"accession_numbers": [*wanted, "NOT-THERE-1"]})
    assert str(run.state).endswith("success")
    done = [p for p in (tmp_path / "incoming").iterdir()]
    assert len(done) == 3 and not [p for p in done if ".tmp" in p.name]
    ledger = RequestLedger(settings["work_root"], "testpacs")
    assert ledger.study_counts() == {"RETRIEVED": 3}
    assert ledger.item_counts() == {"FOUND": 3, "NOT_FOUND": 1}
    # a file request with the same studies: nothing fetched again
    request = tmp_path / "request.txt"
    request.write_text("AccessionNumber\n" + "\n".join(wanted) + "\n")
    again = dag.test(run_conf={"request_file": str(request)})
    assert str(again.state).endswith("success")
    assert sorted(r.attempts for r in ledger.studies()) == [1, 1, 1]
    # the input folder's DAG de-identifies and delivers them
    folder_run = build_all_dags()["sendit_incoming"].test(run_conf={})
    assert str(folder_run.state).endswith("success")
    rows = box.read_rows(box.table_path(Path(settings["outbox"]), "DEMO", "dicom"))
    assert len(rows) == 3
    text = capfd.readouterr()
    for acc in [*wanted, "NOT-THERE-1"]:
        assert acc not in text.out + text.err, "an accession number is in the task logs"
