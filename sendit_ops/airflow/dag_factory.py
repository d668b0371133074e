"""Build one sendit DAG per configured input folder.

Which folders, their schedules and the settings that shape a DAG are read at parse time by
``sendit_ops.airflow.config`` (environment first, cached, no database query per parse).
"""

from __future__ import annotations

import functools
import logging
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, Param, get_current_context, get_parsing_context, task

from sendit_ops import quiet_known_deprecations
from sendit_ops.airflow.config import parse_time_settings, read_input_folders
from sendit_ops.core.lifecycle import Step
from sendit_ops.core.settings import (
    InputFolder,
    Settings,
)
from sendit_ops.pipeline.decisions import MALFORMED_ID_SCHEMA_PATTERN

log = logging.getLogger("sendit")
# a task returning a dict would otherwise push one XCom per key as well (Airflow infers
# multiple_outputs from the return annotation): ~10 ms of API server round trip each, on the
# critical path of every task, for values nothing reads
ONE_XCOM: dict[str, Any] = {"multiple_outputs": False}
RETRIES: dict[str, Any] = {
    "retries": 2,
    "retry_delay": timedelta(seconds=20),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
}

DOC = """
### sendit: de-identify and deliver the studies of `{path}`

Each sub-folder of the input folder is one **batch** (normally one study). Folders whose
name ends in `.tmp…` are still being written and are left alone until renamed.

**Steps**: `discover` → per chunk of batches: `filter_images` → `fetch_pseudonyms` →
`anonymize_headers` → `package_and_verify` → then `deliver` (Google Cloud Storage + BigQuery
when configured, else the local outbox) → `report` (run summary in its log and in the work
root). With `"task_layout": "fused"`: `discover` → one `process_and_deliver` task per chunk
(the four steps and the delivery of that chunk) → `report`.

**Trigger with config**: leave *batches* empty for every batch not yet delivered, or list
batch folder names / batch ids. *reprocess* redoes delivered batches; *dry_run* processes
and verifies but delivers nothing.

**Batch states**: QUEUE, PROCESSING, DONEPROCESSING (verified, not delivered), DONE, EMPTY
(no image passed the filters), ERROR (reason in the summary). The run is marked failed when
a batch is in ERROR, after every other batch was delivered.

Settings: Variables `sendit_settings`, `sendit_secret_key`; see docs/configuration.md.
"""


