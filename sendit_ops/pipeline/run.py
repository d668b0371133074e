"""The runner: what a run over one input folder does, written once.

A run holds the folder's run lock while it works (``locked``), chooses its batches
(``start``), runs the batch steps (``process``), finalizes the batches that will not be
delivered and then delivers the others (``deliver_batches``), and writes the run report
(``finish``). The Airflow tasks call these functions one per task (sendit_ops.airflow.tasks;
``sendit run`` runs that DAG in-process); ``run_folder`` calls them in one process, in
the same order: what the tests and the bench run. Each phase is noted in the run's journal
(``runs/<run>/journal.jsonl``: phase, time, process, counts; no PHI), so an admin (and a
test) can see what a run did, in which order, whatever ran it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sendit_ops.core.discovery import FoundBatch, discover_input, select_batches
from sendit_ops.core.errors import RunNeedsAttention
from sendit_ops.core.lifecycle import BATCH_STEPS, FINAL_STATES, State, Step
from sendit_ops.core.records import BatchRecord
from sendit_ops.core.report import format_summary, safe_name, summarize, write_run_report
from sendit_ops.delivery import loop as delivery
from sendit_ops.delivery.target import Target
from sendit_ops.pipeline.batch import Pipeline
from sendit_ops.pipeline.decisions import named_decisions, resolve_decisions

log = logging.getLogger("sendit")


@dataclass(frozen=True)
class RunRequest:
    """What a run asks for (the trigger params, typed). ``interval``: the (start, end) epoch
    seconds of a scheduled or backfill run's data interval, None for a manual run."""

    batches: tuple[str, ...] = ()
    reprocess: bool = False
    redeliver: bool = False
    dry_run: bool = False
    decisions: Mapping[str, str] = field(default_factory=dict)  # batch id/folder -> decision
    interval: tuple[float, float] | None = None

    @classmethod
    def from_params(
        cls, params: Mapping[str, Any] | None, interval: tuple[float, float] | None = None
    ) -> RunRequest:
        """A request from a run's params (trigger form, REST conf, CLI)."""
        params = params or {}
        decisions = named_decisions(params)  # a name in both lists: DecisionRefused
        return cls(
            batches=tuple(str(b).strip() for b in params.get("batches") or [] if str(b).strip()),
            reprocess=bool(params.get("reprocess")),
            redeliver=bool(params.get("redeliver")),
            dry_run=bool(params.get("dry_run")),
            decisions=decisions,
            interval=interval,
        )


@dataclass(frozen=True)
class Chosen:
    """The batches of a run, queued in the ledger, and PHI-free notes (counts, batch ids)."""

    keys: list[str]
    found: int
    notes: list[str]


def _describe(source: str) -> str:
    kind, _, detail = source.partition(":")
    if kind == "local":
        return f"local keyed pseudonyms (key {detail})"
    return f"DASHER ({detail})"


def check_pseudonym_source(pipe: Pipeline, redeliver: bool) -> list[BatchRecord]:
    """Refuse a run whose pseudonyms differ from those the folder's studies were delivered
    with, unless the operator asked to re-deliver; then return those delivered batches
    (they are redone, and their old objects and rows replaced by the new ones)."""
    current = pipe.pseudonym_source
    other = pipe.ledger.delivered_with_other_pseudonyms(current)
    if not other or redeliver:
        return other
    sources = sorted({str(r.outputs.pseudonym_source) for r in other})
    count = len(other)
    raise RunNeedsAttention(
        f"this input folder has {count} delivered stud{'y' if count == 1 else 'ies'} "
        f"pseudonymized with {', '.join(_describe(s) for s in sources)}; this run would use "
        f"{_describe(current)}, which gives them new ids: a second copy of each study in the "
        "bucket and table. Nothing was processed. To re-deliver them under the new "
        "pseudonyms (their old objects and rows replaced), trigger with redeliver=true "
        "(sendit run --redeliver); to keep them, switch the provider or key back, or use "
        "a new input folder and collection."
    )


def _redo(pipe: Pipeline, found: list[FoundBatch], request: RunRequest) -> tuple[set[str], int]:
    """The found batches to re-deliver under new pseudonyms (a batch id that changed with
    the key inherits its old delivery), and how many delivered studies are gone from the
    input folder (nothing to re-deliver them from)."""
    by_path = {b.path: b for b in found}
    redo, gone = set(), 0
    for record in check_pseudonym_source(pipe, request.redeliver):
        batch = by_path.get(record.source_path)
        if batch is None:
            gone += 1
            continue
        if batch.key != record.key:
            pipe.ledger.supersede(record.key, batch.key)
        redo.add(batch.key)
    return redo, gone


