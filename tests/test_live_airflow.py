"""A real running Airflow: api-server, scheduler, dag-processor, triggerer on PostgreSQL,
driven over the REST API as an operator would (LocalExecutor, then Celery with 2 workers)."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import pytest
import requests
from conftest import ROOT

from devtools.airflow_stack import AirflowStack, create_database
from sendit_ops.delivery import outbox as box
from sendit_ops.sample_data import make_demo_input

pytestmark = pytest.mark.live

GOOD = ["ACC10001", "ACC10002", "ACC10004"]  # ACC10004: through the pixel stage


def stack_env(root: Path) -> dict[str, str]:
    settings = {"work_root": str(root / "work"), "outbox": str(root / "outbox")}
    return {
        "AIRFLOW_VAR_SENDIT_INPUT_FOLDERS": json.dumps(
            [{"path": str(root / "input"), "name": "live"}]
        ),
        "AIRFLOW_VAR_SENDIT_SETTINGS": json.dumps(settings),
        "AIRFLOW_VAR_SENDIT_SECRET_KEY": os.environ["AIRFLOW_VAR_SENDIT_SECRET_KEY"],
        "SENDIT_HOME": str(root / "home"),
    }


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("live-local")
    make_demo_input(root / "input")
    db = create_database(f"sendit_local_{secrets.token_hex(4)}", migrated=True)
    stack = AirflowStack(root / "airflow", ROOT / "dags", db, env=stack_env(root)).start()
    yield stack, root
    stack.stop()


def test_rest_trigger_with_conf_runs_to_success(local_stack):
    stack, root = local_stack
    assert requests.get(f"{stack.url}/api/v2/dags", timeout=10).status_code == 401
    assert stack.api("GET", "/api/v2/dags", auth=False).status_code == 401
    dag = stack.wait_dag("sendit_live")
    assert "sendit" in [t["name"] for t in dag["tags"]]
    run_id = stack.trigger("sendit_live", {"batches": GOOD})
    assert stack.wait_run("sendit_live", run_id) == "success"
    rows = box.read_rows(box.table_path(root / "outbox", "DEMO", "dicom"))
    assert len(rows) == 3
    summary = stack.xcom("sendit_live", run_id, "report")
    assert summary["states"] == {"DONE": 3} and summary["errors"] == []
    # an invalid param is refused with a readable message
    bad = stack.api(
        "POST",
        "/api/v2/dags/sendit_live/dagRuns",
        json={"logical_date": None, "conf": {"provider": "oracle"}},
    )
    assert bad.status_code == 400 and "provider" in bad.text
    _decisions_are_validated(stack, root)


def _decisions_are_validated(stack: AirflowStack, root: Path) -> None:
    """A release / reject that is not a HELD batch of the folder (issue 25): an id of the
    wrong length is refused by the trigger endpoint (400, no run created); a well-formed id
    no batch has fails the run's discover at once, with the reason in its log, and no batch
    is touched."""
    from sendit_ops.core.ledger import Ledger

    runs = len(stack.runs("sendit_live"))
    bad = stack.api(
        "POST",
        "/api/v2/dags/sendit_live/dagRuns",
        json={"logical_date": None, "conf": {"release": ["bdeadbeefdeadbeef"]}},
    )
    assert bad.status_code == 400, bad.text
    assert "release" in bad.text and "bdeadbeefdeadbeef" in bad.text, bad.text
    assert len(stack.runs("sendit_live")) == runs  # no run was created
    ledger = Ledger(root / "work", "sendit_live")
    before = {r.key: (r.state, r.run_id) for r in ledger.all()}
    run_id = stack.trigger("sendit_live", {"release": ["b0123456789abcde"]})
    assert stack.wait_run("sendit_live", run_id) == "failed"
    states = {t["task_id"]: t["state"] for t in stack.task_instances("sendit_live", run_id)}
    assert states["discover"] == "failed", states
    log = requests.get(
        f"{stack.url}/api/v2/dags/sendit_live/dagRuns/{run_id}/taskInstances/discover/logs/1",
        headers={"Accept": "application/json", "Authorization": f"Bearer {stack.token()}"},
        timeout=30,
    )
    assert "release b0123456789abcde: no batch of input folder 'live' has this id" in log.text
    assert {r.key: (r.state, r.run_id) for r in ledger.all()} == before


# what every run does, in this order, whatever runs it (the runner's journal, reduced)
RUN_PHASES = [
    "lock",
    "choose",
    "filter",
    "pseudonymize",
    "anonymize",
    "package",
    "finalize",
    "deliver",
    "report",
    "release",
]


def phases(journal: Path) -> list[str]:
    """The phases of a run's journal in order: the lock noted once (each task takes it
    again), a phase noted by several mapped tasks in a row counted once."""
    from sendit_ops.pipeline.run import read_journal

    seen: list[str] = []
    for entry in read_journal(journal):
        phase = entry["phase"]
        if (phase == "lock" and "lock" in seen) or (seen and seen[-1] == phase):
            continue
        seen.append(phase)
    return seen


def test_the_cli_the_live_dag_and_the_tests_run_a_folder_through_the_same_calls(
    local_stack, tmp_path, make_pipeline
):
    """One runner: the run lock taken first, the batches finalized before the delivery, the
    report written, the lock released: the same calls through a live Airflow DAG run, through
    `sendit run` (the DAG in-process) and through run_folder (the tests and the bench)."""
    import subprocess

    from sendit_ops.core.report import safe_name
    from sendit_ops.delivery.outbox import OutboxTarget
    from sendit_ops.pipeline.run import RunRequest, journal_path, run_folder

    stack, root = local_stack
    # reprocess: the batches were delivered by the test above, a plain run would skip them
    run_id = stack.trigger("sendit_live", {"batches": GOOD, "reprocess": True})
    assert stack.wait_run("sendit_live", run_id) == "success"
    live = root / "work" / "sendit_live" / "runs" / safe_name(run_id)
    assert phases(live / "journal.jsonl") == RUN_PHASES
    assert (live / "summary.json").is_file()

    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["SENDIT_HOME"] = str(tmp_path / "home")
    env["AIRFLOW_VAR_SENDIT_SECRET_KEY"] = os.environ["AIRFLOW_VAR_SENDIT_SECRET_KEY"]
    args = [str(ROOT / ".venv" / "bin" / "sendit"), "run", "--input", str(root / "input")]
    args += ["--outbox", str(tmp_path / "outbox"), "--work-root", str(tmp_path / "work")]
    args += [a for b in GOOD for a in ("--batch", b)]
    cli = subprocess.run(
        args,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert cli.returncode == 0, cli.stderr[-2000:]
    report = Path(cli.stdout.split("report: ")[-1].strip())
    assert phases(report / "journal.jsonl") == RUN_PHASES

    pipe = make_pipeline(run_id="in-process")
    result = run_folder(
        pipe,
        root / "input",
        lambda: OutboxTarget.from_settings(pipe.settings),
        RunRequest(batches=tuple(GOOD)),
    )
    assert {r.state for r in result.records.values()} == {"DONE"}
    assert phases(journal_path(pipe)) == RUN_PHASES


def test_batches_dashboard_plugin(local_stack):
    stack, _ = local_stack
    assert requests.get(f"{stack.url}/sendit/api/batches", timeout=10).status_code in (401, 403)
    listed = stack.api("GET", "/sendit/api/batches", params={"state": "DONE"})
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert body["total"] == 3 and {b["state"] for b in body["batches"]} == {"DONE"}
    assert all(b["batch_id"].startswith("b") for b in body["batches"])
    assert "ACC1000" not in listed.text and "source" not in listed.text
    page = stack.api("GET", "/sendit/")
    assert page.status_code == 200 and "sendit batches" in page.text and "DONE 3" in page.text


def test_rest_lists_batches_in_error(local_stack):
    stack, _ = local_stack
    run_id = stack.trigger("sendit_live", {})
    assert stack.wait_run("sendit_live", run_id) == "failed"
    summary = stack.xcom("sendit_live", run_id, "report")
    assert len(summary["errors"]) == 3
    assert any("study dates" in e["reasons"] for e in summary["errors"])
    report = next(
        t for t in stack.task_instances("sendit_live", run_id) if t["task_id"] == "report"
    )
    assert report["state"] == "failed"


def test_celery_executor_with_two_workers_sharing_the_work_root(tmp_path):
    root = tmp_path
    make_demo_input(root / "input")
    db = create_database(f"sendit_celery_{secrets.token_hex(4)}", migrated=True)
    redis_db = 1 + secrets.randbelow(14)
    env = {
        **stack_env(root),
        "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:6379/{redis_db}",
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + db,
        "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
        # one batch per chunk: many small tasks, so both workers get some
        "AIRFLOW_VAR_SENDIT_INPUT_FOLDERS": json.dumps(
            [
                {
                    "path": str(root / "input"),
                    "name": "live",
                    "settings": {"chunk_size": 1, "max_batches_in_flight": 8},
                }
            ]
        ),
    }
    stack = AirflowStack(
        root / "airflow", ROOT / "dags", db, executor="CeleryExecutor", celery_workers=2, env=env
    ).start()
    try:
        stack.wait_dag("sendit_live")
        run_id = stack.trigger("sendit_live", {"batches": GOOD})
        assert stack.wait_run("sendit_live", run_id, timeout=400) == "success"
        hosts = {
            t["hostname"]
            for t in stack.task_instances("sendit_live", run_id)
            if t["state"] == "success"
        }
        assert {"worker1", "worker2"} <= hosts, hosts
        assert len(box.read_rows(box.table_path(root / "outbox", "DEMO", "dicom"))) == 3
    finally:
        stack.stop()


def _descendants(roots: list[int]) -> set[int]:
    """Every process below ``roots`` now (by parent pid, from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found | set(roots)


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in ("Z", "X"):
            alive.add(pid)
    return alive


def test_a_stopped_stack_leaves_no_process_behind(tmp_path):
    """Every process a stack started (components, their executor workers, task processes,
    forkservers) is gone after stop: counted before and after."""
    from devtools.airflow_stack import processes_marked

    make_demo_input(tmp_path / "input")
    db = create_database(f"sendit_procs_{secrets.token_hex(4)}", migrated=True)
    stack = AirflowStack(tmp_path / "airflow", ROOT / "dags", db, env=stack_env(tmp_path))
    assert processes_marked(stack.mark) == []  # none before
    try:
        stack.start()
        stack.wait_dag("sendit_live")
        run_id = stack.trigger("sendit_live", {"batches": GOOD[:1]})
        assert stack.wait_run("sendit_live", run_id) == "success"
        started = _alive(_descendants([p.pid for p in stack.procs])) | set(stack.processes())
        assert len(started) > len(stack.procs)  # the components started processes of theirs
    finally:
        stack.stop()
    assert _alive(started) == set()
    assert stack.processes() == [] and processes_marked(stack.mark) == []
