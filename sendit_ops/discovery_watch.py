"""Cheap detection of batch folders not yet taken by any run (for streaming pick-up).

A finished folder is pending when the ledger has no record for its path, or when the folder
changed after the record's completion time (files added or renamed). The run itself then
decides with full content fingerprints.

A watched folder accumulates thousands of batches and the ledger keeps every batch ever
seen; the trigger polls every few seconds. A ``RecordIndex`` kept between polls reads each
record once and then only looks again at the records of folders still in the input folder
(one ``stat`` each, a read when it changed): per poll, one listing of the ledger's batch
folders plus two ``stat`` per input folder, whatever the size of the history.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from sendit_ops.discovery import is_in_progress


@dataclass
class RecordIndex:
    """What the watcher knows of a ledger's records, kept between polls."""

    records: dict[str, tuple[int, str, float]] = field(default_factory=dict)
    """batch folder name in the ledger -> (record mtime_ns, source path, completion time)"""
    by_source: dict[str, str] = field(default_factory=dict)  # source path -> batch folder name

    def __len__(self) -> int:
        return len(self.records)

    def read(self, base: Path, name: str, mtime: int | None = None) -> bool:
        """(Re)read one record; forget it when it is gone or unreadable."""
        record = base / name / "record.json"
        old = self.records.pop(name, None)
        if old and self.by_source.get(old[1]) == name:
            del self.by_source[old[1]]
        try:
            mtime = record.stat().st_mtime_ns if mtime is None else mtime
            data = json.loads(record.read_text())
            entry = (mtime, str(data["source_path"]), float(data.get("finished_at") or 0))
        except (OSError, ValueError, KeyError, TypeError):
            return False
        self.records[name] = entry
        self.by_source[entry[1]] = name
        return True

    def refresh(self, base: Path) -> None:
        """Read the records added since the last poll, drop those that disappeared."""
        try:
            names = set(os.listdir(base))
        except OSError:
            names = set()
        for gone in set(self.records) - names:
            self.read(base, gone)  # gone: forgotten
        for name in names - set(self.records):
            self.read(base, name)

    def completion(self, base: Path, source: str) -> float | None:
        """Completion time of the batch of ``source`` (None when no readable record has it);
        its record is read again only when it changed."""
        name = self.by_source.get(source)
        if name is None:
            return None
        try:
            mtime = (base / name / "record.json").stat().st_mtime_ns
        except OSError:
            self.read(base, name)
            return None
        if mtime != self.records[name][0] and not self.read(base, name, mtime):
            return None
        entry = self.records.get(name)
        return entry[2] if entry and entry[1] == source else None


def pending_folders(
    input_dir: str | Path, work_root: str | Path, dag_id: str, index: RecordIndex | None = None
) -> set[str]:
    """Finished batch folders no run has taken yet (paths; never logged)."""
    base = Path(work_root) / dag_id / "batches"
    index = RecordIndex() if index is None else index
    index.refresh(base)
    pending = set()
    root = Path(input_dir)
    if not root.is_dir():
        return pending
    for child in root.iterdir():
        if child.name.startswith(".") or is_in_progress(child.name) or not child.is_dir():
            continue
        seen = index.completion(base, str(child))
        if seen is None or child.stat().st_mtime > seen + 1:
            pending.add(str(child))
    return pending
