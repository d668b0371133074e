"""The batches dashboard (sendit's status page), served by Airflow's API server as a plugin.

``/sendit/`` shows the batches of every sendit DAG (state, images, size, reasons, last
change) and ``/sendit/api/batches`` returns them as paginated JSON (``state``, ``dag_id``,
``offset``, ``limit``). Both need a user who may see the Airflow UI (browser session cookie or
bearer token). Nothing identifying is shown: batch ids are keyed hashes, reasons name rules
and tags; source folder paths are never included.
"""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime
from typing import Any

from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
from airflow.api_fastapi.core_api.security import requires_access_view
from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.responses import FileResponse, HTMLResponse

from sendit_ops.airflow.config import read_input_folders, server_settings
from sendit_ops.core.ledger import STATES, BatchRecord, Ledger

app = FastAPI(
    title="sendit batches", dependencies=[Depends(requires_access_view(AccessView.WEBSITE))]
)


def _row(dag_id: str, summary: dict[str, Any]) -> dict[str, Any]:
    changed, reasons = summary["changed"], summary["reasons"]
    return {
        "dag_id": dag_id,
        "batch_id": summary["key"],
        "state": summary["state"],
        "images": summary["images"],
        "images_found": summary["images_found"],
        "size_mb": round(summary["bytes_in"] / 1e6, 3),
        "reasons": json.loads(reasons) if reasons and reasons != "[]" else [],
        "warnings": summary["warnings"],
        "run_id": summary["run_id"],
        "changed": datetime.fromtimestamp(changed, UTC).isoformat() if changed else "",
        "object": summary["object_name"],
    }


def _ledgers(dag_id: str | None = None) -> list[Ledger]:
    """The ledgers of the configured DAGs that have a database (no run yet: none)."""
    found = []
    for folder in read_input_folders():
        if dag_id and folder.dag_id != dag_id:
            continue
        settings = server_settings(folder)
        ledger = Ledger(settings.work_root, folder.dag_id, settings.ledger_url)
        if ledger.has_database():
            found.append(ledger)
    return found


def batch_rows(
    state: str | None = None, dag_id: str | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """The newest ``limit`` batch records (all by default) of the configured DAGs as
    PHI-free rows, newest change first: queried from the ledgers' databases (indexed by
    state and change time), no cache of their own."""
    rows = [
        _row(ledger.dag_id, summary)
        for ledger in _ledgers(dag_id)
        for summary in ledger.summaries(state, limit)
    ]
    rows.sort(key=lambda r: r["changed"], reverse=True)
    return rows if limit is None else rows[:limit]


def batch_counts(dag_id: str | None = None) -> dict[str, int]:
    """Batches per state over the configured DAGs."""
    counts: dict[str, int] = {}
    for ledger in _ledgers(dag_id):
        for state, n in ledger.state_counts().items():
            counts[state] = counts.get(state, 0) + n
    return counts


@app.get("/api/batches")
def api_batches(
    state: str | None = Query(None, description=f"one of {', '.join(STATES)}"),
    dag_id: str | None = None,
    offset: int = Query(0, ge=0),
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    """Batches as JSON, paginated (as sendit's /api/batches)."""
    counts = batch_counts(dag_id)
    return {
        "total": counts.get(state, 0) if state else sum(counts.values()),
        "offset": offset,
        "limit": limit,
        "batches": batch_rows(state, dag_id, offset + limit)[offset:],
    }


_BATCH_ID = re.compile(r"^b[0-9a-f]{15}$")
_THUMBNAIL = re.compile(r"^[0-9]{4,8}_[0-9]{4,8}(_[0-9]+)?\.png$")


def _find(batch_id: str) -> tuple[Ledger, BatchRecord]:
    if not _BATCH_ID.match(batch_id):
        raise HTTPException(404, "no such batch")
    for ledger in _ledgers():
        record = ledger.get(batch_id)
        if record is not None:
            return ledger, record
    raise HTTPException(404, "no such batch")


def held_images(record: BatchRecord) -> list[dict[str, Any]]:
    """A held batch's images for a reviewer: file (output name), why, the masked boxes and
    the thumbnail's URL; never the text OCR read, never a source path."""
    return [
        {
            "file": h["file"],
            "reason": h.get("held_reason") or "",
            "risk": h.get("risk", ""),
            "frames": h.get("frames", 0),
            "boxes": [[b["x0"], b["y0"], b["x1"], b["y1"]] for b in h.get("boxes", [])],
            "thumbnail": f"review/{record.key}/{h['thumbnail']}" if h.get("thumbnail") else "",
        }
        for h in record.outputs.get("held") or []
    ]


@app.get("/api/batches/{batch_id}/held")
def api_held(batch_id: str) -> dict[str, Any]:
    """The held images of one batch and the reviewer's decision so far (release or reject
    with the run parameters ``release`` / ``reject``)."""
    _, record = _find(batch_id)
    return {
        "batch_id": record.key,
        "state": record.state,
        "review": {k: v for k, v in (record.outputs.get("review") or {}).items()},
        "held": held_images(record),
    }


@app.get("/review/{batch_id}/{name}")
def thumbnail(batch_id: str, name: str) -> FileResponse:
    """A held image's thumbnail: the MASKED output, as it would leave if released."""
    ledger, record = _find(batch_id)
    if not _THUMBNAIL.match(name):
        raise HTTPException(404, "no such thumbnail")
    path = ledger.batch_dir(record.key) / "review" / name
    if not path.is_file():
        raise HTTPException(404, "no such thumbnail")
    return FileResponse(path, media_type="image/png")


def _held_cell(batch_id: str) -> str:
    try:
        _, record = _find(batch_id)
    except HTTPException:
        return ""
    return " ".join(
        f"<a href='{html.escape(h['thumbnail'])}' title='{html.escape(h['reason'])}'>"
        f"<img src='{html.escape(h['thumbnail'])}' height='64' alt='masked {h['file']}'></a>"
        for h in held_images(record)
        if h["thumbnail"]
    )


@app.get("/", response_class=HTMLResponse)
def page(state: str | None = None) -> str:
    """The dashboard page."""
    rows = batch_rows(state, limit=500)
    counts = batch_counts()
    if state:
        counts = {state: counts[state]} if counts.get(state) else {}
    summary = (
        " · ".join(f'<a href="?state={s}">{s} {counts[s]}</a>' for s in STATES if s in counts)
        or "no batches yet"
    )
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(v))}</td>"
            for v in (
                r["dag_id"],
                r["batch_id"],
                r["state"],
                r["images"],
                r["size_mb"],
                "; ".join(r["reasons"]),
                r["changed"],
            )
        )
        + f"<td>{_held_cell(r['batch_id']) if r['state'] == 'HELD' else ''}</td>"
        + "</tr>"
        for r in rows
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>sendit batches</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:.2em .6em;"
        "border-bottom:1px solid #ddd;text-align:left}</style></head><body>"
        f"<h1>sendit batches</h1><p>{summary} · <a href='?'>all</a></p>"
        "<table><tr><th>DAG</th><th>batch</th><th>state</th><th>images</th><th>MB</th>"
        f"<th>reasons</th><th>last change</th><th>held for review (masked)</th></tr>"
        f"{body}</table></body></html>"
    )
