"""One run over one input folder, in-process: choose the batches, run the steps, deliver.

The Airflow tasks (sendit_ops.airflow.tasks), the bench (devtools/bench.py) and the tests all
go through these functions, so "what a run does" is written once; Airflow adds only the run
lock, the mapping of chunks over task instances, and the context it reads params from.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sendit_ops.core.discovery import FoundBatch, discover_input, select_batches
from sendit_ops.core.errors import RunNeedsAttention
from sendit_ops.core.lifecycle import BATCH_STEPS, State
from sendit_ops.core.records import BatchRecord
from sendit_ops.pipeline.batch import REJECT, RELEASE, Pipeline

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
        decisions: dict[str, str] = {}
        for decision in (RELEASE, REJECT):  # named in both: rejected, the safer reading
            for name in params.get(decision) or []:
                if str(name).strip():
                    decisions[str(name).strip()] = decision
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
    decisions = {
        b.key: request.decisions.get(b.key) or request.decisions[b.folder_name]
        for b in found
        if b.key in request.decisions or b.folder_name in request.decisions
    }
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


def run_steps(pipe: Pipeline, keys: list[str]) -> None:
    """The batch steps in order (filter, pseudonymize, anonymize, package)."""
    for step in BATCH_STEPS:
        pipe.run(step, keys)


def run_folder(
    pipe: Pipeline,
    input_dir: str | Path,
    deliver: Callable[[Pipeline, list[str]], Any],
    request: RunRequest | None = None,
    name: str | None = None,
) -> dict[str, BatchRecord]:
    """One whole run in this process: choose, run the steps, deliver with ``deliver``
    (skipped for a dry run). Returns the batch records by folder name."""
    request = request or RunRequest()
    input_dir = Path(input_dir)
    chosen = choose_batches(pipe, input_dir, name or input_dir.name, request)
    run_steps(pipe, chosen.keys)
    if not request.dry_run:
        deliver(pipe, chosen.keys)
    pipe.finalize_empty(chosen.keys)
    records = {k: pipe.ledger.load(k) for k in chosen.keys}
    return {Path(r.source_path).name: r for r in records.values()}
