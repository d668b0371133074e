"""Records and deliveries as table rows, and back (the only place that knows both shapes)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from typing import Any

from sqlalchemy import Row

from sendit_ops.core.records import BatchRecord, Delivery

ATTEMPTS_KEPT = 20


def source_hash(path: str) -> str:
    """The indexed form of a batch's source path (paths may be longer than an index key)."""
    return hashlib.sha1(path.encode(errors="surrogateescape")).hexdigest()


def record_row(ledger_id: int, r: BatchRecord) -> dict[str, Any]:
    """A batch record as a ``sendit_batches`` row: the whole record as JSON, plus the
    columns the queries filter and the dashboard shows."""
    return {
        "ledger_id": ledger_id,
        "key": r.key,
        "state": r.state,
        "source_path": r.source_path,
        "source_hash": source_hash(r.source_path),
        "finished_at": float(r.finished_at or 0.0),
        "fingerprint": r.fingerprint or "",
        "run_id": r.run_id or "",
        "changed": float(r.history[-1][0]) if r.history else 0.0,
        "images": int(r.metrics.get("images_accepted", 0) or 0),
        "images_found": int(r.metrics.get("images_found", 0) or 0),
        "bytes_in": int(r.metrics.get("bytes_in", 0) or 0),
        "warnings": len(r.warnings),
        "reasons": json.dumps(r.reasons),
        "object_name": str(r.outputs.object_name),
        "pseudonym_source": str(r.outputs.pseudonym_source),
        "superseded_by": str(r.outputs.superseded_by),
        "data": json.dumps(asdict(r), sort_keys=True, default=str),
    }


def delivery_of(row: Row[Any]) -> Delivery:
    """A ``sendit_deliveries`` row as a Delivery."""
    return Delivery(
        object_name=row.object_name,
        sha256=row.sha256,
        row_key=row.row_key,
        target=row.target,
        location=row.location,
        delivered_at=row.delivered_at,
        run_id=row.run_id,
        attempts=json.loads(row.attempts or "[]"),
    )


def delivery_row(ledger_id: int, key: str, d: Delivery) -> dict[str, Any]:
    """A Delivery as a ``sendit_deliveries`` row (its newest ATTEMPTS_KEPT attempts)."""
    return {
        "ledger_id": ledger_id,
        "key": key,
        "object_name": d.object_name,
        "sha256": d.sha256,
        "row_key": d.row_key,
        "target": d.target,
        "location": d.location,
        "delivered_at": d.delivered_at,
        "run_id": d.run_id,
        "attempts": json.dumps(d.attempts[-ATTEMPTS_KEPT:]),
    }
