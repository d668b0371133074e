"""Cheap detection of batch folders not yet taken by any run (for streaming pick-up).

A finished folder is pending when the ledger has no record for its path, or when the folder
changed after the record's completion time (files added or renamed). The run itself then
decides with full content fingerprints.

A watched folder accumulates thousands of batches and the ledger keeps every batch ever
seen; the trigger polls every few seconds. Each poll lists the input folder, then asks the
ledger's database for the completion times of those folders only (an indexed lookup by
source path): its cost follows the input folder, not the size of the history. Nothing is
cached between polls but the database handle (``RecordIndex``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from sendit_ops.core.discovery import is_in_progress
from sendit_ops.core.ledger import Ledger


@dataclass
class RecordIndex:
    """The watcher's handle on a ledger, kept between polls (the engine and the ledger's id
    are looked up once; records are always read from the database)."""

    ledger: Ledger | None = None

    def for_ledger(self, work_root: str | Path, dag_id: str, url: str | None) -> Ledger:
        """The ledger of this DAG (the same object at every poll)."""
        wanted = Ledger(work_root, dag_id, url)
        if self.ledger is None or (self.ledger.root, self.ledger.url) != (wanted.root, wanted.url):
            self.ledger = wanted
        return self.ledger


def watch_ledger_url() -> str | None:
    """``ledger_url`` for a watcher that was not given one: from the environment's
    ``AIRFLOW_VAR_SENDIT_SETTINGS`` (the triggerer cannot read Variables cheaply)."""
    raw = os.environ.get("AIRFLOW_VAR_SENDIT_SETTINGS")
    try:
        value = json.loads(raw).get("ledger_url") if raw else None
    except (ValueError, AttributeError):
        value = None
    return str(value) if value else None


def pending_folders(
    input_dir: str | Path,
    work_root: str | Path,
    dag_id: str,
    index: RecordIndex | None = None,
    ledger_url: str | None = None,
) -> set[str]:
    """Finished batch folders no run has taken yet (paths; never logged)."""
    root = Path(input_dir)
    if not root.is_dir():
        return set()
    candidates = {}
    for child in root.iterdir():
        if child.name.startswith(".") or is_in_progress(child.name):
            continue
        try:
            if child.is_dir():
                candidates[str(child)] = child.stat().st_mtime
        except OSError:  # gone, or a dangling link: not a batch folder now
            continue
    if not candidates:
        return set()
    index = RecordIndex() if index is None else index
    ledger = index.for_ledger(work_root, dag_id, ledger_url or watch_ledger_url())
    if not ledger.has_database():  # no run ever: every finished folder is new
        return set(candidates)
    seen = ledger.completion_times(candidates)
    return {
        path for path, mtime in candidates.items() if path not in seen or mtime > seen[path] + 1
    }
