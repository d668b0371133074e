"""Task callables of a sendit DAG: glue between Airflow (context, XCom) and the pipeline.

XCom carries only batch keys (opaque) and small summaries, never paths or header values.

One run at a time per input folder and work root: ``discover`` takes the ledger's run lock
(waiting a bounded time for another run, then stopping with a message naming it), every
later task of the same run keeps and refreshes it while it works, ``report`` releases it.
This holds whatever starts the run (the scheduler, ``sendit run``, ``airflow dags test``)
and wherever its tasks run, since the lock is a row in the ledger's database.

Each task runs one phase of the runner (sendit_ops.pipeline.run): what tests and the bench
run in one process with ``run_folder`` is what the tasks run here, one phase per task.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from sendit_ops.airflow.pseudonym_source import provider_for
from sendit_ops.airflow.task_runtime import pipeline
from sendit_ops.core.discovery import chunk, is_in_progress
from sendit_ops.core.errors import RunNeedsAttention
from sendit_ops.core.ledger import RunLock, RunLocked
from sendit_ops.core.lifecycle import State, Step
from sendit_ops.core.report import format_summary, summarize, write_run_report
from sendit_ops.core.settings import InputFolder, Settings
from sendit_ops.delivery.outbox import OutboxTarget
from sendit_ops.delivery.target import Target
from sendit_ops.pipeline import run as runner
from sendit_ops.pipeline.batch import Pipeline
from sendit_ops.pipeline.run import RunRequest

log = logging.getLogger("sendit")

_MANUAL_RUN_TYPES = {"manual", "asset_triggered", "asset_materialization"}

# set by `sendit run` to its own pid while it runs a DAG in this process (dag.test): every
# task of the run executes here, so the run lock keeps this process listed between tasks
IN_PROCESS_RUN_ENV = "SENDIT_IN_PROCESS_RUN_PID"


def _interval(context: Mapping[str, Any]) -> tuple[float, float] | None:
    run = context.get("dag_run")
    run_type = str(getattr(run, "run_type", "manual")).lower().rsplit(".", 1)[-1]
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    if run_type in _MANUAL_RUN_TYPES or start is None or end is None or start == end:
        return None
    return start.timestamp(), end.timestamp()


def _in_process() -> bool:
    return os.environ.get(IN_PROCESS_RUN_ENV) == str(os.getpid())


def _lock(pipe: Pipeline, folder: InputFolder) -> RunLock:
    return pipe.ledger.run_lock(folder.path, in_process=_in_process())


def _locked(
    pipe: Pipeline, folder: InputFolder, wait: float | None = 0, release: bool = False
) -> AbstractContextManager[None]:
    """The run's lock held for this task (kept from discover: another run holding it now
    means this run lost it, and the task stops)."""
    return runner.locked(pipe, folder.path, wait=wait, release=release, in_process=_in_process())


def discover(folder: InputFolder, context: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Take the run lock of the input folder (another run holding it: wait, then stop),
    find finished batches, choose this run's, queue them; return chunks for mapping."""
    pipe = pipeline(folder, context)
    with _locked(pipe, folder, wait=None):
        return _discover(pipe, folder, context)


def _discover(
    pipe: Pipeline, folder: InputFolder, context: Mapping[str, Any]
) -> list[dict[str, Any]]:
    if pipe.settings.pseudonym_provider == "dasher":
        from sendit_ops.airflow.dasher_hook import DasherHook

        DasherHook(pipe.settings.dasher_conn_id).check_configured()
    if pipe.settings.send_to_google and not (context.get("params") or {}).get("dry_run"):
        from sendit_ops.airflow.google_target import preflight

        preflight(pipe.settings)  # bucket, dataset and table, before any batch is touched
    request = RunRequest.from_params(context.get("params"), _interval(context))
    chosen = runner.start(pipe, folder.path, folder.name, request)
    in_progress = sum(1 for p in Path(folder.path).iterdir() if is_in_progress(p.name))
    log.info(
        "input %s: %d finished batch folder(s), %d still being written, %d chosen for this run%s",
        folder.name,
        chosen.found,
        in_progress,
        len(chosen.keys),
        " (data interval)" if request.interval else "",
    )
    for note in chosen.notes:
        log.info("note: %s", note)
    keys, notes = chosen.keys, chosen.notes
    s = pipe.settings
    return [
        {"keys": part, "notes": notes if i == 0 else []}
        for i, part in enumerate(chunk(keys, s.chunk_size, s.chunks_in_flight))
    ]


