"""The batches dashboard (sendit's status page), served by Airflow's API server as a plugin.

``/sendit/`` shows the batches of every sendit DAG (state, images, size, reasons, last
change) and ``/sendit/api/batches`` returns them as paginated JSON (``state``, ``dag_id``,
``offset``, ``limit``). Both need a user who may see the Airflow UI (browser session cookie or
bearer token). Nothing identifying is shown: batch ids are keyed hashes, reasons name rules
and tags; source folder paths are never included.
"""

from __future__ import annotations

import html
import os
from datetime import UTC, datetime
from typing import Any

from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
from airflow.api_fastapi.core_api.security import requires_access_view
from fastapi import Depends, FastAPI, Query
from fastapi.responses import HTMLResponse

from sendit_ops.dag_factory import parse_time_setting, read_input_folders
from sendit_ops.ledger import STATES, BatchRecord, Ledger
from sendit_ops.settings import default_home

app = FastAPI(
    title="sendit batches", dependencies=[Depends(requires_access_view(AccessView.WEBSITE))]
)


# record path -> (modification time, row): the API server reads a record again only when it
# changed, so a page over a long history costs a stat per batch, not a read and a JSON parse
_ROWS: dict[str, tuple[int, dict[str, Any]]] = {}
_ROWS_LIMIT = 1_000_000


def _row(dag_id: str, record: BatchRecord) -> dict[str, Any]:
    changed = record.history[-1][0] if record.history else 0
    return {
        "dag_id": dag_id,
        "batch_id": record.key,
        "state": record.state,
        "images": record.metrics.get("images_accepted", 0),
        "images_found": record.metrics.get("images_found", 0),
        "size_mb": round(record.metrics.get("bytes_in", 0) / 1e6, 3),
        "reasons": record.reasons,
        "warnings": len(record.warnings),
        "run_id": record.run_id,
        "changed": datetime.fromtimestamp(changed, UTC).isoformat() if changed else "",
        "object": record.outputs.get("object_name", ""),
    }


def _ledger_rows(ledger: Ledger) -> list[dict[str, Any]]:
    base = ledger.root / "batches"
    try:
        names = sorted(os.listdir(base))
    except OSError:
        return []
    rows = []
    for name in names:
        path = str(ledger.record_path(name))
        try:
            mtime = os.stat(path).st_mtime_ns
            cached = _ROWS.get(path)
            if cached is None or cached[0] != mtime:
                cached = (mtime, _row(ledger.dag_id, ledger.load(name)))
                if len(_ROWS) >= _ROWS_LIMIT:
                    _ROWS.clear()
                _ROWS[path] = cached
        except (OSError, ValueError, TypeError):
            continue  # gone, or being written for the first time: shown at the next view
        rows.append(cached[1])
    return rows


def batch_rows(state: str | None = None, dag_id: str | None = None) -> list[dict[str, Any]]:
    """Every batch record of the configured DAGs as PHI-free rows, newest change first."""
    rows = []
    for folder in read_input_folders():
        if dag_id and folder.dag_id != dag_id:
            continue
        work_root = parse_time_setting(folder, "work_root", default_home() / "work")
        rows += [
            r
            for r in _ledger_rows(Ledger(work_root, folder.dag_id))
            if not state or r["state"] == state
        ]
    return sorted(rows, key=lambda r: r["changed"], reverse=True)


@app.get("/api/batches")
def api_batches(
    state: str | None = Query(None, description=f"one of {', '.join(STATES)}"),
    dag_id: str | None = None,
    offset: int = Query(0, ge=0),
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    """Batches as JSON, paginated (as sendit's /api/batches)."""
    rows = batch_rows(state, dag_id)
    return {
        "total": len(rows),
        "offset": offset,
        "limit": limit,
        "batches": rows[offset : offset + limit],
    }


@app.get("/", response_class=HTMLResponse)
def page(state: str | None = None) -> str:
    """The dashboard page."""
    rows = batch_rows(state)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
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
        + "</tr>"
        for r in rows[:500]
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>sendit batches</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:.2em .6em;"
        "border-bottom:1px solid #ddd;text-align:left}</style></head><body>"
        f"<h1>sendit batches</h1><p>{summary} · <a href='?'>all</a></p>"
        "<table><tr><th>DAG</th><th>batch</th><th>state</th><th>images</th><th>MB</th>"
        f"<th>reasons</th><th>last change</th></tr>{body}</table></body></html>"
    )
