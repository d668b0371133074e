"""A batch's lifecycle: its state, the stage it has reached inside PROCESSING, and the steps
that move it. One vocabulary, used by the pipeline, the ledger, the task ids, the step
times of a record and the dashboard.

States are sendit's 2017 names (operators know them, BigQuery and old records hold them),
so they stay strings on the wire: ``State`` is a ``StrEnum`` and ``State.DONE == "DONE"``.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    """Where a batch is. QUEUE → PROCESSING → DONEPROCESSING → DONE, or one of the other
    final states with a recorded reason."""

    QUEUE = "QUEUE"  # found, nothing done yet
    PROCESSING = "PROCESSING"  # inside the batch steps (see Stage)
    DONEPROCESSING = "DONEPROCESSING"  # packaged and verified, not delivered
    DONE = "DONE"  # delivered (object and row)
    HELD = "HELD"  # kept back for a reviewer (burned-in text not verified clean)
    EMPTY = "EMPTY"  # no image passed the filters
    ERROR = "ERROR"  # stopped, with a reason

    @property
    def final(self) -> bool:
        """A run has nothing more to do with a batch in this state."""
        return self in FINAL_STATES


STATES: tuple[State, ...] = tuple(State)
FINAL_STATES: frozenset[State] = frozenset({State.DONE, State.HELD, State.EMPTY, State.ERROR})


class Stage(StrEnum):
    """How far a PROCESSING batch got: the step after which it may resume (a retried task
    skips the steps already done)."""

    NEW = ""  # not filtered yet
    FILTERED = "filtered"
    PSEUDONYMIZED = "pseudonymized"
    ANONYMIZED = "anonymized"
    PACKAGED = "packaged"


class Step(StrEnum):
    """The steps of a run. The value names the step in records (``times``), reasons and
    logs; ``task_id`` is the Airflow task that runs it (the names users see in the UI)."""

    DISCOVER = "discover"
    FILTER = "filter"
    PSEUDONYMIZE = "pseudonymize"
    ANONYMIZE = "anonymize"
    PACKAGE = "package"
    DELIVER = "deliver"
    REPORT = "report"
    PROCESS = "process"  # the fused layout: filter..package, then deliver, in one task

    @property
    def task_id(self) -> str:
        return _TASK_IDS[self]


BATCH_STEPS: tuple[Step, ...] = (Step.FILTER, Step.PSEUDONYMIZE, Step.ANONYMIZE, Step.PACKAGE)

_TASK_IDS = {
    Step.DISCOVER: "discover",
    Step.FILTER: "filter_images",
    Step.PSEUDONYMIZE: "fetch_pseudonyms",
    Step.ANONYMIZE: "anonymize_headers",
    Step.PACKAGE: "package_and_verify",
    Step.DELIVER: "deliver",
    Step.REPORT: "report",
    Step.PROCESS: "process_and_deliver",
}