def run_step(
    folder: InputFolder, step: Step, chunk_: dict[str, Any], context: Mapping[str, Any]
) -> dict[str, Any]:
    """Run one batch step (filter, pseudonymize, anonymize, package, or all four:
    process) over a chunk."""
    pipe = pipeline(folder, context)
    if step in (Step.PSEUDONYMIZE, Step.PROCESS):
        pipe.provider = provider_for(pipe.settings)
    # the run's lock is kept (another run holding it now: this run lost it, it stops)
    with _locked(pipe, folder):
        runner.process(pipe, step, chunk_["keys"])
        if step == Step.PROCESS:  # the fused layout: each chunk delivers its own batches
            deliver_batches(pipe, chunk_["keys"], context)
    states: dict[str, int] = {}
    for key in chunk_["keys"]:
        record = pipe.ledger.get(key)
        state = record.state if record else "missing"
        states[state] = states.get(state, 0) + 1
    log.info("%s: %s", step, ", ".join(f"{k} {v}" for k, v in sorted(states.items())))
    return chunk_


def all_keys(chunks: list[dict[str, Any]] | None) -> list[str]:
    """Every batch key of a run's chunks."""
    return [k for c in chunks or [] for k in c["keys"]]


def deliver(
    folder: InputFolder, chunks: list[dict[str, Any]], context: Mapping[str, Any]
) -> dict[str, Any]:
    """Deliver every verified batch of the run: to Google when configured, else the outbox."""
    if chunks is None:
        log.info("nothing to deliver: discover did not finish")
        return {"target": "none"}
    pipe = pipeline(folder, context)
    with _locked(pipe, folder):
        return deliver_batches(pipe, all_keys(chunks), context)


def open_target(settings: Settings) -> Target:
    """The run's delivery target: Google when configured, else the local outbox."""
    if settings.send_to_google:
        from sendit_ops.airflow.google_target import GoogleTarget

        return GoogleTarget.open(settings)  # ConfigError / TransientError: see classify
    return OutboxTarget.from_settings(settings)


def deliver_batches(pipe: Pipeline, keys: list[str], context: Mapping[str, Any]) -> dict[str, Any]:
    """Finalize, then deliver the verified batches among ``keys`` (Google when configured,
    else the outbox); a dry run delivers nothing. TransientError (the target unreachable
    now) propagates: Airflow retries the task and the batches not delivered, still
    DONEPROCESSING, are delivered by the retry."""
    params = context.get("params") or {}
    dry_run, reprocess = bool(params.get("dry_run")), bool(params.get("reprocess"))
    return runner.deliver_batches(
        pipe, keys, lambda: open_target(pipe.settings), dry_run, reprocess
    )


def report(
    folder: InputFolder, chunks: list[dict[str, Any]], context: Mapping[str, Any]
) -> dict[str, Any]:
    """Close the run: every batch in a final state, summary written and logged, the run
    lock released (only this run's: a run stopped by another's lock leaves it alone)."""
    if chunks is None:  # discover failed: its XCom is missing
        _stopped_before_discovery(folder, context)
    pipe = pipeline(folder, context)
    with _locked(pipe, folder, release=True):
        return _report(pipe, chunks, context)


def _stopped_before_discovery(folder: InputFolder, context: Mapping[str, Any]) -> None:
    """A run whose discover failed: release its lock; when another run holds the lock
    (the reason it stopped), write a summary that says so, for the CLI and the UI."""
    message = (
        "the run stopped before choosing batches (no batch was touched); the reason is in "
        "the log of the 'discover' task"
    )
    try:
        pipe = pipeline(folder, context)
        lock = _lock(pipe, folder)
        lock.release(runner.holder_id(pipe))
        other = lock.holder()
    except Exception as exc:  # settings or database unusable: discover said why
        log.warning("run lock not released (%s)", type(exc).__name__)
        raise RunNeedsAttention(message) from None
    if other is None:
        raise RunNeedsAttention(message)
    message = (
        f"another run ({other.run_id}) of this input folder is in progress since "
        f"{other.since()}; this run stopped before choosing batches (nothing was changed)"
    )
    summary = summarize([], pipe.run_id, [message])
    summary["stopped"] = message
    where = write_run_report(pipe.ledger, summary)
    log.info("%s\n  report: %s", format_summary(summary), where)
    raise RunLocked(message)


def _report(
    pipe: Pipeline, chunks: list[dict[str, Any]], context: Mapping[str, Any]
) -> dict[str, Any]:
    notes = [n for c in chunks or [] for n in c.get("notes", [])]
    dry_run = bool((context.get("params") or {}).get("dry_run"))
    summary, where = runner.finish(pipe, all_keys(chunks), notes, dry_run)
    result = {k: v for k, v in summary.items() if k != "batch_lines"}
    result["errors"] = [
        {"batch_id": line["batch_id"], "reasons": line["reasons"]}
        for line in summary["batch_lines"]
        if line["status"] == State.ERROR
    ]
    if result["errors"] and pipe.settings.fail_run_on_batch_error:
        # keep the summary readable over REST even though the task fails
        context["ti"].xcom_push(key="return_value", value=result)
        raise RunNeedsAttention(
            f"{len(result['errors'])} batch(es) ended in ERROR (the others were processed); "
            f"see the summary above and {where}/summary.txt"
        )
    return result
