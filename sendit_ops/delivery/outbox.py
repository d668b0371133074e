"""Local delivery when Google is not configured: the same layout as the bucket and the table.

``<outbox>/Collection/<c>/Entity/<coded patient>/<archive>`` and one JSON-lines table
``<outbox>/bigquery/<c>/<table>.jsonl`` upserted by coded accession number, so reruns never
duplicate a row. Objects are create-if-absent: an identical object is left alone, a different
one under the same name is a conflict, never overwritten, unless it is a version sendit itself
wrote for the batch (``sendit_ops.delivery.target.decide``). ``OutboxTarget`` is this folder
as a delivery ``Target``.
"""

from __future__ import annotations

import fcntl
import json
import shutil
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

from sendit_ops.core.atomic_files import write_atomic
from sendit_ops.core.errors import (
    BatchError,
    DeliveryError,
    ErrorClassifier,
    NoSpaceError,
    is_no_space,
)
from sendit_ops.core.records import Delivery
from sendit_ops.core.settings import Settings
from sendit_ops.delivery.target import (
    Archive,
    Placed,
    Present,
    PutStatus,
    RowCounts,
    decide,
    own_versions,
)
from sendit_ops.packaging.archive import sha256_file

ROW_KEY = "CodedAccessionNumberID"


def made_by_sendit(path: Path) -> bool:
    """Whether a file is a tar.gz as ``packaging.archive.write_archive`` writes them (every
    member a regular file with mtime 0, mode 0644, owner 0 and no owner names): sendit's
    own archive, which a reprocess run may replace when the ledger no longer knows it."""
    import tarfile

    try:
        with tarfile.open(path, "r:gz") as tar:
            members = tar.getmembers()
    except (OSError, tarfile.TarError, EOFError):
        return False
    return bool(members) and all(
        m.isreg() and m.mtime == 0 and m.mode == 0o644 and m.uid == m.gid == 0 and not m.uname
        for m in members
    )


def put_object(
    outbox: Path,
    name: str,
    source: Path,
    sha256: str,
    replaces: str | Iterable[str] | None = None,
    replace_unknown: bool = False,
) -> PutStatus:
    """Copy an archive to ``outbox/name``; return created, exists (identical one there) or
    replaced (the object there is a version sendit itself wrote for this batch: one of
    ``replaces``, see ``Delivery.own_versions``).
    Any other file under that name raises DeliveryError and is left alone."""
    target = outbox / name
    present = None
    if target.exists():
        current = sha256_file(target)
        # a file carries no metadata: it is a version of sendit's when the ledger knows its
        # checksum, or (a lost ledger) when it is an archive as sendit writes them
        ours = current == sha256 or current in own_versions(replaces) or made_by_sendit(target)
        present = Present(identical=current == sha256, version=current if ours else "")
    status = decide(
        present,
        own_versions(replaces),
        f"a different archive already exists at outbox object {name}",
        replace_unknown,
    )
    if status is PutStatus.EXISTS:
        return status
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


def outbox_error(exc: Exception) -> Exception:
    """The reason an outbox write failed, as an admin reads it (a full disk named)."""
    if is_no_space(exc):
        return exc  # mark_failed words it with the batch's size
    if isinstance(exc, BatchError):
        return exc
    return DeliveryError(f"outbox write failed ({type(exc).__name__})")


class OutboxTarget:
    """The outbox folder as a delivery Target: objects are files, the rows one JSON-lines
    table per collection, upserted in one locked rewrite per delivery call."""

    name = "outbox"
    no_rows: RowCounts | None = None  # the outbox reports row counts only when it wrote rows
    classifiers: tuple[ErrorClassifier, ...] = ()  # files: the standard library's errors

    def __init__(self, outbox: Path, collection: str, table: str) -> None:
        self.outbox = outbox
        self.table = table_path(outbox, collection, table)

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboxTarget:
        """The outbox, collection and table a run's settings name."""
        return cls(Path(settings.outbox), settings.collection, settings.bigquery_table)

    def ledger_fields(self) -> dict[str, str]:
        """Nothing more: the ledger takes the outbox folder from the settings."""
        return {}

    def put_object(self, archive: Archive) -> Placed:
        """Copy the archive (create / keep / replace-own, checksum verified)."""
        status = put_object(
            self.outbox,
            archive.object_name,
            archive.path,
            archive.sha256,
            replaces=archive.own_versions,
            replace_unknown=archive.replace_unknown,
        )
        uri = (self.outbox / archive.object_name).resolve().as_uri()
        return Placed(status, download=uri, metadata_link=uri)

    def put_rows(self, rows: list[dict[str, str]]) -> RowCounts:
        """Upsert every row of the call in one rewrite of the table."""
        counts = upsert_rows(self.table, rows)
        return RowCounts(sent=len(rows), **counts)

    def remove_object(self, archive: Archive, placed: Placed) -> None:
        """Delete an archive this call created (its row could not be written)."""
        (self.outbox / archive.object_name).unlink(missing_ok=True)

    def remove_replaced(self, before: Delivery, object_name: str, row_key: str) -> None:
        """The batch's own earlier object and row, when they have another name or key."""
        remove_replaced(self.outbox, self.table, before, object_name, row_key)

    def object_failure(self, exc: Exception) -> Exception:
        """A failed copy: the batch's reason."""
        return outbox_error(exc)

    def rows_failure(self, exc: Exception, rows: list[dict[str, str]]) -> Exception:
        """A failed table write; a full disk names the room needed: the table is rewritten
        whole, so its size plus the new rows."""
        if is_no_space(exc):
            need = sum(len(json.dumps(row)) + 1 for row in rows)
            need += self.table.stat().st_size if self.table.exists() else 0
            return NoSpaceError("outbox", need)
        return outbox_error(exc)
