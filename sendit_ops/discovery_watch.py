"""Cheap detection of batch folders not yet taken by any run (for streaming pick-up).

One ``stat`` per folder: a finished folder is pending when the ledger has no record for its
path, or when the folder changed after the record's completion time (files added or
renamed). The run itself then decides with full content fingerprints.

A watched folder accumulates thousands of batches; the trigger polls every few seconds, so
the ledger records it knows are cached by modification time and only changed ones are read
again (one ``stat`` per record per poll instead of a read and a JSON parse).
"""

from __future__ import annotations

import json
from pathlib import Path

from sendit_ops.discovery import is_in_progress

RecordCache = dict[str, tuple[int, str, float]]  # record path -> (mtime_ns, source, finished)


def known_batches(
    work_root: str | Path, dag_id: str, cache: RecordCache | None = None
) -> dict[str, float]:
    """Source path -> completion time of every batch the ledger knows (any state).

    With ``cache`` (kept by the caller between calls), a record is read again only when its
    modification time changed; records that disappeared are dropped from the cache.
    """
    base = Path(work_root) / dag_id / "batches"
    known: dict[str, float] = {}
    if not base.is_dir():
        return known
    cache = {} if cache is None else cache
    present = set()
    for record in base.glob("*/record.json"):
        path = str(record)
        try:
            mtime = record.stat().st_mtime_ns
            entry = cache.get(path)
            if entry is None or entry[0] != mtime:
                data = json.loads(record.read_text())
                entry = (mtime, data["source_path"], float(data.get("finished_at") or 0))
                cache[path] = entry
        except (OSError, ValueError, KeyError):
            continue
        present.add(path)
        known[entry[1]] = entry[2]
    for gone in set(cache) - present:
        del cache[gone]
    return known


def pending_folders(
    input_dir: str | Path, work_root: str | Path, dag_id: str, cache: RecordCache | None = None
) -> set[str]:
    """Finished batch folders no run has taken yet (paths; never logged)."""
    known = known_batches(work_root, dag_id, cache)
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