def _no_retry_on_config_errors(fn):
    """Configuration errors fail the task at once (a retry cannot fix them), with the message
    an admin needs and no traceback noise. TransientError (Google or DASHER unreachable, a
    5xx, a timeout: ``sendit_ops.core.errors.classify``) is raised as it is, so that RETRIES
    run the task again later; any other exception is retried too, as Airflow does."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from airflow.sdk.exceptions import AirflowFailException

        from sendit_ops.core.errors import ConfigError, RunNeedsAttention, TransientError

        try:
            return fn(*args, **kwargs)
        except TransientError:
            raise  # retryable: never a ConfigError, whatever the service's message says
        except (ConfigError, RunNeedsAttention) as exc:
            raise AirflowFailException(str(exc)) from None

    return wrapper


def _batch_list(title: str, description: str, pattern: str | None = None) -> Param:
    """A run parameter naming batches (folder names or batch ids). ``pattern``: a JSON-schema
    pattern each name must match, checked by Airflow before the run is created (the trigger
    form shows the error, REST answers 400)."""
    items = {"type": "string", **({"pattern": pattern} if pattern else {})}
    return Param([], type=["array", "null"], items=items, title=title, description=description)


# a decision naming what is not a HELD batch of the folder is refused by the run's discover
# (sendit_ops.pipeline.decisions); an id of the wrong length already by the form / REST
_HELD_ONLY = (
    " Only HELD batches of this folder: an unknown id, a batch that is not HELD or one named "
    "in both lists fails the run at once, before any batch is touched. An id is 'b' and 15 "
    "hex digits."
)


def trigger_params() -> dict[str, Param]:
    """The trigger form of every sendit DAG."""
    return {
        "batches": _batch_list(
            "Batches",
            "Batch folder names or batch ids to process; empty = every finished "
            "batch not yet delivered (scheduled runs: those finished in the interval).",
        ),
        "reprocess": Param(
            False,
            type="boolean",
            title="Reprocess",
            description="Process batches again even if already delivered.",
        ),
        "redeliver": Param(
            False,
            type="boolean",
            title="Re-deliver under new pseudonyms",
            description="The pseudonym provider or key changed since studies of this folder "
            "were delivered: process those studies again and replace their objects and rows "
            "(without this, such a run is refused: it would deliver second copies).",
        ),
        "dry_run": Param(
            False,
            type="boolean",
            title="Dry run",
            description="Filter, de-identify and verify, but deliver nothing.",
        ),
        "release": _batch_list(
            "Release held batches",
            "Batches HELD for review (pixels not verified free of burned-in text) that a "
            "reviewer checked on the dashboard's masked thumbnails: processed again and "
            "delivered with their held images, masked as shown." + _HELD_ONLY,
            MALFORMED_ID_SCHEMA_PATTERN,
        ),
        "reject": _batch_list(
            "Reject held images",
            "Batches HELD for review whose held images must not leave: processed again and "
            "delivered without them." + _HELD_ONLY,
            MALFORMED_ID_SCHEMA_PATTERN,
        ),
        "provider": Param(
            "settings",
            enum=["settings", "local", "dasher"],
            title="Pseudonym provider",
            description="'settings' uses sendit_settings.pseudonym_provider.",
        ),
        "delivery": Param(
            "settings",
            enum=["settings", "outbox", "google"],
            title="Delivery",
            description="'settings' uses sendit_settings.send_to_google.",
        ),
    }


WATCH = "watch"


def dag_schedule(folder: InputFolder, settings: Settings) -> Any:
    """``None``, a cron expression or preset, or ``"watch"``: an Asset fed by a
    FolderArrivalTrigger in the triggerer (streaming pick-up, no empty runs).

    Cron schedules get a data-interval timetable (Airflow 3's default for presets has
    zero-length intervals), so a scheduled or backfill run processes exactly the batches
    finished in its interval.
    """
    if folder.schedule is None or folder.schedule in ("@once", "@continuous"):
        return folder.schedule
    if folder.schedule != WATCH:
        from airflow.sdk import CronDataIntervalTimetable

        return CronDataIntervalTimetable(folder.schedule, timezone="UTC")
    from airflow.sdk import Asset, AssetWatcher

    from sendit_ops.airflow.triggers import FolderArrivalTrigger

    trigger = FolderArrivalTrigger(
        input_dir=folder.path,
        work_root=str(settings.work_root),
        dag_id=folder.dag_id,
        poll_seconds=float(settings.watch_poll_seconds),
        ledger_url=settings.ledger_url,
    )
    asset = Asset(
        name=f"sendit_input_{folder.name}",
        uri=f"file://{folder.path}",
        watchers=[AssetWatcher(name=f"sendit_watch_{folder.name}", trigger=trigger)],
    )
    return [asset]


def build_dag(folder: InputFolder) -> DAG:
    """The DAG of one input folder (the domain modules are imported by the tasks, not at
    parse time, so parsing stays fast)."""
    quiet_known_deprecations()  # before a task of this DAG imports deid
    shape = parse_time_settings(folder)
    fused = shape.task_layout == "fused"
    pool = shape.dasher_pool
    map_limit = shape.chunks_in_flight  # the same figure discover spreads a run over
    with DAG(
        dag_id=folder.dag_id,
        description=f"sendit: de-identify and deliver DICOM batches from {folder.path}",
        schedule=dag_schedule(folder, shape),
        start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,
        params=trigger_params(),
        doc_md=DOC.format(path=folder.path),
        tags=["sendit", "dicom", "deid"],
        default_args={"owner": "sendit"},
    ) as dag:

        @task(task_id=Step.DISCOVER.task_id, **RETRIES)
        @_no_retry_on_config_errors
        def discover_task() -> list[dict[str, Any]]:
            from sendit_ops.airflow import tasks as steps

            return steps.discover(folder, get_current_context())

        def batch_task(step: Step, **kwargs: Any):
            @task(
                task_id=step.task_id,
                max_active_tis_per_dag=map_limit,
                **ONE_XCOM,
                **RETRIES,
                **kwargs,
            )
            @_no_retry_on_config_errors
            def run(chunk: dict[str, Any]) -> dict[str, Any]:
                from sendit_ops.airflow import tasks as steps

                return steps.run_step(folder, step, chunk, get_current_context())

            return run

        @task(task_id=Step.DELIVER.task_id, trigger_rule="all_done", **ONE_XCOM, **RETRIES)
        @_no_retry_on_config_errors
        def deliver_task(chunks: list[dict[str, Any]]) -> dict[str, Any]:
            from sendit_ops.airflow import tasks as steps

            return steps.deliver(folder, chunks, get_current_context())

        @task(task_id=Step.REPORT.task_id, trigger_rule="all_done", retries=0, **ONE_XCOM)
        @_no_retry_on_config_errors
        def report_task(chunks: list[dict[str, Any]]) -> dict[str, Any]:
            from sendit_ops.airflow import tasks as steps

            return steps.report(folder, chunks, get_current_context())

        chunks = discover_task()
        if fused:
            # one task per chunk runs the four steps and delivers the chunk (its objects go
            # out while other chunks are processed); the DASHER pool, when set, bounds it
            done = batch_task(Step.PROCESS, pool=pool).expand(chunk=chunks)
            done >> report_task(chunks)
        else:
            filtered = batch_task(Step.FILTER).expand(chunk=chunks)
            named = batch_task(Step.PSEUDONYMIZE, pool=pool).expand(chunk=filtered)
            anonymized = batch_task(Step.ANONYMIZE).expand(chunk=named)
            packaged = batch_task(Step.PACKAGE).expand(chunk=anonymized)
            packaged >> deliver_task(chunks) >> report_task(chunks)
    return dag


def build_all_dags() -> dict[str, DAG]:
    """Every sendit DAG, keyed by dag id (for a DAG file's ``globals()``).

    In a task process Airflow parses the DAG file only to find the task's DAG: then only
    that DAG is built (Airflow's parsing context), so a task's start does not grow with the
    number of input folders (~4 ms per folder). When no folder has that dag id any more,
    every DAG is built and Airflow reports the missing DAG as usual."""
    folders = read_input_folders()
    wanted = get_parsing_context().dag_id
    if wanted:
        folders = [f for f in folders if f.dag_id == wanted] or folders
    return {folder.dag_id: build_dag(folder) for folder in folders}
