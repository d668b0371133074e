"""The one-time import of the file-based ledger (``record.json`` per batch, before 0.1).

Run in the same transaction as a ledger's creation, so an interrupted import is redone
whole (idempotent); a record file that cannot be read is left out with a warning naming its
batch id.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from sendit_ops.core.atomic_files import read_json
from sendit_ops.core.ledger import rows
from sendit_ops.core.ledger.database import IN_CHUNK, upsert
from sendit_ops.core.ledger.schema import batches, deliveries
from sendit_ops.core.lifecycle import State
from sendit_ops.core.records import BatchRecord, Delivery

log = logging.getLogger("sendit")


def imported_delivery(r: BatchRecord) -> Delivery | None:
    """What an old JSON record says sendit delivered: its own outputs when DONE, else the
    checksum ``register`` carried over from the delivery before."""
    out = r.outputs
    if r.state == State.DONE and out.sha256:
        return Delivery(
            object_name=str(out.object_name),
            sha256=str(out.sha256),
            row_key=str(out.item_suid),
            target=str(out.delivered_to),
            location=str(out.bucket),
            delivered_at=float(out.delivered_at or 0.0),
            run_id=r.run_id,
        )
    if out.previous_sha256:
        return Delivery(sha256=out.previous_sha256[0], row_key=str(out.item_suid))
    return None


def import_records(conn: Connection, ledger_id: int, root: Path) -> int:
    """Insert the records found under ``root/batches/*/record.json``; return how many."""
    base = root / "batches"
    if not base.is_dir():
        return 0
    records: list[dict[str, Any]] = []
    delivered: list[dict[str, Any]] = []
    for folder in sorted(base.iterdir()):
        path = folder / "record.json"
        if not path.is_file():
            continue
        try:
            record = BatchRecord(**read_json(path))
        except (OSError, ValueError, TypeError) as exc:
            log.warning(
                "batch %s: its record in %s is unreadable (%s) and is not imported",
                folder.name,
                root,
                type(exc).__name__,
            )
            continue
        records.append(rows.record_row(ledger_id, record))
        d = imported_delivery(record)
        if d is not None:
            delivered.append(rows.delivery_row(ledger_id, record.key, d))
    for part in range(0, len(records), IN_CHUNK):
        upsert(conn, batches, records[part : part + IN_CHUNK], ["ledger_id", "key"])
    for part in range(0, len(delivered), IN_CHUNK):
        upsert(conn, deliveries, delivered[part : part + IN_CHUNK], ["ledger_id", "key"])
    return len(records)
