"""Cheap detection of batch folders not yet taken by any run (for streaming pick-up).

A finished folder is pending when the ledger has no record for its path, or when the folder
changed after the record's completion time (files added or renamed). The run itself then
decides with full content fingerprints.

A watched folder accumulates thousands of batches and the ledger keeps every batch ever
seen; the trigger polls every few seconds. Each poll lists the input folder, then asks the
ledger's database for the completion times of those folders only (an indexed lookup by
source path): its cost follows the input folder, not the size of the history. Nothing is
cached between polls but the database handle (the caller's ``Ledger``).
"""

from __future__ import annotations

from pathlib import Path

from sendit_ops.core.discovery import is_in_progress
from sendit_ops.core.ledger import Ledger


def pending_folders(input_dir: str | Path, ledger: Ledger) -> set[str]:
    """Finished batch folders no run has taken yet (paths; never logged). ``ledger``: the
    DAG's ledger, kept by the caller between polls (its database handle)."""
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
    if not ledger.has_database():  # no run ever: every finished folder is new
        return set(candidates)
    seen = ledger.completion_times(candidates)
    return {
        path for path, mtime in candidates.items() if path not in seen or mtime > seen[path] + 1
    }
