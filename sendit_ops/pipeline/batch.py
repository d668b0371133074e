"""The bookkeeping around the batch steps of a run (the Airflow tasks are thin wrappers).

``Pipeline`` is the one object a task builds: the steps' shared context (``StepContext``:
settings, key, parsed recipes) plus the ledger. It queues the chosen batches, runs a step
(``pipeline.steps``) over batches at the stage it expects, and gives delivery what it needs
(``ready_for_delivery``, ``row_of``, ``mark_delivered``, ``mark_failed``). A BatchError
moves that batch to ERROR with its reason and the other batches go on; any other exception
does the same with a generic, PHI-free reason (the stack is logged without exception text,
which may quote header values).
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from sendit_ops.core.discovery import FoundBatch
from sendit_ops.core.errors import (
    BatchError,
    ConfigError,
    NoSpaceError,
    TransientError,
    is_no_space,
)
from sendit_ops.core.ledger import Ledger
from sendit_ops.core.lifecycle import BATCH_STEPS, Stage, State, Step
from sendit_ops.core.progress import ProgressLog
from sendit_ops.core.records import BatchRecord, Delivery
from sendit_ops.pipeline.context import StepContext
from sendit_ops.pipeline.steps.anonymize import (
    HEADER_ONLY_METHOD,
    REJECT,
    RELEASE,
    anonymize_batch,
    review_decision,
)
from sendit_ops.pipeline.steps.filter import filter_batch
from sendit_ops.pipeline.steps.package import package_batch
from sendit_ops.pipeline.steps.pseudonymize import pseudonymize_batch
from sendit_ops.pipeline.work_files import BatchFiles

__all__ = ["HEADER_ONLY_METHOD", "REJECT", "RELEASE", "Pipeline", "StepSpec", "review_decision"]

log = logging.getLogger("sendit")

# the batches a step takes: a state (any stage), or a state at a given stage
Wanted = tuple[State | tuple[State, Stage], ...]
# a step of one batch (pipeline.steps): context, record, work files
StepFn = Callable[[StepContext, BatchRecord, BatchFiles], None]


@dataclass(frozen=True)
class StepSpec:
    """A batch step: the batches it takes (a retry resumes at the stage a batch reached)
    and the function that does it."""

    want: Wanted
    run: StepFn


STEPS: dict[Step, StepSpec] = {
    Step.FILTER: StepSpec((State.QUEUE,), filter_batch),
    Step.PSEUDONYMIZE: StepSpec(
        ((State.PROCESSING, Stage.FILTERED), (State.PROCESSING, Stage.PSEUDONYMIZED)),
        pseudonymize_batch,
    ),
    Step.ANONYMIZE: StepSpec(
        ((State.PROCESSING, Stage.PSEUDONYMIZED), (State.PROCESSING, Stage.ANONYMIZED)),
        anonymize_batch,
    ),
    Step.PACKAGE: StepSpec(((State.PROCESSING, Stage.ANONYMIZED),), package_batch),
}


@dataclass
class Pipeline(StepContext):
    """The steps' context (settings, key, parsed recipes, provider) and the batch records
    of one DAG run: what the tasks and the runner (``pipeline.run``) work with."""

    dag_id: str
    run_id: str = ""
    map_index: int = -1  # the Airflow map index of the running task (-1: not mapped)

    @cached_property
    def ledger(self) -> Ledger:
        """The batch records of this DAG (SQLite in the work root, or ``ledger_url``)."""
        return Ledger(self.settings.work_root, self.dag_id, self.settings.ledger_url)

    def files(self, record: BatchRecord) -> BatchFiles:
        """The batch's work folder and the records its steps pass on."""
        return BatchFiles(self.ledger.batch_dir(record.key))

    # ---- bookkeeping -------------------------------------------------------------------

    def register(self, found: Iterable[FoundBatch]) -> list[str]:
        """Put the chosen batches in QUEUE for this run (work files of earlier tries removed),
        in one transaction. A record starts afresh: what sendit delivered before is kept
        apart (``Ledger.delivery``), whatever state the previous attempt was left in."""
        chosen = list(found)
        for batch in chosen:
            BatchFiles(self.ledger.batch_dir(batch.key)).drop_copies()
        keys = []
        with self.ledger.transaction():
            for batch in chosen:
                old = self.ledger.get(batch.key)
                record = BatchRecord(
                    key=batch.key,
                    dag_id=self.dag_id,
                    source_path=batch.path,
                    fingerprint=batch.fingerprint,
                    finished_at=batch.finished_at,
                    run_id=self.run_id,
                    history=old.history if old else [],
                )
                if old and old.outputs.review:
                    # a reviewer's decision stays with the content it was made for
                    record.outputs.review = old.outputs.review
                record.set_state(State.QUEUE)
                self.ledger.save(record)
                keys.append(batch.key)
        return keys

    def record_review(self, decisions: dict[str, str], reviewer: str = "") -> None:
        """Record reviewers' decisions (batch key -> release / reject) on held batches queued
        for this run; each applies to the batch's current content only."""
        for key, decision in decisions.items():
            record = self.ledger.get(key)
            if record is None or decision not in (RELEASE, REJECT):
                continue
            record.outputs.review = {
                "decision": decision,
                "fingerprint": record.fingerprint,
                "run_id": self.run_id,
                "reviewer": reviewer,
                "at": round(time.time(), 3),
            }
            record.warnings.append(f"reviewer's decision on held images: {decision}")
            self.ledger.save(record)

    def _each(self, keys: Iterable[str], step: Step) -> None:
        keys = list(keys)
        progress = self.progress = ProgressLog(step, len(keys), log.info)
        try:
            with progress.heartbeat():  # a long batch logs a line at least every 30 s
                for key in keys:
                    progress.begin(key)
                    record = self._one(key, step, STEPS[step])
                    metrics = record.metrics if record else {}
                    progress.batch_done(
                        metrics.get("images_accepted", 0), metrics.get("bytes_in", 0)
                    )
        finally:
            self.progress = None
        progress.close()

    def _one(self, key: str, step: Step, spec: StepSpec) -> BatchRecord | None:
        """One step of one batch: the record's state and reasons say how it went; an
        exception never leaves the batch (or stops the others)."""
        record = self.ledger.get(key)
        if record is None:
            log.warning("batch %s: no record, skipped by %s", key, step)
            return None
        stage = record.outputs.stage
        if (record.state, stage) not in spec.want and record.state not in spec.want:
            return record
        record.run_id = self.run_id or record.run_id
        record.start(step, self.map_index)
        try:
            spec.run(self, record, self.files(record))
        except (ConfigError, TransientError):
            # not this batch's fault (the setup, or a service down): the task fails or is
            # retried with the message; the batch resumes from its stage next time
            self.ledger.save(record)
            raise
        except BatchError as exc:
            record.set_state(State.ERROR, f"{step}: {exc}")
            log.error("batch %s: ERROR in %s: %s", key, step, exc)
        except Exception as exc:  # keep the run going; never print the exception text
            if is_no_space(exc):
                # the working copies and the archive: about twice the batch's size
                full = NoSpaceError("work root", 2 * record.metrics.get("bytes_in", 0))
                record.set_state(State.ERROR, f"{step}: {full}")
                log.error("batch %s: ERROR in %s: %s", key, step, full)
            else:
                stack = "".join(traceback.format_tb(exc.__traceback__))
                log.error(
                    "batch %s: internal error in %s (%s)\n%s",
                    key,
                    step,
                    type(exc).__name__,
                    stack,
                )
                record.set_state(
                    State.ERROR,
                    f"{step}: internal error ({type(exc).__name__}); "
                    "see the task log, then rerun the batch",
                )
        if record.state == State.ERROR:  # finished: its identifier lists go (docs/pipeline.md)
            self.drop_identifiers(record)
        record.finish(step)
        self.ledger.save(record)
        return record

    def drop_identifiers(self, record: BatchRecord) -> None:
        """Delete a finished batch's identifier lists (names, ids, addresses: identified
        data nothing needs once the batch is DONE, EMPTY or ERROR; a rerun derives them
        again from the source folder). For an ERROR batch its working copies go too
        (unless ``keep_work_files``): a rerun rebuilds them, and on a full work root they
        hold the space the other batches need."""
        files = self.files(record)
        files.drop_identifiers()
        if record.state == State.ERROR and not self.settings.keep_work_files:
            files.drop_copies()

    def run(self, step: Step, keys: Iterable[str]) -> None:
        """Run one step (or, for ``Step.PROCESS``, the four batch steps in order: the
        "fused" task layout) over some batches. Each step checks the stage a batch is at,
        so a retry resumes where the batch stopped."""
        keys = list(keys)
        # through the public methods, one per step (a test may wrap one of them)
        steps = {
            Step.FILTER: self.filter,
            Step.PSEUDONYMIZE: self.pseudonymize,
            Step.ANONYMIZE: self.anonymize,
            Step.PACKAGE: self.package,
        }
        for each in BATCH_STEPS if step == Step.PROCESS else (Step(step),):
            steps[each](keys)

    def filter(self, keys: Iterable[str]) -> None:
        """Import and filter each image; collect identifiers. QUEUE -> PROCESSING/EMPTY/ERROR."""
        self._each(keys, Step.FILTER)

    def pseudonymize(self, keys: Iterable[str]) -> None:
        """Get pseudonyms, one request per batch."""
        self._each(keys, Step.PSEUDONYMIZE)

    def anonymize(self, keys: Iterable[str]) -> None:
        """Apply the header recipe to every accepted image; leak-check each in memory."""
        self._each(keys, Step.ANONYMIZE)

    def package(self, keys: Iterable[str]) -> None:
        """Pack each batch, build its row, and verify names, row and archive headers."""
        self._each(keys, Step.PACKAGE)

    # ---- delivery helpers ----------------------------------------------------------------

    def ready_for_delivery(self, keys: Iterable[str]) -> list[BatchRecord]:
        """Batches that may leave the machine: DONEPROCESSING, verified, with pseudonyms.

        This re-checks the record rather than trusting the upstream task's result.
        """
        ready = []
        for key in keys:
            record = self.ledger.get(key)
            if record is None or record.state != State.DONEPROCESSING:
                continue
            out = record.outputs
            if not (
                out.verified and out.entity_suid and out.item_suid and Path(out.archive).is_file()
            ):
                record.set_state(
                    State.ERROR, "deliver: refused, batch is not verified as anonymized"
                )
                self.ledger.save(record)
                self.drop_identifiers(record)
                continue
            ready.append(record)
        if ready:
            # noted before any object is written: a crash after the write leaves the
            # checksum known, so the next attempt may replace that object
            delivered = self.ledger.note_attempts(ready)
            for record in ready:
                # every version sendit put at this batch's object (the replace-own rule)
                record.outputs.previous_sha256 = delivered[record.key].own_versions()
        return ready

    def row_of(self, record: BatchRecord) -> dict[str, str]:
        """The metadata row of a packaged batch."""
        return self.files(record).read_row()

    def mark_delivered(self, record: BatchRecord, where: dict[str, Any]) -> Delivery | None:
        """DONEPROCESSING -> DONE and "what sendit delivered" in one transaction; then
        remove identified work files. Returns what sendit had delivered for the batch
        before, when it went to the same place (target and location): the caller removes
        it if it has another object name or row key (one object and one row per study)."""
        # identified work files go first: a crash before the DONE transaction leaves the
        # batch to be redone from its source (the same bytes, replaced by themselves), never
        # a DONE batch whose identifier lists no later run would delete
        files = self.files(record)
        files.drop_identifiers()
        record.outputs = replace(record.outputs, **where)
        record.finish(Step.DELIVER)
        record.note_chunk(Step.DELIVER, self.map_index)
        record.set_state(State.DONE)
        outbox = where.get("delivered_to") == "outbox"
        location = str(where.get("bucket") or (self.settings.outbox if outbox else ""))
        with self.ledger.transaction():
            before = self.ledger.delivery(record.key)
            self.ledger.save(record)
            self.ledger.confirm_delivery(record, location)
        if not self.settings.keep_work_files:
            files.drop_copies("archive")
        same_place = before is not None and (before.target, before.location) == (
            where.get("delivered_to"),
            location,
        )
        return before if same_place else None

    def mark_failed(self, record: BatchRecord, exc: Exception) -> None:
        """A delivery failure of one batch: ERROR with the (PHI-free) reason; a full disk
        says so ("no space left on the outbox"), and the identifier lists go (finished)."""
        if is_no_space(exc):
            exc = NoSpaceError("outbox", record.outputs.bytes_out)
        reason = str(exc) if isinstance(exc, BatchError) else type(exc).__name__
        record.set_state(State.ERROR, f"deliver: {reason}")
        self.drop_identifiers(record)
        self.ledger.save(record)

    def finalize_empty(self, keys: Iterable[str]) -> None:
        """Remove identified work files of finished batches that will not be delivered
        (EMPTY, HELD, and ERROR: docs/pipeline.md promises identifier lists are deleted when a
        batch is finished, whatever its end)."""
        for key in keys:
            record = self.ledger.get(key)
            if record and record.state in (State.EMPTY, State.ERROR, State.HELD):
                self.drop_identifiers(record)  # a held batch is redone from its source
