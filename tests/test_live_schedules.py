"""Streaming pick-up and backfills against a running scheduler, triggerer and DAG processor."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import ROOT, wait_for

from devtools.airflow_stack import AirflowStack, create_database
from sendit_ops.delivery import outbox as box
from sendit_ops.sample_data import PATIENTS, write_study

pytestmark = pytest.mark.live


def stamp(folder: Path, when: datetime) -> None:
    ts = when.timestamp()
    for p in [*folder.rglob("*"), folder]:
        os.utime(p, (ts, ts))


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("live-schedules")
    watch_in, daily_in = root / "watch_in", root / "daily_in"
    write_study(watch_in / "ACC20001.tmp37", PATIENTS[0], "ACC20001", "20240115", "CT", 1, 2)
    for n, day in ((1, 1), (2, 2), (3, 5)):
        acc = f"ACC3000{n}"
        write_study(daily_in / acc, PATIENTS[1], acc, f"202403{day:02d}", "CT", 1, 1)
        stamp(daily_in / acc, datetime(2024, 3, day, 12, 0, tzinfo=UTC))
    settings = {"work_root": str(root / "work"), "outbox": str(root / "outbox")}
    folders = [
        {
            "path": str(watch_in),
            "name": "watch",
            "schedule": "watch",
            "settings": {"watch_poll_seconds": 3, "google_storage_collection": "WATCH"},
        },
        {
            "path": str(daily_in),
            "name": "daily",
            "schedule": "@daily",
            "settings": {"google_storage_collection": "DAILY"},
        },
    ]
    env = {
        "AIRFLOW_VAR_SENDIT_INPUT_FOLDERS": json.dumps(folders),
        "AIRFLOW_VAR_SENDIT_SETTINGS": json.dumps(settings),
        "AIRFLOW_VAR_SENDIT_SECRET_KEY": os.environ["AIRFLOW_VAR_SENDIT_SECRET_KEY"],
        "SENDIT_HOME": str(root / "home"),
    }
    db = create_database(f"sendit_sched_{secrets.token_hex(4)}", migrated=True)
    running = AirflowStack(root / "airflow", ROOT / "dags", db, env=env).start()
    running.wait_dag("sendit_watch")
    running.wait_dag("sendit_daily")
    yield running, root
    running.stop()


def test_streaming_picks_up_a_renamed_folder_and_idles_otherwise(stack):
    airflow, root = stack
    time.sleep(20)  # the trigger polls every 3 s: a .tmp folder must not start anything
    assert airflow.runs("sendit_watch") == []
    renamed = time.monotonic()
    (root / "watch_in" / "ACC20001.tmp37").rename(root / "watch_in" / "ACC20001")
    table = box.table_path(root / "outbox", "WATCH", "dicom")
    assert wait_for(lambda: len(box.read_rows(table)) == 1, timeout=120)
    seconds = time.monotonic() - renamed
    print(f"\nstreaming: rename to DONE in {seconds:.1f} s")
    assert seconds < 120
    runs = airflow.runs("sendit_watch")
    assert len(runs) == 1 and runs[0]["run_type"] == "asset_triggered"
    assert wait_for(lambda: airflow.runs("sendit_watch")[0]["state"] == "success", 60)
    time.sleep(15)  # nothing new arrived: no new run
    assert len(airflow.runs("sendit_watch")) == 1
    (root / "metrics-streaming.txt").write_text(f"{seconds:.1f}\n")


def test_backfill_reprocesses_exactly_the_interval_idempotently(stack):
    airflow, root = stack
    cmd = [
        str(Path(os.sys.executable).with_name("airflow")),
        "backfill",
        "create",
        "--dag-id",
        "sendit_daily",
        "--from-date",
        "2024-03-01",
        "--to-date",
        "2024-03-02",
    ]
    subprocess.run(cmd, env=airflow.env, check=True, capture_output=True, timeout=120)

    def finished():
        runs = [r for r in airflow.runs("sendit_daily") if r["run_type"] == "backfill"]
        return runs if runs and all(r["state"] in ("success", "failed") for r in runs) else None

    runs = wait_for(finished, timeout=300, step=3)
    assert runs and all(r["state"] == "success" for r in runs), runs
    table = box.table_path(root / "outbox", "DAILY", "dicom")
    rows = box.read_rows(table)
    assert len(rows) == 2  # batches finished on 2024-03-01 and 03-02, not 03-05
    first = table.read_text()
    objects = sorted(p.name for p in (root / "outbox").rglob("*.tar.gz"))

    # the same backfill again, by REST this time: nothing new, nothing duplicated
    def backfills_done():
        listed = airflow.api("GET", "/api/v2/backfills", params={"dag_id": "sendit_daily"})
        return all(b.get("completed_at") for b in listed.json()["backfills"])

    assert wait_for(backfills_done, timeout=120, step=3)
    response = airflow.api(
        "POST",
        "/api/v2/backfills",
        json={
            "dag_id": "sendit_daily",
            "from_date": "2024-03-01T00:00:00Z",
            "to_date": "2024-03-02T00:00:00Z",
            "reprocess_behavior": "completed",
        },
    )
    assert response.status_code in (200, 201), response.text
    backfill_id = response.json()["id"]

    def second_done():
        backfill = airflow.api("GET", f"/api/v2/backfills/{backfill_id}").json()
        return backfill.get("completed_at")

    assert wait_for(second_done, timeout=300, step=3)
    runs = [r for r in airflow.runs("sendit_daily") if r["run_type"] == "backfill"]
    assert runs and all(r["state"] == "success" for r in runs)
    assert table.read_text() == first
    assert sorted(p.name for p in (root / "outbox").rglob("*.tar.gz")) == objects