def choose_batches(pipe: Pipeline, input_dir: str | Path, name: str, request: RunRequest) -> Chosen:
    """Find the finished batch folders, choose this run's (requested ones, the data interval,
    not yet delivered with the same content, reviewers' decisions), refuse a pseudonym
    switch unless re-delivery was asked, and queue the chosen batches in the ledger."""
    seen = discover_input(input_dir, pipe.secret_key, name, pipe.settings.follow_external_symlinks)
    found: list[FoundBatch] = seen.batches
    # every decision names a HELD batch of this folder, else the run stops here, untouched
    decisions = resolve_decisions(pipe.ledger, found, request.decisions, name)
    # held batches wait for a reviewer: with unchanged content they are not processed again
    # (a changed folder is a new study to check), unless a decision on them is given now
    settled = pipe.ledger.fingerprints((b.key for b in found), (State.DONE, State.HELD))
    redo, gone = _redo(pipe, found, request)
    requested = [*request.batches, *decisions]
    if requested and redo:
        requested += sorted(redo)
    chosen, notes = select_batches(
        found,
        requested=requested or None,
        interval=request.interval,
        delivered={k: f for k, f in settled.items() if k not in decisions and k not in redo},
        reprocess=request.reprocess,
    )
    if redo:
        notes.append(f"{len(redo)} delivered batch(es) re-delivered under the new pseudonyms")
    if gone:
        notes.append(
            f"{gone} delivered batch(es) not re-delivered under the new pseudonyms: their "
            "folders are no longer in the input folder"
        )
    keys = pipe.register(chosen)
    pipe.record_review({k: d for k, d in decisions.items() if k in keys})
    return Chosen(keys, len(found), [*seen.notes, *notes])


# ---- the run's journal ------------------------------------------------------------------


def journal_path(pipe: Pipeline) -> Path:
    """Where the run's journal is (beside its summary)."""
    return pipe.ledger.root / "runs" / safe_name(pipe.run_id or "no-run-id") / "journal.jsonl"


def note(pipe: Pipeline, phase: str, **counts: int | str) -> None:
    """Append one phase to the run's journal (one short line, O_APPEND: the mapped tasks of a
    run may write at once)."""
    line = {"phase": phase, "at": round(time.time(), 3), "pid": os.getpid(), **counts}
    path = journal_path(pipe)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (json.dumps(line, sort_keys=True) + "\n").encode())
    finally:
        os.close(fd)


def run_wall(pipe: Pipeline) -> tuple[float, float] | None:
    """The run's wall time: from its first journal entry (``discover`` taking the lock) to
    now (the report). None when the run has no journal (the batches' span is used)."""
    phases = read_journal(journal_path(pipe))
    started = min((float(p["at"]) for p in phases if p.get("at")), default=0.0)
    return (started, time.time()) if started else None


def read_journal(path: Path) -> list[dict[str, Any]]:
    """The phases a run noted, in order."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ---- the phases ----------------------------------------------------------------------------


def holder_id(pipe: Pipeline) -> str:
    """Who holds the run lock: the run (a run without an id: this process)."""
    return pipe.run_id or f"process-{os.getpid()}"


@contextmanager
def locked(
    pipe: Pipeline,
    input_dir: str | Path,
    *,
    wait: float | None = None,
    release: bool = False,
    in_process: bool = False,
) -> Iterator[None]:
    """Hold the input folder's run lock while a part of the run works (``wait``: how long
    to wait for another run; 0 = this run must hold it already). ``release``: the run ends
    with this part. ``in_process``: every part of the run executes in this process."""
    lock = pipe.ledger.run_lock(input_dir, in_process=in_process)
    with lock.held(holder_id(pipe), wait=wait, release=release):
        note(pipe, "lock")
        yield
    if release:
        note(pipe, "release")


def start(pipe: Pipeline, input_dir: str | Path, name: str, request: RunRequest) -> Chosen:
    """Choose the run's batches and queue them (the lock held by the caller)."""
    chosen = choose_batches(pipe, input_dir, name, request)
    note(pipe, "choose", found=chosen.found, chosen=len(chosen.keys))
    return chosen


