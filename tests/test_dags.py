"""The DAGs through Airflow itself: parsing, dag.test(), `airflow dags test`, task logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PHI_STRINGS, ROOT

from sendit_ops.delivery import outbox as box

pytestmark = pytest.mark.live


@pytest.fixture
def folders_env(monkeypatch, demo_input, tmp_path):
    settings = {"work_root": str(tmp_path / "work"), "outbox": str(tmp_path / "outbox")}
    monkeypatch.setenv(
        "AIRFLOW_VAR_SENDIT_INPUT_FOLDERS",
        json.dumps(
            [
                {"path": str(demo_input), "name": "demo"},
                {
                    "path": str(tmp_path / "other"),
                    "name": "other",
                    "schedule": "@hourly",
                    "settings": {
                        "dasher_pool": "sendit_dasher",
                        "chunk_size": 2,
                        "max_batches_in_flight": 4,
                    },
                },
            ]
        ),
    )
    monkeypatch.setenv("AIRFLOW_VAR_SENDIT_SETTINGS", json.dumps(settings))
    (tmp_path / "other").mkdir()
    return settings


def test_one_dag_per_folder_without_import_errors(folders_env):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(ROOT / "dags"))
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == {"sendit_demo", "sendit_other"}
    dag = bag.dags["sendit_demo"]
    assert [t.task_id for t in dag.topological_sort()] == [
        "discover",
        "filter_images",
        "fetch_pseudonyms",
        "anonymize_headers",
        "package_and_verify",
        "deliver",
        "report",
    ]
    assert dag.doc_md and "sendit" in dag.tags
    assert set(dag.params.keys()) == {
        "batches",
        "reprocess",
        "redeliver",
        "dry_run",
        "release",
        "reject",
        "provider",
        "delivery",
    }
    other = bag.dags["sendit_other"]
    assert other.max_active_runs == 1
    assert other.get_task("fetch_pseudonyms").pool == "sendit_dasher"
    assert dag.get_task("fetch_pseudonyms").pool == "default_pool"
    # at most max_batches_in_flight / chunk_size chunks of a step run at once
    assert other.get_task("anonymize_headers").max_active_tis_per_dag == 2
    assert dag.get_task("filter_images").retries == 2


def test_a_task_process_builds_only_its_own_dag(folders_env, monkeypatch):
    """In a task process (Airflow's parsing context names the DAG) only that DAG is built;
    an unknown dag id falls back to every DAG, so Airflow reports what is missing."""
    from airflow.sdk.definitions.context import _AIRFLOW_PARSING_CONTEXT_DAG_ID

    from sendit_ops.airflow.dag_factory import build_all_dags

    assert set(build_all_dags()) == {"sendit_demo", "sendit_other"}
    monkeypatch.setenv(_AIRFLOW_PARSING_CONTEXT_DAG_ID, "sendit_other")
    assert set(build_all_dags()) == {"sendit_other"}
    monkeypatch.setenv(_AIRFLOW_PARSING_CONTEXT_DAG_ID, "sendit_gone")
    assert set(build_all_dags()) == {"sendit_demo", "sendit_other"}


def test_dag_test_processes_the_demo_and_logs_no_phi(airflow_db, folders_env, capfd):
    from sendit_ops.airflow.dag_factory import build_all_dags

    dag = build_all_dags()["sendit_demo"]
    run = dag.test(run_conf={"batches": [], "reprocess": False, "dry_run": False})
    logs = capfd.readouterr()
    text = logs.out + logs.err
    # batches in ERROR mark the run failed (report task), after everything else was delivered
    assert str(run.state).endswith("failed")
    outbox = Path(folders_env["outbox"])
    rows = box.read_rows(box.table_path(outbox, "DEMO", "dicom"))
    assert len(rows) == 4
    summary_files = list(Path(folders_env["work_root"]).rglob("summary.json"))
    summary = json.loads(summary_files[0].read_text())
    assert summary["states"] == {"DONE": 4, "EMPTY": 1, "ERROR": 3, "HELD": 1}
    # the dose screen capture (ACC10010) is held for a reviewer: too much text to mask
    assert summary["images_pixel_cleaned"] == 3 and summary["images_held"] == 1
    assert "batches ended in ERROR" in text or "batch(es) ended in ERROR" in text
    for phi in PHI_STRINGS:
        assert phi not in text, f"{phi} appears in the task logs"
    # a second run: nothing new, no duplicate rows
    dag.test(run_conf={"batches": [], "reprocess": True, "dry_run": False})
    assert len(box.read_rows(box.table_path(outbox, "DEMO", "dicom"))) == 4
    assert len(list((outbox / "Collection").rglob("*.tar.gz"))) == 4


def test_airflow_cli_lists_and_tests_the_dag(airflow_db, folders_env, tmp_path):
    env = {**os.environ}
    airflow = [sys.executable, "-m", "airflow"]
    subprocess.run([*airflow, "dags", "reserialize"], env=env, capture_output=True, check=True)
    listed = subprocess.run(
        [*airflow, "dags", "list", "-o", "plain"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "sendit_demo" in listed.stdout and "sendit_other" in listed.stdout
    done = subprocess.run(
        [*airflow, "dags", "test", "sendit_demo", "-c", json.dumps({"batches": ["ACC10001"]})],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = box.read_rows(box.table_path(Path(folders_env["outbox"]), "DEMO", "dicom"))
    assert len(rows) == 1


def test_missing_secret_key_is_a_clear_error(airflow_db, folders_env, monkeypatch, capfd):
    from sendit_ops.airflow.dag_factory import build_all_dags

    monkeypatch.delenv("AIRFLOW_VAR_SENDIT_SECRET_KEY")
    run = build_all_dags()["sendit_demo"].test(run_conf={})
    text = "".join(capfd.readouterr())
    assert str(run.state).endswith("failed")
    assert "Airflow Variable 'sendit_secret_key' is missing" in text
    assert not Path(folders_env["outbox"]).exists()


def test_fused_task_layout_gives_the_same_outputs(airflow_db, demo_input, tmp_path, monkeypatch):
    """`"task_layout": "fused"`: one task per chunk runs the four steps and delivers the
    chunk; the archives and rows are byte-identical to the step-per-task DAG's, batch states
    included."""
    from sendit_ops.airflow.dag_factory import build_all_dags

    def folder(name: str, layout: str) -> dict:
        return {
            "path": str(demo_input),
            "name": name,
            "settings": {
                "task_layout": layout,
                "work_root": str(tmp_path / name / "work"),
                "outbox": str(tmp_path / name / "outbox"),
                "fail_run_on_batch_error": False,
            },
        }

    monkeypatch.setenv(
        "AIRFLOW_VAR_SENDIT_INPUT_FOLDERS",
        json.dumps([folder("steps", "steps"), folder("fused", "fused")]),
    )
    dags = build_all_dags()
    fused = dags["sendit_fused"]
    assert [t.task_id for t in fused.topological_sort()] == [
        "discover",
        "process_and_deliver",
        "report",
    ]
    outputs = {}
    for name, dag in dags.items():
        run = dag.test(run_conf={})
        assert str(run.state).endswith("success"), name
        # one XCom per task instance: a dict is not also pushed key by key (an API round
        # trip per key on every task's critical path)
        pushed = xcoms(dag.dag_id, run.run_id)
        assert {key for _, key in pushed} == {"return_value"}, name
        assert {task for task, _ in pushed} == {t.task_id for t in dag.tasks}, name
        outbox = tmp_path / name.removeprefix("sendit_") / "outbox"
        archives = sorted(outbox.rglob("*.tar.gz"))
        summary = json.loads(next((outbox.parent / "work").rglob("summary.json")).read_text())
        rows = box.read_rows(box.table_path(outbox, "DEMO", "dicom"))
        for row in rows:  # the local links name the outbox
            row.pop("storage_download"), row.pop("storage_metadataLink")
        outputs[name] = (
            [(p.name, p.read_bytes()) for p in archives],
            sorted(rows, key=lambda r: r["CodedAccessionNumberID"]),
            summary["states"],
        )
    assert len(outputs["sendit_fused"][0]) == 4
    assert outputs["sendit_fused"] == outputs["sendit_steps"]


def xcoms(dag_id: str, run_id: str) -> list[tuple[str, str]]:
    """(task id, key) of every XCom a run pushed."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    query = select(XComModel.task_id, XComModel.key).where(
        XComModel.dag_id == dag_id, XComModel.run_id == run_id
    )
    with create_session() as session:
        return [tuple(row) for row in session.execute(query)]


def test_unknown_task_layout_is_refused():
    from sendit_ops.core.errors import ConfigError
    from sendit_ops.core.settings import load_settings

    with pytest.raises(ConfigError, match="'task_layout' must be one of steps, fused"):
        load_settings({"task_layout": "parallel"})
