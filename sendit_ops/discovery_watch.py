"""Cheap detection of batch folders not yet taken by any run (for streaming pick-up).

One ``stat`` per folder: a finished folder is pending when the ledger has no record for its
path, or when the folder changed after the record's completion time (files added or
renamed). The run itself then decides with full content fingerprints.
"""

from __future__ import annotations

import json
from pathlib import Path

from sendit_ops.discovery import is_in_progress


def known_batches(work_root: str | Path, dag_id: str) -> dict[str, float]:
    """Source path -> completion time of every batch the ledger knows (any state)."""
    base = Path(work_root) / dag_id / "batches"
    known: dict[str, float] = {}
    if not base.is_dir():
        return known
    for record in base.glob("*/record.json"):
        try:
            data = json.loads(record.read_text())
            known[data["source_path"]] = float(data.get("finished_at") or 0)
        except (OSError, ValueError, KeyError):
            continue
    return known


def pending_folders(input_dir: str | Path, work_root: str | Path, dag_id: str) -> set[str]:
    """Finished batch folders no run has taken yet (paths; never logged)."""
    known = known_batches(work_root, dag_id)
    pending = set()
    root = Path(input_dir)
    if not root.is_dir():
        return pending
    for child in root.iterdir():
        if child.name.startswith(".") or is_in_progress(child.name) or not child.is_dir():
            continue
        seen = known.get(str(child))
        if seen is None or child.stat().st_mtime > seen + 1:
            pending.add(str(child))
    return pending
