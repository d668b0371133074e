"""Local delivery when Google is not configured: the same layout as the bucket and the table.

``<outbox>/Collection/<c>/Entity/<coded patient>/<archive>`` and one JSON-lines table
``<outbox>/bigquery/<c>/<table>.jsonl`` upserted by coded accession number, so reruns never
duplicate a row. Objects are create-if-absent: an identical object is left alone, a different
one under the same name is a conflict, never overwritten.
"""

from __future__ import annotations

import fcntl
import json
import shutil
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

from sendit_ops.core.errors import DeliveryError
from sendit_ops.core.ledger import Delivery, write_atomic
from sendit_ops.packaging.archive import sha256_file

ROW_KEY = "CodedAccessionNumberID"


def put_object(
    outbox: Path,
    name: str,
    source: Path,
    sha256: str,
    replaces: str | Iterable[str] | None = None,
) -> str:
    """Copy an archive to ``outbox/name``; return 'created', 'exists' (identical one there) or
    'replaced' (the object there is a version sendit itself wrote for this batch: one of
    ``replaces``, see ``Delivery.own_versions``).
    Any other file under that name raises DeliveryError and is left alone."""
    target = outbox / name
    status = "created"
    if target.exists():
        current = sha256_file(target)
        if current == sha256:
            return "exists"
        if current not in own_versions(replaces):
            raise DeliveryError(f"a different archive already exists at outbox object {name}")
        status = "replaced"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.part")
    try:
        shutil.copyfile(source, tmp)
    except OSError:  # a full outbox (ENOSPC) must not keep a partial copy
        tmp.unlink(missing_ok=True)
        raise
    if sha256_file(tmp) != sha256:
        tmp.unlink()
        raise DeliveryError("outbox copy does not match the archive checksum")
    tmp.replace(target)
    return status


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def table_path(outbox: Path, collection: str, table: str) -> Path:
    """Where the JSON-lines table of a collection lives."""
    return outbox / "bigquery" / collection / f"{table}.jsonl"


def upsert_rows(path: Path, rows: list[dict[str, str]]) -> dict[str, int]:
    """Insert or replace rows keyed by coded accession number; return counts."""
    with _locked(path):
        existing: dict[str, dict[str, str]] = {}
        if path.exists():
            for line in path.read_text().splitlines():
                if line.strip():
                    row = json.loads(line)
                    existing[row[ROW_KEY]] = row
        inserted = sum(1 for r in rows if r[ROW_KEY] not in existing)
        updated = sum(1 for r in rows if r[ROW_KEY] in existing and existing[r[ROW_KEY]] != r)
        for row in rows:
            existing[row[ROW_KEY]] = row
        body = "".join(json.dumps(existing[k], sort_keys=True) + "\n" for k in sorted(existing))
        write_atomic(path, body, mode=0o644)
    return {"inserted": inserted, "updated": updated, "unchanged": len(rows) - inserted - updated}


def read_rows(path: Path) -> list[dict[str, str]]:
    """All rows of a JSON-lines table."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def own_versions(replaces: str | Iterable[str] | None) -> set[str]:
    """The checksums sendit wrote for a batch (one, or several when an earlier attempt was
    cut short after its object was written): the only objects delivery may replace."""
    if not replaces:
        return set()
    return {replaces} if isinstance(replaces, str) else {s for s in replaces if s}


def remove_replaced(
    outbox: Path, table: Path, before: Delivery, object_name: str, row_key: str
) -> None:
    """After a batch was delivered under a new object name or row key, remove what sendit
    delivered for it before (only when the object still holds sendit's version, and the
    row still points at that object), so the outbox keeps one object and one row per study."""
    if before.object_name and before.object_name != object_name:
        old = outbox / before.object_name
        if old.is_file() and before.sha256 and sha256_file(old) == before.sha256:
            old.unlink()
    if before.row_key and before.row_key != row_key and before.object_name:
        with _locked(table):
            rows = read_rows(table)
            keep = [
                r
                for r in rows
                if not (
                    r.get(ROW_KEY) == before.row_key
                    and str(r.get("storage_download", "")).endswith("/" + before.object_name)
                )
            ]
            if len(keep) != len(rows):
                body = "".join(json.dumps(r, sort_keys=True) + "\n" for r in keep)
                write_atomic(table, body, mode=0o644)
