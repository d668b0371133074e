"""Durable batch records under the work root, written atomically.

Layout: ``<work_root>/<dag_id>/batches/<batch_key>/record.json`` plus the batch's work files.
A record holds the state (sendit's names), PHI-free reasons, QA metrics and step times. The
work root holds identified data (working copies, identifier lists): it must be as protected
as the source folders.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("sendit")

QUEUE = "QUEUE"
PROCESSING = "PROCESSING"
DONEPROCESSING = "DONEPROCESSING"
DONE = "DONE"
EMPTY = "EMPTY"
ERROR = "ERROR"
STATES = (QUEUE, PROCESSING, DONEPROCESSING, DONE, EMPTY, ERROR)
FINAL_STATES = (DONE, EMPTY, ERROR)


def write_atomic(path: Path, data: bytes | str, mode: int = 0o600, durable: bool = True) -> None:
    """Write a file so readers see either the old or the new content, never a partial one.

    ``durable``: the content is on disk (fsync) before it replaces the old file, so it
    survives a crash of the machine. Work files that a step can derive again from the source
    folder are written with ``durable=False``: an fsync costs a journal commit, several per
    batch, and on a busy Airflow host that is a good part of a small batch's time.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # one writer per process and thread at a time: a fixed temporary name, no random names
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.chmod(tmp, mode)  # the file may have been left by an earlier writer of that pid
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any, durable: bool = True) -> None:
    """Atomically write JSON (sorted keys, so equal content gives equal bytes)."""
    text = json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n"
    write_atomic(path, text, durable=durable)


def read_json(path: Path) -> Any:
    """Read a JSON file written by write_json."""
    return json.loads(path.read_text())


@dataclass
class BatchRecord:
    """What sendit kept per batch: state, reasons, QA metrics, step times."""

    key: str
    dag_id: str
    source_path: str  # local only: may contain a typed folder name; never logged
    fingerprint: str = ""
    finished_at: float = 0.0
    state: str = QUEUE
    reasons: list[str] = field(default_factory=list)  # why ERROR / EMPTY (PHI-free)
    warnings: list[str] = field(default_factory=list)  # skipped images etc. (PHI-free)
    metrics: dict[str, Any] = field(default_factory=dict)
    times: dict[str, list[float]] = field(default_factory=dict)  # step -> [start, finish]
    outputs: dict[str, Any] = field(default_factory=dict)
    run_id: str = ""
    history: list[list[Any]] = field(default_factory=list)  # [time, state, run_id]

    def set_state(self, state: str, reason: str | None = None) -> None:
        """Move to a new state (with an optional reason) and note it in the history."""
        self.state = state
        if reason:
            self.reasons.append(reason)
        self.history.append([round(time.time(), 3), state, self.run_id])

    def start(self, step: str) -> None:
        """Record the start time of a step."""
        self.times[step] = [round(time.time(), 3), 0.0]

    def finish(self, step: str) -> None:
        """Record the finish time of a step."""
        self.times.setdefault(step, [round(time.time(), 3), 0.0])[1] = round(time.time(), 3)


class Ledger:
    """The batch records of one DAG (one input folder)."""

    def __init__(self, work_root: str | Path, dag_id: str):
        self.root = Path(work_root) / dag_id
        self.dag_id = dag_id

    def batch_dir(self, key: str) -> Path:
        """The work folder of one batch."""
        return self.root / "batches" / key

    def record_path(self, key: str) -> Path:
        """Where a batch record lives."""
        return self.batch_dir(key) / "record.json"

    def load(self, key: str) -> BatchRecord:
        """Read a batch record."""
        return BatchRecord(**read_json(self.record_path(key)))

    def get(self, key: str) -> BatchRecord | None:
        """Read a batch record, or None when the batch was never seen."""
        path = self.record_path(key)
        return BatchRecord(**read_json(path)) if path.exists() else None

    def save(self, record: BatchRecord) -> None:
        """Write a batch record atomically."""
        write_json(self.record_path(record.key), asdict(record))

    def all(self) -> list[BatchRecord]:
        """Every readable batch record of this DAG; an unreadable one (damaged disk, a copy
        cut short) is left out with a warning naming its batch id."""
        base = self.root / "batches"
        if not base.is_dir():
            return []
        records = []
        for p in sorted(base.iterdir()):
            if not (p / "record.json").exists():
                continue
            try:
                records.append(BatchRecord(**read_json(p / "record.json")))
            except (OSError, ValueError, TypeError) as exc:
                log.warning(
                    "batch %s: its record in %s is unreadable (%s) and is left out",
                    p.name,
                    self.root,
                    type(exc).__name__,
                )
        return records

    def delivered(self, keys: Iterable[str]) -> dict[str, str]:
        """Batch key -> fingerprint for those of ``keys`` already DONE.

        Only the records of ``keys`` are read (the batches found in the input folder), so a
        run's discovery does not slow down as the ledger's history grows."""
        records = (self.get(key) for key in keys)
        return {r.key: r.fingerprint for r in records if r is not None and r.state == DONE}
