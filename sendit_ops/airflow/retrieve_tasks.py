"""Task bodies of a retrieve DAG: glue between Airflow (context, params, Connections) and
``sendit_ops.pacs``. XCom carries study keys (keyed hashes) and counts only."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypedDict

from airflow.sdk import Context

from sendit_ops.airflow.config import task_secret_key, task_settings
from sendit_ops.airflow.pacs_hook import PacsHook
from sendit_ops.core.discovery import chunk
from sendit_ops.core.errors import ConfigError, RunNeedsAttention, TransientError
from sendit_ops.core.settings import InputFolder
from sendit_ops.pacs.job import RetrieveJob
from sendit_ops.pacs.model import StudyRequest, StudyState, parse_request
from sendit_ops.pacs.sources import PacsSource

log = logging.getLogger("sendit")
_SCHEDULED = {"scheduled", "backfill"}


class StudyChunk(TypedDict):
    """The XCom of ``find``, one per mapped ``retrieve`` task: study keys (keyed hashes)."""

    keys: list[str]


class RetrieveSummary(TypedDict):
    """The XCom of ``summarize``: this run's outcome, counts only."""

    states: dict[str, int]  # studies by StudyState
    items: dict[str, int]  # requested items by state (every run of this PACS)
    images: int
    megabytes: float


def _job(source: PacsSource, folder: InputFolder, context: Context) -> RetrieveJob:
    settings = task_settings(folder, None)
    run = context.get("dag_run")
    return RetrieveJob(
        PacsHook(source.conn_id).get_pacs(source.name),
        settings.work_root,
        folder.path,
        task_secret_key(),
        source.policy,
        settings.ledger_url,
        run_id=run.run_id if run else "",
    )


def request_of(source: PacsSource, context: Context) -> StudyRequest:
    """The run's request: the trigger form / REST conf, a file, or (a scheduled run) the
    data interval's days with the source's modality."""
    params = dict(context.get("params") or {})
    file_text = None
    if params.get("request_file"):
        path = Path(str(params["request_file"]))
        try:
            file_text = path.read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise ConfigError(
                f"request_file cannot be read on the worker ({exc.strerror}): give a path "
                "the Airflow workers can read"
            ) from None
    given = any(params.get(k) for k in ("accession_numbers", "study_uids", "date_from"))
    run = context.get("dag_run")
    run_type = str(getattr(run, "run_type", "manual")).lower().rsplit(".", 1)[-1]
    if not given and not file_text and run_type in _SCHEDULED:
        start, end = context.get("data_interval_start"), context.get("data_interval_end")
        if start is None or end is None:
            raise ConfigError(
                "a scheduled run without a data interval cannot say which studies to ask "
                "for: give the DAG a schedule with data intervals, or trigger it with config"
            )
        last = end - timedelta(seconds=1) if end > start else end
        params.update(
            date_from=start.strftime("%Y%m%d"),
            date_to=last.strftime("%Y%m%d"),
            modality=params.get("modality") or source.modality,
        )
    return parse_request(params, file_text)


def find(source: PacsSource, folder: InputFolder, context: Context) -> list[StudyChunk]:
    """Resolve the request on the PACS; chunks of the study keys still to fetch."""
    job = _job(source, folder, context)
    summary = job.find(request_of(source, context))
    return [
        StudyChunk(keys=part)
        for part in chunk(summary.to_fetch, source.chunk_size, source.associations)
    ]


def retrieve(
    source: PacsSource, folder: InputFolder, chunk_: StudyChunk, context: Context
) -> dict[str, int]:
    """Fetch one chunk of studies, one association at a time; counts by state. A study
    that failed for a reason retrying may fix fails the task (Airflow retries it with
    backoff; the rerun skips what arrived)."""
    job = _job(source, folder, context)
    window = source.time_window
    results = job.retrieve(
        chunk_["keys"],
        stop=(lambda: not window.contains(datetime.now(UTC))) if window else None,
    )
    counts = Counter(str(r.state) for r in results)
    if counts.get(StudyState.FAILED):
        raise TransientError(
            f"{counts[StudyState.FAILED]} stud(ies) of this chunk could not be retrieved "
            "(reasons in the log and on the dashboard); the task is retried"
        )
    return dict(counts)


def summarize(source: PacsSource, folder: InputFolder, context: Context) -> RetrieveSummary:
    """The request's outcome from the ledger (this run's rows), counts only."""
    job = _job(source, folder, context)
    rows = [r for r in job.ledger.studies(limit=1_000_000) if r.run_id == job.run_id]
    states = Counter(r.state for r in rows)
    summary = RetrieveSummary(
        states=dict(states),
        items=job.ledger.item_counts(),
        images=sum(r.received for r in rows),
        megabytes=round(sum(r.bytes for r in rows) / 1e6, 1),
    )
    log.info("PACS %s: this run: %s", source.name, summary)
    return summary


def check(summary: RetrieveSummary | None) -> None:
    """Fail the run (after the handing on) when a study ended INCOMPLETE or FAILED."""
    states = summary.get("states", {}) if summary else {}
    bad = {
        s: n
        for s, n in states.items()
        if s in (StudyState.INCOMPLETE, StudyState.FAILED, StudyState.RETRIEVING)
    }
    if bad:
        raise RunNeedsAttention(
            "studies need attention: "
            + ", ".join(f"{n} {s}" for s, n in sorted(bad.items()))
            + " (reasons on the dashboard's PACS section; a rerun fetches only what is missing)"
        )
