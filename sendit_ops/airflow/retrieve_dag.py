"""Build one retrieve DAG per configured PACS (Variable ``sendit_pacs_sources``).

    [wait_for_window] >> find >> retrieve (mapped over chunks of studies, in the PACS's
    pool) >> summarize >> hand_on (trigger the input folder's DAG) >> check

Triggered with accession numbers, Study Instance UIDs, a date range (+ modality) or a file
(the form, REST, CLI), or scheduled: a scheduled run asks for its data interval's studies.
The folder's own DAG then de-identifies and delivers what arrived (docs/pacs.md).
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import pendulum
from airflow.sdk import DAG, BaseOperator, Context, Param, get_current_context, task

from sendit_ops.airflow.config import env_variable, read_input_folders
from sendit_ops.airflow.dag_factory import ONE_XCOM, RETRIES, _no_retry_on_config_errors
from sendit_ops.core.errors import ConfigError
from sendit_ops.core.settings import InputFolder
from sendit_ops.pacs.sources import SOURCES_VARIABLE, PacsSource, parse_sources

if TYPE_CHECKING:  # the task bodies' module is imported when a task runs, not at parse time
    from sendit_ops.airflow.retrieve_tasks import RetrieveSummary, StudyChunk

log = logging.getLogger("sendit")

DOC = """
### sendit: retrieve studies from PACS `{name}` into `{path}`

**Trigger with config**: *accession_numbers* (one per line), *study_uids*, or a date
range (*date_from*, *date_to*, YYYY-MM-DD) with an optional *modality*, or *request_file* (a
file on the workers: one accession number per line, `uid:<StudyInstanceUID>` for UIDs).
Scheduled runs ask for the studies of their data interval.

