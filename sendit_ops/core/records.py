"""A batch's record: its state, reasons, QA metrics, step times and outputs; and what sendit
delivered for it (kept apart, see ``Delivery``). Persisted by ``core.ledger`` only.

The outputs are typed (``BatchOutputs``): each step sets the fields it produces, the next
steps and delivery read them, and a misspelt field is an error instead of a silent None. They
are stored as JSON; a record of an older version reads back with its known fields (unknown
ones are dropped, missing ones take their defaults).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from typing import Any

from sendit_ops.core.lifecycle import Stage, State


@dataclass
class BatchOutputs:
    """What the steps produced for a batch (PHI-free: pseudonyms, names sendit made up,
    checksums, counts)."""

    stage: Stage = Stage.NEW  # how far a PROCESSING batch got
    # a reviewer's decision on held images: decision, fingerprint, run_id, reviewer, at
    review: dict[str, Any] = field(default_factory=dict)
    # pseudonymize
    provider: str = ""  # "local" or "dasher"
    pseudonym_source: str = ""  # see Pipeline.pseudonym_source
    entity_suid: str = ""
    item_suid: str = ""  # the coded accession number: the row key
    # anonymize
    files: list[str] = field(default_factory=list)  # anonymized files to package
    held: list[dict[str, Any]] = field(default_factory=list)  # images held for review
    # delivered images whose pixels were masked: file, masked_share, boxes (issue 22)
    masked: list[dict[str, Any]] = field(default_factory=list)
    # package
    verified: bool = False
    archive: str = ""  # the archive's path in the work root
    archive_name: str = ""
    object_name: str = ""
    sha256: str = ""
    bytes_out: int = 0
    images: int = 0
    recipe_sha256: str = ""
    deidentification: Any = None  # the Annex E profile's description
    version: str = ""  # sendit's version
    # deliver
    previous_sha256: list[str] = field(default_factory=list)  # versions it may replace
    delivered_to: str = ""  # "outbox" or "google"
    delivered_at: float = 0.0
    bucket: str = ""
    superseded_by: str = ""  # re-delivered as another batch id (the key changed)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BatchOutputs:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known and v is not None}
        if isinstance(values.get("previous_sha256"), str):  # one checksum, before 0.1
            values["previous_sha256"] = [values["previous_sha256"]]
        out = cls(**values)
        out.stage = Stage(out.stage) if out.stage in Stage._value2member_map_ else Stage.NEW
        return out


@dataclass
class BatchRecord:
    """What sendit kept per batch: state, reasons, QA metrics, step times."""

    key: str
    dag_id: str
    source_path: str  # local only: may contain a typed folder name; never logged
    fingerprint: str = ""
    finished_at: float = 0.0
    state: State = State.QUEUE
    reasons: list[str] = field(default_factory=list)  # why ERROR / EMPTY (PHI-free)
    warnings: list[str] = field(default_factory=list)  # skipped images etc. (PHI-free)
    metrics: dict[str, Any] = field(default_factory=dict)
    times: dict[str, list[float]] = field(default_factory=dict)  # step -> [start, finish]
    # step -> Airflow map index of the mapped task instance (chunk) that ran it last, so a
    # log link opens that chunk's log; absent for a step run outside a mapped task
    map_index: dict[str, int] = field(default_factory=dict)
    outputs: BatchOutputs = field(default_factory=lambda: BatchOutputs())
    run_id: str = ""
    history: list[list[Any]] = field(default_factory=list)  # [time, state, run_id]

    def __post_init__(self) -> None:
        # a record read back from JSON holds the state's name and a plain dict of outputs
        self.state = State(self.state)
        if isinstance(self.outputs, dict):
            self.outputs = BatchOutputs.from_dict(self.outputs)

    def set_state(self, state: State, reason: str | None = None) -> None:
        """Move to a new state (with an optional reason) and note it in the history."""
        self.state = State(state)
        if reason:
            self.reasons.append(reason)
        self.history.append([round(time.time(), 3), state, self.run_id])

    def start(self, step: str, map_index: int = -1) -> None:
        """Record the start time of a step, and the chunk (Airflow map index, -1: not a
        mapped task) that runs it."""
        self.times[step] = [round(time.time(), 3), 0.0]
        self.note_chunk(step, map_index)

    def note_chunk(self, step: str, map_index: int) -> None:
        """Remember which mapped task instance ran ``step`` (-1 forgets an older one)."""
        if map_index >= 0:
            self.map_index[step] = map_index
        else:
            self.map_index.pop(step, None)

    def finish(self, step: str) -> None:
        """Record the finish time of a step."""
        self.times.setdefault(step, [round(time.time(), 3), 0.0])[1] = round(time.time(), 3)

    def step_seconds(self) -> dict[str, float]:
        """Each finished step's own time (finish - start). In a staged run a batch waits
        between its steps (for the chunk's other batches, for the next task to start): those
        waits are not the batch's work and are not counted here."""
        return {
            step: round(max(t[1] - t[0], 0.0), 3)
            for step, t in self.times.items()
            if len(t) > 1 and t[0] and t[1]
        }

    def processing_seconds(self) -> float:
        """The batch's processing time: the sum of its steps' own times."""
        return round(sum(self.step_seconds().values()), 3)


@dataclass
class Delivery:
    """What sendit itself put outside the machine for one batch, kept apart from the record
    of the current attempt: the replace-own rule must know it whatever state the batch was
    left in (a dry run, a crash between packaging and delivery, a failed delivery)."""

    object_name: str = ""  # the last confirmed delivery (object and row both written)
    sha256: str = ""
    row_key: str = ""  # CodedAccessionNumberID of its row
    target: str = ""  # "outbox" or "google"
    location: str = ""  # the outbox folder or the bucket
    delivered_at: float = 0.0
    run_id: str = ""
    # attempts since that delivery, noted before their object was written:
    # [object_name, sha256, time, run_id]; an object with one of these checksums is sendit's
    attempts: list[list[Any]] = field(default_factory=list)

    def own_versions(self) -> list[str]:
        """Checksums of every archive sendit may have written for this batch (the confirmed
        delivery first): an object with one of them may be replaced by a newer version."""
        shas = [self.sha256] + [a[1] for a in self.attempts]
        return list(dict.fromkeys(s for s in shas if s))


@dataclass(frozen=True)
class Review:
    """A reviewer's decision on a HELD batch, as the review history shows it: who (the
    Airflow user name), when, release or reject, and the DAG run that carries it out."""

    key: str
    decision: str  # "release" or "reject"
    images: int  # held images the reviewer saw
    reviewer: str
    decided_at: float
    run_id: str