def process(pipe: Pipeline, step: Step, keys: list[str]) -> None:
    """Run one batch step over ``keys`` (``Step.PROCESS``: the four in order)."""
    pipe.run(step, keys)
    note(pipe, str(step), batches=len(keys))  # a Step (StrEnum) or its value


def deliver_batches(
    pipe: Pipeline,
    keys: list[str],
    open_target: Callable[[], Target],
    dry_run: bool = False,
    reprocess: bool = False,
) -> dict[str, Any]:
    """Finalize the batches of ``keys`` that will not be delivered (their identified work
    files removed), then deliver the verified ones to the target ``open_target`` gives
    (opened only when needed). A dry run delivers nothing. ``reprocess``: a version at an
    object's name that the ledger does not know may be replaced (recorded)."""
    pipe.finalize_empty(keys)
    note(pipe, "finalize", batches=len(keys))
    if dry_run:
        log.info("dry run: nothing delivered (%d batch(es) considered)", len(keys))
        return {"target": "none (dry run)"}
    target = open_target()
    # TransientError (the target unreachable now) propagates: the batches not delivered stay
    # DONEPROCESSING and a retry delivers them
    counts = delivery.deliver(pipe, target, keys, replace_unknown=reprocess).as_dict()
    log.info("delivered to %s: %s", target.name, counts)
    note(pipe, "deliver", target=target.name, **{k: int(v) for k, v in counts.items()})
    return {"target": target.name, **counts}


def finish(
    pipe: Pipeline, keys: list[str], notes: Sequence[str], dry_run: bool = False
) -> tuple[dict[str, Any], Path]:
    """Close the run: a batch not in a final state is put in ERROR (interrupted), the
    summary is written (``runs/<run>/summary.json``) and logged; returns it and its folder."""
    records = []
    for key in keys:
        record = pipe.ledger.get(key)
        if record is None:
            continue
        if record.state not in FINAL_STATES and not (
            record.state == State.DONEPROCESSING and dry_run
        ):
            step = max(record.times, key=lambda s: record.times[s][0]) if record.times else "start"
            record.set_state(
                State.ERROR,
                f"interrupted: the run ended while the batch was in "
                f"{record.state} after step '{step}'; rerun the batch",
            )
            pipe.ledger.save(record)
            pipe.drop_identifiers(record)
        records.append(record)
    summary = summarize(records, pipe.run_id, list(notes), wall=run_wall(pipe))
    where = write_run_report(pipe.ledger, summary)
    log.info("%s\n  report: %s", format_summary(summary), where)
    note(pipe, "report", batches=len(records))
    return summary, where


# ---- a whole run in one process -----------------------------------------------------------


@dataclass(frozen=True)
class RunResult:
    """What ``run_folder`` did: the records by batch folder name, the summary, and the
    seconds each phase took (choose, steps, deliver, report)."""

    records: dict[str, BatchRecord]
    summary: dict[str, Any]
    seconds: dict[str, float]


def run_folder(
    pipe: Pipeline,
    input_dir: str | Path,
    open_target: Callable[[], Target],
    request: RunRequest | None = None,
    name: str | None = None,
) -> RunResult:
    """One whole run in this process, the phases the DAG's tasks run, in their order: lock,
    choose, the batch steps, finalize and deliver, report, release."""
    request = request or RunRequest()
    input_dir = Path(input_dir)
    seconds: dict[str, float] = {}
    with locked(pipe, input_dir, release=True, in_process=True):
        t = time.perf_counter()
        chosen = start(pipe, input_dir, name or input_dir.name, request)
        seconds["choose"] = time.perf_counter() - t
        t = time.perf_counter()
        for step in BATCH_STEPS:
            process(pipe, step, chosen.keys)
        seconds["steps"] = time.perf_counter() - t
        t = time.perf_counter()
        deliver_batches(pipe, chosen.keys, open_target, request.dry_run, request.reprocess)
        seconds["deliver"] = time.perf_counter() - t
        t = time.perf_counter()
        summary, _ = finish(pipe, chosen.keys, chosen.notes, request.dry_run)
        seconds["report"] = time.perf_counter() - t
    records = {k: pipe.ledger.load(k) for k in chosen.keys}
    by_name = {Path(r.source_path).name: r for r in records.values()}
    return RunResult(by_name, summary, seconds)