**Steps**: `find` (C-FIND or QIDO-RS; date ranges split under the PACS's result cap) →
`retrieve` (per chunk of studies, at most {associations} at once, pool `{pool}`) →
`summarize` → `hand_on` (starts DAG `{folder_dag}`) → `check`.

**Study states**: FOUND, NOT_FOUND, RETRIEVING, RETRIEVED (its folder is in the input
folder), INCOMPLETE (fewer instances than the PACS reported: both counts kept, not handed
on), FAILED (reason). A rerun fetches only what is missing. Accession numbers typed here
stay in this run's configuration: use *request_file* to keep them out of Airflow entirely.
"""


def retrieve_params() -> dict[str, Param]:
    """The trigger form of a retrieve DAG."""
    return {
        "accession_numbers": Param(
            [],
            type=["array", "null"],
            items={"type": "string"},
            title="Accession numbers",
            description="One per line.",
        ),
        "study_uids": Param(
            [],
            type=["array", "null"],
            items={"type": "string"},
            title="Study Instance UIDs",
            description="One per line.",
        ),
        "date_from": Param(
            None, type=["null", "string"], format="date", title="Studies from (date)"
        ),
        "date_to": Param(None, type=["null", "string"], format="date", title="Studies to (date)"),
        "modality": Param(
            "", type=["string", "null"], title="Modality", description="e.g. CT; empty: all."
        ),
        "request_file": Param(
            "",
            type=["string", "null"],
            title="Request file",
            description="A file the workers can read: one accession number per line "
            "(uid:<StudyInstanceUID> lines for UIDs).",
        ),
    }


class WaitForWindow(BaseOperator):
    """Defers (in the triggerer, holding no worker) until the PACS's time window opens."""

    def __init__(self, *, window: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.window = window

    def execute(self, context: Context) -> None:
        from airflow.providers.standard.triggers.temporal import DateTimeTrigger

        from sendit_ops.pacs.sources import TimeWindow

        window = TimeWindow.parse(self.window)
        now = pendulum.now("UTC")
        opening = window.next_opening(now)
        if opening <= now:
            return
        log.info("outside the PACS's window %s (UTC): waiting until %s", self.window, opening)
        self.defer(trigger=DateTimeTrigger(moment=opening), method_name="execute_complete")

    def execute_complete(self, context: Context, event: object = None) -> None:
        return None


def read_sources() -> list[PacsSource]:
    """The configured PACS (environment first, else the Variable; none: no DAG)."""
    raw = env_variable(SOURCES_VARIABLE)
    if raw is None:
        try:
            from airflow.sdk import Variable

            raw = Variable.get(SOURCES_VARIABLE, default=None)
        except Exception as exc:  # no API at parse time
            log.warning("cannot read Variable %s (%s)", SOURCES_VARIABLE, type(exc).__name__)
            return []
    if raw in (None, ""):
        return []
    try:
        return parse_sources(json.loads(raw) if isinstance(raw, str) else raw)
    except (ValueError, ConfigError) as exc:
        log.error("Variable %s is invalid: %s", SOURCES_VARIABLE, exc)
        return []


def build_retrieve_dag(source: PacsSource, folder: InputFolder) -> DAG:
    """The retrieve DAG of one PACS into one input folder."""
    schedule = None
    if source.schedule:
        from airflow.sdk import CronDataIntervalTimetable

        schedule = CronDataIntervalTimetable(source.schedule, timezone="UTC")
    with DAG(
        dag_id=source.dag_id,
        description=f"sendit: retrieve studies from PACS {source.name} into {folder.path}",
        schedule=schedule,
        start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,
        params=retrieve_params(),
        doc_md=DOC.format(
            name=source.name,
            path=folder.path,
            associations=source.associations,
            pool=source.pool,
            folder_dag=folder.dag_id,
        ),
        tags=["sendit", "dicom", "pacs"],
        default_args={"owner": "sendit"},
    ) as dag:

        @task(task_id="find", **RETRIES)
        @_no_retry_on_config_errors
        def find_task() -> list[StudyChunk]:
            from sendit_ops.airflow import retrieve_tasks

            return retrieve_tasks.find(source, folder, get_current_context())

        @task(
            task_id="retrieve",
            pool=source.pool,
            max_active_tis_per_dag=source.associations,
            **ONE_XCOM,
            **RETRIES,
        )
        @_no_retry_on_config_errors
        def retrieve_task(chunk: StudyChunk) -> dict[str, int]:
            from sendit_ops.airflow import retrieve_tasks

            return retrieve_tasks.retrieve(source, folder, chunk, get_current_context())

        @task(task_id="summarize", trigger_rule="all_done", retries=0, **ONE_XCOM)
        @_no_retry_on_config_errors
        def summarize_task() -> RetrieveSummary:
            from sendit_ops.airflow import retrieve_tasks

            return retrieve_tasks.summarize(source, folder, get_current_context())

        @task(task_id="check", retries=0)
        @_no_retry_on_config_errors
        def check_task(summary: RetrieveSummary) -> None:
            from sendit_ops.airflow import retrieve_tasks

            retrieve_tasks.check(summary)

        chunks = find_task()
        if source.window:
            WaitForWindow(task_id="wait_for_window", window=source.window) >> chunks
        fetched = retrieve_task.expand(chunk=chunks)
        summary = summarize_task()
        fetched >> summary
        if source.trigger_folder_dag:
            from airflow.providers.standard.operators.trigger_dagrun import (
                TriggerDagRunOperator,
            )

            hand_on = TriggerDagRunOperator(
                task_id="hand_on", trigger_dag_id=folder.dag_id, trigger_rule="all_done"
            )
            summary >> hand_on >> check_task(summary)
        else:
            check_task(summary)
    return dag


def build_retrieve_dags() -> dict[str, DAG]:
    """Every retrieve DAG, keyed by dag id (for a DAG file's ``globals()``)."""
    folders = {f.name: f for f in read_input_folders()}
    dags = {}
    for source in read_sources():
        folder = folders.get(source.input_folder)
        if folder is None:
            log.error(
                "PACS %s: input folder %r is not in sendit_input_folders; no DAG",
                source.name,
                source.input_folder,
            )
            continue
        dags[source.dag_id] = build_retrieve_dag(source, folder)
    return dags
